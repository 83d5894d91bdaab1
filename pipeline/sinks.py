"""The sinks as the graph composes them: files, or files staged then loaded into BigQuery.

Each is a PTransform over ``ImportOutputs`` that returns counts ``((source_uri, metric), n)`` for the
report; ``sink_for`` picks the run's and adds the day counts of the completeness check.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.options import CheckedOptions
from transforms.bigquery.write import load_and_merge
from transforms.core.outputs import ImportOutputs
from transforms.core.settings import BigQueryTarget
from transforms.files.write import WriteFiles, write_files
from transforms.stages.day_counts import with_day_counts


class WriteBigQuery(beam.PTransform):
    """The BigQuery sink: the outputs written as files under ``staging_dir`` (``write_files``), then
    loaded and written in one transaction (``load_and_merge``)."""

    def __init__(self, target: BigQueryTarget, staging_dir: str, run_id: str, buckets: int, launch: str,
                 imported_at: datetime) -> None:
        super().__init__()
        self.target, self.staging_dir, self.run_id, self.buckets = target, staging_dir, run_id, buckets
        self.launch, self.imported_at = launch, imported_at

    def expand(self, outputs: ImportOutputs):
        staged = write_files(outputs, self.staging_dir, self.buckets, staging=True)
        return load_and_merge(staged, self.target, self.run_id, self.launch, self.imported_at, self.staging_dir)


def sink_for(checked: CheckedOptions, work_dir: str, run_id: str, launch: str,
             started: datetime) -> Callable[[], beam.PTransform]:
    """What ``pipeline.graph.build_pipeline`` writes with: the BigQuery sink (staging under
    ``WORK_DIR/staging``), the file sink, or for a dry run nothing; each also counts the events per day
    (``transforms.stages.day_counts``)."""
    sink = None
    if checked.dry_run:
        pass
    elif checked.target is not None:
        staging = FileSystems.join(work_dir, "staging")
        sink = lambda: WriteBigQuery(checked.target, staging, run_id, checked.buckets, launch, started)  # noqa: E731
    else:
        sink = lambda: WriteFiles(checked.output_dir, checked.buckets)  # noqa: E731
    return with_day_counts(sink)
