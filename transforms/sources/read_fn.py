"""The file path's Beam read: read tasks → batches of lines or records, with the counts and dead
letters of what could not be read (``read_files``; the readers are ``transforms.sources.read``). The
dead letters go on with the batches (``DeadLetterBatch``), to leave the process stage with its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms.core.coders import Batch  # also registers the batch coders
from transforms.core.records import DeadLetterBatch, ImportContext, LineBatch, dead_letter_counts
from transforms.core.settings import ReadLimits
from transforms.core.tagged import COUNTS, TimedDoFn
from transforms.sources import read
from transforms.sources.files import ReadTask
from transforms.sources.read_types import Count, FileError


class ReadSourceFn(TimedDoFn):
    """ReadTask → LineBatch / RecordBatch, and DeadLetterBatch for what could not be read (over-long
    lines, broken records; counted here); broken files accounted for."""

    STAGE = "read"

    def __init__(self, ctx: ImportContext, limits: ReadLimits) -> None:
        super().__init__()
        self.ctx, self.limits = ctx, limits

    def process(self, task: ReadTask, line_counts: dict) -> Iterator:
        first_line = 1 + sum(line_counts.get((task.uri, k), 0) for k in range(task.split_index))
        started = time.perf_counter()
        dead: list[dict] = []  # the read's dead letters since the last batch: ONE element (core.tagged)
        for item in read.read_task(task, self.ctx, self.limits, first_line):
            if isinstance(item, Count):
                yield TaggedOutput(COUNTS, ((item.uri, item.metric), item.n))
            elif isinstance(item, FileError):
                yield TaggedOutput(COUNTS, ((item.uri, "file_error:" + item.message), 1))
            elif isinstance(item, dict):
                dead.append(item)
            else:
                yield from self._dead_letters(dead)
                dead = []
                self._timed(started, len(item.lines) if isinstance(item, LineBatch) else len(item))
                yield item
                started = time.perf_counter()
        yield from self._dead_letters(dead)

    @staticmethod
    def _dead_letters(dead: list[dict]) -> Iterator:
        if dead:
            yield DeadLetterBatch(dead)
            for key, n in dead_letter_counts(dead).items():
                yield TaggedOutput(COUNTS, (key, n))


class ReadOutputs(NamedTuple):
    batches: beam.PCollection  # LineBatch / RecordBatch / DeadLetterBatch
    counts: beam.PCollection  # ((source_uri, metric), n)


def read_files(tasks: beam.PCollection, ctx: ImportContext, limits: ReadLimits) -> ReadOutputs:
    """Apply the read of ``tasks`` (in the calling transform). A task that is one byte range of a split
    file starts counting its lines where the ranges before it end (a side input of their line counts)."""
    split = tasks | "SplitTasks" >> beam.Filter(lambda t: t.splits > 1)
    line_counts = split | "CountLines" >> beam.Map(lambda t: ((t.uri, t.split_index), read.count_newlines(t)))
    # the main output's type selects the coder of transforms.core.coders (cheap size estimates)
    raw = tasks | "Read" >> beam.ParDo(
        ReadSourceFn(ctx, limits), beam.pvalue.AsDict(line_counts)
    ).with_output_types(Batch).with_outputs(COUNTS, main="batches")
    return ReadOutputs(raw.batches, raw.counts)
