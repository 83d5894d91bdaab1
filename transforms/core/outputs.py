"""What the stages hand to a sink (``ImportOutputs``), what the file writer hands on (``WrittenFiles``),
and the names of the files under a folder the import writes (the file sink's output, or the BigQuery
sink's staging folder)."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

ROWS_DIR = "rows"
DEAD_LETTERS_PREFIX = "dead_letters/dead_letters"
CONFLICTS_PREFIX = "conflicts/conflicts"


class ImportOutputs(NamedTuple):
    rows: beam.PCollection  # (bucket, pyarrow.Table)
    dead_letters: beam.PCollection | None  # lists of dicts (one list per stage and batch); None in a dry run
    conflicts: beam.PCollection  # dict: eventId, kept, differs_from_kept, row


class WrittenFiles(NamedTuple):
    """The paths of the files written for ``ImportOutputs``: one PCollection of paths per kind."""

    rows: beam.PCollection
    dead_letters: beam.PCollection
    conflicts: beam.PCollection


def rows_path(output_dir: str, bucket: int, buckets: int) -> str:
    return FileSystems.join(output_dir, ROWS_DIR, f"part-{bucket:05d}-of-{buckets:05d}.parquet")
