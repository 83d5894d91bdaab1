"""The dedupe's Beam side: gather the normalized rows by bucket of ``eventId``, shuffle, resolve.

The pure work is ``transforms.stages.dedupe``; this module moves the rows: through Arrow files in a
local folder (local runners), or through the runner's own shuffle (Dataflow).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from transforms.core import progress
from transforms.core.tagged import CONFLICTS, COUNTS, TimedDoFn
from transforms.stages import dedupe

FLUSH_BYTES_FILES = 32 << 20
"""Rows a shuffle DoFn buffers before it writes a file (Arrow bytes, ≈476 per normalized event: ≈70,000
events; 12 files for 1M events, was 192). Measured on the bench's 1M-event dry run alternated with the code
that wrote a file per batch and bucket, CPU of the process tree (the machine's load made wall times
vary by 2×): 32 MiB 0.98× (13 rounds); 128 MiB 1.04× (18 rounds) and +190 MiB in each worker; 16 MiB
0.96×, 64 MiB 1.01×, 256 MiB 1.09× and +500 MiB (3 rounds each). A larger buffer is more fresh memory
to fault in at every flush."""

FLUSH_BYTES_RUNNER = 128 << 20
"""The same for the runner's shuffle (Dataflow), where a flush is buckets elements: larger flushes make
fewer, larger elements (at 2,000 buckets, ≈140 rows each; each also carries its Arrow schema). A flush
holds about three times this (the buffer, the gathered rows, the bucket copies), in each of a worker's
bundles (one per vCPU on batch Dataflow, 3.75 GB each on n1-standard). Not measured on Dataflow."""


class GatherBucketsFn(beam.DoFn):
    """Normalized tables → their rows grouped by bucket, one flush of many tables at a time.

    The tables of a bundle are buffered until they pass ``flush_bytes`` (by default
    ``FLUSH_BYTES_FILES`` or ``FLUSH_BYTES_RUNNER``), and at the end of the bundle; a flush computes the
    bucket numbers of all its rows once and gathers them into bucket order. With ``shuffle_dir`` it
    writes them as ONE Arrow IPC file holding a record batch per bucket and yields ``(bucket, (path,
    batch index))``: only those go through Beam's GroupByKey, and the files written are one per flush
    (≤ bundles + Arrow bytes ÷ ``flush_bytes``, see ``transforms.core.sizing.shuffle_objects``), however
    many buckets. Without it, it yields ``(bucket, table)``: the runner's own shuffle (Dataflow's)
    moves flushes × buckets elements, not batches × buckets.

    A retried bundle writes new files (unique names); the failed attempt's files stay in the shuffle
    folder until the run's work files are removed. The import is globally windowed, so the rows of a
    bundle may share a flush and its output is emitted in the global window."""

    def __init__(self, buckets: int, shuffle_dir: str | None = None, flush_bytes: int | None = None) -> None:
        self.buckets, self.shuffle_dir = buckets, shuffle_dir
        self.flush_bytes = flush_bytes or (FLUSH_BYTES_FILES if shuffle_dir else FLUSH_BYTES_RUNNER)

    def start_bundle(self) -> None:
        self._tables: list[pa.Table] = []
        self._bytes = 0

    def process(self, table: pa.Table) -> Iterator:
        self._tables.append(table)
        self._bytes += table.nbytes
        if self._bytes >= self.flush_bytes:
            yield from self._flush()

    def finish_bundle(self) -> Iterator:
        for element in self._flush():
            yield GlobalWindows.windowed_value_at_end_of_window(element)

    def _flush(self) -> list:
        tables, self._tables, self._bytes = self._tables, [], 0
        if not tables:
            return []
        if self.shuffle_dir is None:
            return dedupe.split_into_buckets(tables, self.buckets)
        gathered, runs = dedupe.gather_by_bucket(tables, self.buckets)
        if not runs:
            return []
        path = FileSystems.join(self.shuffle_dir, f"{uuid.uuid4().hex}.arrow")
        # local files stay uncompressed (CPU is what a laptop lacks, and they are read back from a
        # memory map without a copy); remote ones (gs://) are lz4
        compression = "lz4" if FileSystems.get_scheme(self.shuffle_dir) else None
        with FileSystems.create(path) as f:
            indexes = dedupe.write_bucket_file(gathered, runs, f, compression=compression)
        return [(bucket, (path, index)) for bucket, index in indexes]


def _open_shuffle_file(path: str):
    if FileSystems.get_scheme(path) is None:
        return pa.memory_map(path)  # zero-copy: the batches point into the mapped file
    return FileSystems.open(path)


def bucket_tables(parts) -> list[pa.Table]:
    """A bucket's parts as tables: tables as they are, ``(path, batch index)`` pairs read with each
    file opened once."""
    tables, wanted = [], {}
    for part in parts:
        if isinstance(part, pa.Table):
            tables.append(part)
        else:
            path, index = part
            wanted.setdefault(path, []).append(index)
    for path, indexes in wanted.items():
        source = _open_shuffle_file(path)
        tables.append(dedupe.read_bucket_batches(source, indexes))
    return tables


class ResolveBucketFn(TimedDoFn):
    """(bucket, tables or (path, batch index) pairs) → (bucket, deduped table); duplicates counted,
    conflicts set aside."""

    STAGE = "dedupe"

    def start_bundle(self) -> None:
        self._told = False

    def process(self, element) -> Iterator:
        if not self._told:  # in process, not start_bundle: a fused stage starts its bundles last-first
            self._told = True
            progress.phase("dedupe")
        bucket, parts = element
        started = time.perf_counter()
        result = dedupe.resolve_bucket(bucket_tables(parts))
        self._timed(started, result.rows.num_rows)
        for key, n in result.counts.items():
            yield TaggedOutput(COUNTS, (key, n))
        yield from (TaggedOutput(CONFLICTS, c) for c in result.conflicts)
        if result.rows.num_rows:
            yield bucket, result.rows


class DedupeEvents(beam.PTransform):
    """Normalized tables → one row per eventId, as (bucket, table) pairs; conflicts and counts tagged.

    With ``shuffle_dir`` (local runners) the rows are shuffled through Arrow files in that folder,
    which is removed once every bucket is resolved; with None (Dataflow) through the runner's own
    shuffle, as Arrow tables (``GatherBucketsFn``)."""

    def __init__(self, buckets: int, shuffle_dir: str | None = None, flush_bytes: int | None = None) -> None:
        super().__init__()
        self.buckets, self.shuffle_dir, self.flush_bytes = buckets, shuffle_dir, flush_bytes

    def expand(self, tables):
        gather = GatherBucketsFn(self.buckets, self.shuffle_dir, self.flush_bytes)
        if self.shuffle_dir:
            keyed = tables | "SpillToBuckets" >> beam.ParDo(gather).with_output_types(tuple[int, tuple[str, int]])
        else:  # typed, so that the tables cross the shuffle in the Arrow coder of transforms.core.coders
            keyed = tables | "SplitIntoBuckets" >> beam.ParDo(gather).with_output_types(tuple[int, pa.Table])
        resolved = (
            keyed
            | "GroupBuckets" >> beam.GroupByKey()
            | "ResolveBuckets" >> beam.ParDo(ResolveBucketFn()).with_output_types(
                tuple[int, pa.Table]).with_outputs(CONFLICTS, COUNTS, main="rows")
        )
        if self.shuffle_dir:
            _ = (tables.pipeline
                 | "ShuffleFolder" >> beam.Create([self.shuffle_dir])
                 | "RemoveShuffleFiles" >> beam.Map(remove_shuffle_files, beam.pvalue.AsIter(resolved.counts)))
        return resolved.rows, resolved.conflicts, resolved.counts


def remove_shuffle_files(shuffle_dir: str, resolved) -> int:
    """Remove the shuffle folder once every bucket is resolved: ``resolved`` (the resolve's counts, a
    side input) is complete only then, and is not read. The files hold every row of the import (≈476
    bytes an event): gone now, they do not share the disk with what the sink writes, and a local
    folder beside a gs:// work folder does not outlive the run. The resolved rows are copies, not
    views of the files."""
    from transforms.core.workfiles import remove_tree

    return remove_tree(shuffle_dir)
