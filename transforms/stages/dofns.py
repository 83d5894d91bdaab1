"""The file path's Beam processing: each batch through ``process_batch`` (parse → validate →
normalize), the one batch function the Pub/Sub path calls too. The dedupe's Beam side is
``transforms.stages.shuffle``."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms.core.records import DeadLetterBatch, ImportContext, prepare_worker_gc
from transforms.core.settings import RowPolicy, TimestampPolicy
from transforms.core.tagged import COUNTS, DEAD_LETTERS
from transforms.stages.batch import STAGES, process_batch
from transforms.stages.row_policy import row_key


class ProcessBatchFn(beam.DoFn):
    """LineBatch / RecordBatch → Arrow table of typed, normalized rows: ``process_batch`` (parse →
    validate → normalize → the row policy), the same function the Pub/Sub path calls. Its dead letters
    (and the read's, which come as ``DeadLetterBatch``) and counts go to tagged outputs; the
    milliseconds of each stage to a distribution named after it (the report's ``stage_seconds``)."""

    def __init__(self, ctx: ImportContext, policy: TimestampPolicy, row_policy: RowPolicy) -> None:
        self.ctx, self.policy, self.row_policy = ctx, policy, row_policy
        self._msecs = {stage: Metrics.distribution("importer", f"{stage}_msecs") for stage in STAGES}
        self._records = Metrics.counter("importer", "process_records")

    def setup(self) -> None:
        prepare_worker_gc()
        self.key = row_key(self.row_policy)

    def process(self, batch) -> Iterator:
        if isinstance(batch, DeadLetterBatch):  # the read's own, counted by the read: out with ours
            yield TaggedOutput(DEAD_LETTERS, batch.dead_letters)
            return
        result = process_batch(batch, self.ctx, self.policy, self.row_policy, self.key)
        for stage, seconds in result.seconds.items():
            self._msecs[stage].update(int(seconds * 1000))
        self._records.inc(result.counts[(batch.source_uri, "read")])
        if result.dead_letters:  # ONE element per batch (see core.tagged)
            yield TaggedOutput(DEAD_LETTERS, result.dead_letters)
        for key, n in result.counts.items():
            yield TaggedOutput(COUNTS, (key, n))
        if result.rows.num_rows:
            yield result.rows
