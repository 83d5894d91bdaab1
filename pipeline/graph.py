"""The pipeline graph: read → parse → validate → normalize → dedupe → sink, plus accounting."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems

from pipeline.options import CheckedOptions
from transforms.read import ReadLimits
from transforms.read_pubsub import ImportSubscription
from transforms.records import ImportContext
from transforms.sources import ReadTask
from transforms.stages import DedupeEvents, ReadValidateNormalize
from transforms.write_files import ImportOutputs


class GraphOutputs(NamedTuple):
    outputs: ImportOutputs
    counts: beam.PCollection  # ((source_uri, metric), n), summed


def build_pipeline(
    p: beam.Pipeline,
    opts: CheckedOptions,
    tasks: list[ReadTask],
    ctx: ImportContext,
    accounting_prefix: str,
    sink: Callable[[], beam.PTransform] | None,
    shuffle_dir: str | None = None,
) -> GraphOutputs:
    """Add the import to ``p``. ``sink`` makes the PTransform that writes ``ImportOutputs`` and returns
    counts of its own (None: write nothing, as in a dry run). Summed counts are written under
    ``accounting_prefix``; the dedupe shuffles its rows through files under ``shuffle_dir``."""
    limits = ReadLimits(batch_size=opts.batch_size, max_line_bytes=opts.max_line_bytes)
    rows, dead, stage_counts = (
        p
        | "ReadTasks" >> beam.Create(tasks)
        | "SpreadTasks" >> beam.Reshuffle()
        | "ReadValidateNormalize" >> ReadValidateNormalize(ctx, limits, opts.policy, opts.row_policy,
                                                           keep_dead_letters=sink is not None)
    )
    unique, conflicts, dedupe_counts = rows | "Dedupe" >> DedupeEvents(opts.buckets, shuffle_dir)
    outputs = ImportOutputs(unique, dead, conflicts)
    all_counts = [stage_counts, dedupe_counts]
    if sink is not None:
        all_counts.append(outputs | "Write" >> sink())
    counts = (
        all_counts
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    _write_counts(counts, accounting_prefix)
    return GraphOutputs(outputs, counts)


def _write_count_file(counts: list, prefix: str) -> str:
    path = prefix + ".ndjson"
    with FileSystems.create(path) as f:
        f.write(b"".join(orjson.dumps([uri, metric, n]) + b"\n" for (uri, metric), n in counts))
    return path


def _write_counts(counts: beam.PCollection, prefix: str) -> None:
    """The summed counts (a few per file and metric) gathered into one list and written as one NDJSON
    file, ``PREFIX.ndjson``: a third of the stages ``WriteToText`` takes, each costing the local
    runner time whatever the input's size."""
    _ = (
        counts
        | "GatherCounts" >> beam.combiners.ToList()
        | "WriteCounts" >> beam.Map(_write_count_file, prefix)
    )


def build_subscription_pipeline(p: beam.Pipeline, opts: CheckedOptions, ctx: ImportContext,
                                accounting_prefix: str, local: bool) -> None:
    """Add a Pub/Sub import to ``p``: the subscription read, landed and MERGEd (see transforms.read_pubsub)."""
    counts = p | "ImportSubscription" >> ImportSubscription(opts.stream, opts.target, ctx, opts.policy, local,
                                                                   opts.row_policy)
    if counts is None:  # a streaming job never ends: its accounting is its metrics
        return
    _write_counts(counts | "SumCounts" >> beam.CombinePerKey(sum), accounting_prefix)
