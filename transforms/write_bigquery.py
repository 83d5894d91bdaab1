"""Write stage (BigQuery sink): staged Parquet → one load job → MERGE on eventId → staging dropped.

Same shape as the file sink (a PTransform over ``ImportOutputs``), plus what only a table can tell:
the rows that were already in the target. Those come back as counts that move them from ``loaded``
to ``already_present`` in the report.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.bigquery import CONFLICT_TABLE_SCHEMA, DEAD_LETTER_TABLE_SCHEMA, EVENTS_SCHEMA
from transforms import bq_tables
from transforms.bq_client import BigQueryTarget
from transforms.serialize import conflict_json, dead_letter_json
from transforms.write_files import CONFLICTS_PREFIX, DEAD_LETTERS_PREFIX, ImportOutputs, WriteParquetFn

log = logging.getLogger(__name__)
EVENT_COLUMNS = [f["name"] for f in EVENTS_SCHEMA]


def staging_table(target: BigQueryTarget, run_id: str):
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in run_id)
    return target.events.sibling(f"{target.events.table}__staging_{safe}"[:1024])


def _drop_staging(bq, staging) -> None:
    """A staging table left behind is harmless (it expires in a day): a failed drop must neither fail a
    run whose MERGE is done nor hide the error of a run whose MERGE failed."""
    from google.api_core.exceptions import GoogleAPIError, RetryError
    from requests.exceptions import RequestException

    try:
        bq_tables.drop_table(bq, staging)
    except (GoogleAPIError, RetryError, RequestException) as err:
        log.warning("could not drop the staging table %s (it expires on its own within a day): %s", staging, err)


class LoadAndMergeFn(beam.DoFn):
    """Runs once, after every staged file is written: loads, merges, appends dead letters/conflicts."""

    def __init__(self, target: BigQueryTarget, run_id: str) -> None:
        self.target, self.run_id = target, run_id
        self._load_ms = Metrics.distribution("importer", "bigquery_load_msecs")
        self._merge_ms = Metrics.distribution("importer", "bigquery_merge_msecs")

    def setup(self) -> None:
        self.bq = self.target.connect()

    def teardown(self) -> None:
        self.bq.close()

    def process(self, _, row_files, dead_files, conflict_files):
        yield from self._merge_rows(sorted(row_files))
        for files, table, schema in ((dead_files, self.target.dead_letters, DEAD_LETTER_TABLE_SCHEMA),
                                     (conflict_files, self.target.conflicts, CONFLICT_TABLE_SCHEMA)):
            files = [f for f in files if FileSystems.match([f])[0].metadata_list[0].size_in_bytes > 0]
            if files:
                n = bq_tables.load_files(self.bq, table, files, schema, "NEWLINE_DELIMITED_JSON", replace=False)
                log.info("appended %d row(s) to %s", n, table)

    def _merge_rows(self, row_files: list[str]):
        if not row_files:
            return
        events, staging = self.target.events, staging_table(self.target, self.run_id)
        started = time.perf_counter()
        bq_tables.load_files(self.bq, staging, row_files, EVENTS_SCHEMA, "PARQUET", replace=True, expires=True)
        self._load_ms.update(int((time.perf_counter() - started) * 1000))
        try:
            lo, hi = bq_tables.time_range(self.bq, staging)
            staged = bq_tables.rows_by_source(self.bq, staging)
            started = time.perf_counter()
            inserted = bq_tables.merge_new_rows(self.bq, events, staging, EVENT_COLUMNS, lo, hi)
            self._merge_ms.update(int((time.perf_counter() - started) * 1000))
            loaded = bq_tables.rows_by_source(self.bq, events, self.run_id, lo, hi)
        finally:
            _drop_staging(self.bq, staging)
        if sum(loaded.values()) != inserted:
            log.warning("MERGE inserted %d rows but %d rows carry run id %s: was the run id reused?",
                        inserted, sum(loaded.values()), self.run_id)
        log.info("merged into %s: %d new row(s) of %d staged", events, inserted, sum(staged.values()))
        for uri, n in staged.items():
            already = n - loaded.get(uri, 0)
            if already:
                yield (uri, "loaded"), -already
                yield (uri, "already_present"), already


class WriteBigQuery(beam.PTransform):
    """The BigQuery sink. Returns counts ``((source_uri, metric), n)`` for the report."""

    def __init__(self, target: BigQueryTarget, staging_dir: str, run_id: str, buckets: int) -> None:
        super().__init__()
        self.target, self.staging_dir, self.run_id, self.buckets = target, staging_dir, run_id, buckets

    def expand(self, outputs: ImportOutputs):
        join = FileSystems.join
        row_files = outputs.rows | "StageRows" >> beam.ParDo(WriteParquetFn(self.staging_dir, self.buckets))
        dead_files = (outputs.dead_letters
                      | "DeadLetterJson" >> beam.FlatMap(lambda batch: map(dead_letter_json, batch))
                      | "StageDeadLetters" >> beam.io.WriteToText(join(self.staging_dir, DEAD_LETTERS_PREFIX),
                                                                  file_name_suffix=".ndjson"))
        conflict_files = (outputs.conflicts
                          | "ConflictJson" >> beam.Map(conflict_json)
                          | "StageConflicts" >> beam.io.WriteToText(join(self.staging_dir, CONFLICTS_PREFIX),
                                                                    file_name_suffix=".ndjson"))
        as_list = beam.pvalue.AsList
        return (
            outputs.rows.pipeline
            | "AfterStaging" >> beam.Create([None])
            | "LoadAndMerge" >> beam.ParDo(LoadAndMergeFn(self.target, self.run_id),
                                           as_list(row_files), as_list(dead_files), as_list(conflict_files))
        )
