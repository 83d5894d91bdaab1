"""Beam wrappers of the file path: read a task's batches, then process each batch.

``ReadSourceFn`` calls the readers (``transforms.sources.read``); ``ProcessBatchFn`` calls
``transforms.stages.batch.process_batch`` (parse → validate → normalize), the one batch function the
Pub/Sub path calls too. Each routes its outputs: the main output goes on, dead letters and counts go to
tagged outputs. Counts are ``((source_uri, metric), n)`` pairs, summed at the end into the run report.
The dedupe's Beam side is ``transforms.stages.shuffle``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms.core.coders import Batch  # also registers the batch coders
from transforms.core.records import ImportContext, LineBatch, prepare_worker_gc
from transforms.core.settings import ReadLimits, RowPolicy, TimestampPolicy
from transforms.sources import read
from transforms.sources.files import ReadTask
from transforms.stages.batch import STAGES, dead_letter_counts, process_batch
from transforms.stages.privacy import redact
from transforms.stages.row_policy import row_key

DEAD_LETTERS = "dead_letters"
COUNTS = "counts"
CONFLICTS = "conflicts"


class TimedDoFn(beam.DoFn):
    """Records the milliseconds spent per batch in a distribution named after the stage (the report's
    ``stage_seconds``), and the records it handled in a counter."""

    STAGE = "stage"

    def __init__(self) -> None:
        self._msecs = Metrics.distribution("importer", f"{self.STAGE}_msecs")
        self._rows = Metrics.counter("importer", f"{self.STAGE}_records")

    def setup(self) -> None:
        prepare_worker_gc()

    def _timed(self, started: float, rows: int) -> None:
        self._msecs.update(int((time.perf_counter() - started) * 1000))
        self._rows.inc(rows)


class ReadSourceFn(TimedDoFn):
    """ReadTask → LineBatch / RecordBatch; over-long lines and broken files accounted for."""

    STAGE = "read"

    def __init__(self, ctx: ImportContext, limits: ReadLimits) -> None:
        super().__init__()
        self.ctx, self.limits = ctx, limits

    def process(self, task: ReadTask, line_counts: dict) -> Iterator:
        first_line = 1 + sum(line_counts.get((task.uri, k), 0) for k in range(task.split_index))
        started = time.perf_counter()
        for item in read.read_task(task, self.ctx, self.limits, first_line):
            if isinstance(item, read.Count):
                yield TaggedOutput(COUNTS, ((item.uri, item.metric), item.n))
            elif isinstance(item, read.FileError):
                yield TaggedOutput(COUNTS, ((item.uri, "file_error:" + item.message), 1))
            elif isinstance(item, dict):
                yield from _dead_letter_outputs([item])
            else:
                self._timed(started, len(item.lines) if isinstance(item, LineBatch) else len(item))
                yield item
                started = time.perf_counter()


class ProcessBatchFn(beam.DoFn):
    """LineBatch / RecordBatch → Arrow table of typed, normalized rows: ``process_batch`` (parse →
    validate → normalize → the row policy), the same function the Pub/Sub path calls. Its dead letters
    and counts go to tagged outputs; the milliseconds of each stage to a distribution named after it
    (the report's ``stage_seconds``)."""

    def __init__(self, ctx: ImportContext, policy: TimestampPolicy, row_policy: RowPolicy) -> None:
        self.ctx, self.policy, self.row_policy = ctx, policy, row_policy
        self._msecs = {stage: Metrics.distribution("importer", f"{stage}_msecs") for stage in STAGES}
        self._records = Metrics.counter("importer", "process_records")

    def setup(self) -> None:
        prepare_worker_gc()
        self.key = row_key(self.row_policy)

    def process(self, batch) -> Iterator:
        result = process_batch(batch, self.ctx, self.policy, self.row_policy, self.key)
        for stage, seconds in result.seconds.items():
            self._msecs[stage].update(int(seconds * 1000))
        self._records.inc(result.counts[(batch.source_uri, "read")])
        if result.dead_letters:  # ONE element per batch (see _dead_letter_outputs)
            yield TaggedOutput(DEAD_LETTERS, result.dead_letters)
        for key, n in result.counts.items():
            yield TaggedOutput(COUNTS, (key, n))
        if result.rows.num_rows:
            yield result.rows


def _dead_letter_outputs(dead: list[dict]) -> Iterator:
    """A stage's dead letters of one batch as ONE element (a list), and their counts: one element
    per dead letter went through Beam's per-element machinery 35,000 times per million lines (with
    their counts, up to a tenth of the workers' profile samples; 7 % after this change, and no
    wall-time gain beyond this machine's noise)."""
    if dead:
        yield TaggedOutput(DEAD_LETTERS, dead)
        for key, n in dead_letter_counts(dead).items():
            yield TaggedOutput(COUNTS, (key, n))


class ReadValidateNormalize(beam.PTransform):
    """Read tasks → normalized Arrow tables, dead letters (lists: one per stage and batch) and counts.

    With ``keep_dead_letters=False`` (a dry run: nothing is written) the dead letters are still made
    and counted inside each stage, but not gathered: a Flatten nobody reads still costs the local
    runner a stage that moves every dead letter (a third of a second per million lines)."""

    def __init__(self, ctx: ImportContext, limits: ReadLimits, policy: TimestampPolicy,
                 row_policy: RowPolicy = RowPolicy(), keep_dead_letters: bool = True) -> None:
        super().__init__()
        self.ctx, self.limits, self.policy, self.row_policy = ctx, limits, policy, row_policy
        self.keep_dead_letters = keep_dead_letters

    def expand(self, tasks):
        split = tasks | "SplitTasks" >> beam.Filter(lambda t: t.splits > 1)
        line_counts = split | "CountLines" >> beam.Map(lambda t: ((t.uri, t.split_index), read.count_newlines(t)))
        tags = (DEAD_LETTERS, COUNTS)
        # the main outputs' types select the coders of transforms.core.coders (cheap size estimates)
        raw = tasks | "Read" >> beam.ParDo(
            ReadSourceFn(self.ctx, self.limits), beam.pvalue.AsDict(line_counts)
        ).with_output_types(Batch).with_outputs(*tags, main="batches")
        rows = raw.batches | "Process" >> beam.ParDo(
            ProcessBatchFn(self.ctx, self.policy, self.row_policy)).with_output_types(
            pa.Table).with_outputs(*tags, main="rows")
        dead = None
        if self.keep_dead_letters:
            dead = (raw.dead_letters, rows.dead_letters) | "AllDeadLetters" >> beam.Flatten()
        if dead is not None and self.row_policy.redact_dead_letters:
            dead = dead | "RedactDeadLetters" >> beam.Map(lambda batch: [redact(d) for d in batch])
        counts = (raw.counts, rows.counts) | "StageCounts" >> beam.Flatten()
        return rows.rows, dead, counts


