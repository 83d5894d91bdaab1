"""Write stage (file sink): rows as Parquet, dead letters and conflicts as NDJSON, under one folder.

A sink is a PTransform applied to ``ImportOutputs``; the BigQuery sink has the same shape.
File names are deterministic (``rows/part-BBBBB-of-NNNNN.parquet`` per dedupe bucket), so a re-run
overwrites instead of adding.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.core import progress
from transforms.core.serialize import conflict_json, dead_letter_json

ROWS_DIR = "rows"
DEAD_LETTERS_PREFIX = "dead_letters/dead_letters"
CONFLICTS_PREFIX = "conflicts/conflicts"


class ImportOutputs(NamedTuple):
    rows: beam.PCollection  # (bucket, pyarrow.Table)
    dead_letters: beam.PCollection | None  # lists of dicts (one list per stage and batch); None in a dry run
    conflicts: beam.PCollection  # dict: eventId, kept, differs_from_kept, row


def rows_path(output_dir: str, bucket: int, buckets: int) -> str:
    return FileSystems.join(output_dir, ROWS_DIR, f"part-{bucket:05d}-of-{buckets:05d}.parquet")


class WriteParquetFn(beam.DoFn):
    def __init__(self, output_dir: str, buckets: int) -> None:
        self.output_dir, self.buckets = output_dir, buckets

    def start_bundle(self) -> None:
        self._told = False

    def process(self, element):
        if not self._told:
            self._told = True
            progress.phase("write_rows")
        bucket, table = element
        path = rows_path(self.output_dir, bucket, self.buckets)
        with FileSystems.create(path) as f:
            pq.write_table(table, f, compression="zstd")
        yield path


class WriteFiles(beam.PTransform):
    """The file sink: ``OUTPUT_DIR/rows/*.parquet``, ``dead_letters/*.ndjson``, ``conflicts/*.ndjson``."""

    def __init__(self, output_dir: str, buckets: int) -> None:
        super().__init__()
        self.output_dir, self.buckets = output_dir, buckets

    def expand(self, outputs: ImportOutputs):
        join = FileSystems.join
        outputs.rows | "WriteRows" >> beam.ParDo(WriteParquetFn(self.output_dir, self.buckets))
        (outputs.dead_letters
         | "DeadLetterJson" >> beam.FlatMap(lambda batch: map(dead_letter_json, batch))
         | "WriteDeadLetters" >> beam.io.WriteToText(join(self.output_dir, DEAD_LETTERS_PREFIX),
                                                     file_name_suffix=".ndjson"))
        (outputs.conflicts
         | "ConflictJson" >> beam.Map(conflict_json)
         | "WriteConflicts" >> beam.io.WriteToText(join(self.output_dir, CONFLICTS_PREFIX),
                                                   file_name_suffix=".ndjson"))
        # files hold no count the report lacks: every unique row is loaded
        return outputs.rows.pipeline | "NoSinkCounts" >> beam.Create([])
