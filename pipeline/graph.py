"""The pipeline graph: read → parse → validate → normalize → dedupe → sink, plus accounting.

Each step is a role of ``transforms/``: ``sources.read_fn`` reads, ``stages.dofns`` processes each batch
(``stages.batch.process_batch``), ``stages.shuffle`` dedupes, and a sink of ``pipeline.sinks`` writes."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipeline.options import CheckedOptions
from transforms.core.outputs import ImportOutputs
from transforms.core.payloads import bound_payloads
from transforms.core.records import ImportContext
from transforms.core.settings import ReadLimits, RowPolicy, TimestampPolicy
from transforms.core.sizing import derive_buckets, estimated_events
from transforms.core.tagged import COUNTS, DEAD_LETTERS
from transforms.pubsub.subscription import ImportSubscription
from transforms.sources.files import ReadTask
from transforms.sources.read_fn import read_files
from transforms.stages.dofns import ProcessBatchFn
from transforms.stages.privacy import redact
from transforms.stages.shuffle import DedupeEvents

log = logging.getLogger("importer")


class ReadValidateNormalize(beam.PTransform):
    """Read tasks → normalized Arrow tables, dead letters (lists: one per stage and batch) and counts:
    ``read_files`` (transforms.sources), then ``ProcessBatchFn`` (transforms.stages) on each batch.

    The read's dead letters reach ``ProcessBatchFn`` with the batches (``DeadLetterBatch``) and leave
    with its own: ONE dead-letter output, whose way to the sink the local runner fuses into the read's
    stage (a Flatten of two would be a stage of its own, moving every dead letter: 0.3 s of a 1M-line
    import). With ``keep_dead_letters=False`` (a dry run: nothing is written) they are made and counted
    but not returned."""

    def __init__(self, ctx: ImportContext, limits: ReadLimits, policy: TimestampPolicy,
                 row_policy: RowPolicy = RowPolicy(), keep_dead_letters: bool = True) -> None:
        super().__init__()
        self.ctx, self.limits, self.policy, self.row_policy = ctx, limits, policy, row_policy
        self.keep_dead_letters = keep_dead_letters

    def expand(self, tasks):
        read = read_files(tasks, self.ctx, self.limits)
        # the main output's type selects the Arrow coder of transforms.core.coders
        rows = read.batches | "Process" >> beam.ParDo(
            ProcessBatchFn(self.ctx, self.policy, self.row_policy)).with_output_types(
            pa.Table).with_outputs(DEAD_LETTERS, COUNTS, main="rows")
        dead = rows.dead_letters if self.keep_dead_letters else None
        if dead is not None and self.row_policy.redact_dead_letters:
            dead = dead | "RedactDeadLetters" >> beam.Map(lambda batch: [redact(d) for d in batch])
        counts = (read.counts, rows.counts) | "StageCounts" >> beam.Flatten()
        return rows.rows, dead, counts


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
    ``accounting_prefix``. The dedupe shuffles its rows through files under ``shuffle_dir``, or through
    the runner's own shuffle when it is None (see ``shuffle_folder``); ``opts.buckets`` must be set
    (``with_derived_buckets``)."""
    limits = ReadLimits(batch_size=opts.batch_size, max_line_bytes=opts.max_line_bytes,
                        payload_dir=opts.dead_letter_payloads)
    rows, dead, stage_counts = (
        p
        | "ReadTasks" >> beam.Create(tasks)
        | "SpreadTasks" >> beam.Reshuffle()
        | "ReadValidateNormalize" >> ReadValidateNormalize(ctx, limits, opts.policy, opts.row_policy,
                                                           keep_dead_letters=not opts.dry_run)
    )
    if not opts.dry_run:  # payloads too large for a dead-letter row: stored whole, cut in the row
        dead = dead | "BoundPayloads" >> beam.Map(bound_payloads, opts.dead_letter_payloads)
    if not opts.dry_run:  # one example payload per reason, for the HTML report (not read back from the table)
        _ = (dead
             | "ReasonExamples" >> beam.FlatMap(reason_examples)
             | "OneExamplePerReason" >> beam.CombinePerKey(min)
             | "GatherExamples" >> beam.combiners.ToList()
             | "WriteExamples" >> beam.Map(_write_examples, accounting_prefix + EXAMPLES_SUFFIX))
    unique, conflicts, dedupe_counts = rows | "Dedupe" >> DedupeEvents(opts.buckets, shuffle_dir)
    outputs = ImportOutputs(unique, dead, conflicts)
    all_counts = [stage_counts, dedupe_counts]
    if sink is not None:  # a dry run's sink only counts the rows (no dead letters were gathered for it)
        all_counts.append((unique if opts.dry_run else outputs) | "Write" >> sink())
    counts = (
        all_counts
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    _write_counts(counts, accounting_prefix)
    return GraphOutputs(outputs, counts)


def shuffle_folder(work_dir: str, local_runner: bool) -> str | None:
    """Where the dedupe shuffles its rows: a local folder for a local runner, whose workers all run on
    this machine (a gs:// --temp_location would only add a request per file, and the time to send
    and fetch it), ``WORK_DIR/shuffle`` when the work folder is local, else a new temporary folder;
    None for other runners (Dataflow): their own shuffle, no files at all."""
    if not local_runner:
        return None
    if FileSystems.get_scheme(work_dir) is None:
        return FileSystems.join(work_dir, "shuffle")
    return tempfile.mkdtemp(prefix="importer-shuffle-")


def with_derived_buckets(opts: CheckedOptions, files: list[tuple[str, int]], local_runner: bool) -> CheckedOptions:
    """``opts`` with the dedupe's bucket count derived from the input files' ``(uri, size)`` when
    ``--buckets`` was not given (``transforms.core.sizing``). Resolved before the pipeline is built: the
    sinks name their row files after the bucket count."""
    if opts.buckets is not None:
        return opts
    buckets = derive_buckets(files, local_runner)
    log.info("dedupe: %d buckets for about %s events (--buckets to choose)", buckets, f"{estimated_events(files):,}")
    return dataclasses.replace(opts, buckets=buckets)


EXAMPLES_SUFFIX = "-examples.json"
"""Beside the accounting: ``{reason code: one payload}`` of the run's dead letters (``reason_examples``)."""
EXAMPLE_CHARS = 2_000


def reason_examples(batch: list[dict]):
    """``(reason code, payload excerpt)`` for the first dead letter of each code in one batch of them."""
    seen: set[str] = set()
    for dead in batch:
        for r in dead.get("reasons") or []:
            if r["code"] not in seen:
                seen.add(r["code"])
                yield r["code"], (dead.get("raw_payload") or dead.get("raw_payload_base64") or "")[:EXAMPLE_CHARS]


def _write_examples(pairs: list, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(orjson.dumps(dict(sorted(pairs))))


def read_examples(accounting_prefix: str) -> dict[str, str] | None:
    """What ``_write_examples`` wrote, or None (a dry run, a Pub/Sub import, or no dead letter)."""
    path = accounting_prefix + EXAMPLES_SUFFIX
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        return orjson.loads(f.read())


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
    """Add a Pub/Sub import to ``p``: the subscription read, landed and MERGEd (see transforms.pubsub.subscription)."""
    counts = p | "ImportSubscription" >> ImportSubscription(opts.stream, opts.target, ctx, opts.policy, local,
                                                                   opts.row_policy)
    if counts is None:  # a streaming job never ends: its accounting is its metrics
        return
    _write_counts(counts | "SumCounts" >> beam.CombinePerKey(sum), accounting_prefix)
