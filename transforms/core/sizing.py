"""How wide the dedupe shuffle is, from the input's size, and what the shuffle writes.

Pure arithmetic on file names and sizes (no Beam import: the launcher calls it before building the
pipeline, and its tests run in milliseconds). The numbers are estimates: a bucket is resolved in one
piece, so what matters is the order of magnitude of the events per bucket, not the exact count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

NDJSON_BYTES_PER_EVENT = 394
"""Average bytes of an NDJSON line: 393.5 over the 1M lines of ``bench/generate_events.py --seed 42``
(393.5 MB), 393.8 over the 12,000 lines of ``examples/events-2026-11.ndjson.gz``. JSON arrays are
about the same; CSV, without the key names, is smaller (its events are underestimated by ≈ a fifth)."""

EXPANSION = {".gz": 6.9, ".gzip": 6.9, ".deflate": 6.9, ".zst": 7.9, ".zstd": 7.9, ".bz2": 9.9}
"""Uncompressed ÷ compressed bytes, by extension, measured on the first 60 MB of that bench export:
gzip level 6 (Python's and the gzip tool's default) 6.88 (the example export: 6.80), zlib (deflate)
6.88, zstd level 3 (its default) 7.87, bzip2 9.9 (on 20 MB). Compressing better than that
(gzip -9: 7.24) means more events than estimated, a little larger buckets."""

PARQUET_EXPANSION = 7.7
"""NDJSON bytes ÷ Parquet bytes of the same 200,000 events of that export written by pyarrow with
its default (snappy) compression, ``data`` as JSON text; zstd files hold more (10.7), uncompressed
ones fewer (4.1)."""

PARQUET_SUFFIXES = (".parquet", ".pq")

ARROW_BYTES_PER_EVENT = 476
"""Arrow bytes (``Table.nbytes``) of a normalized event, measured over 403,271 events of that export:
what a shuffle flush buffers, and what a bucket weighs when it is resolved."""

EVENTS_PER_BUCKET_DATAFLOW = 50_000
"""Dataflow: a bucket of 50,000 events is ≈24 MB of Arrow, and resolving it took 2 to 3 times that
(measured: 0.1 s, the rows, their sort order and the winners), so a worker resolves many at once
with memory to spare, and 100M events make 2,000 buckets."""

EVENTS_PER_BUCKET_LOCAL = 150_000
"""Local runners: a bucket of about 150,000 events. The largest process of a 5M-event dry run (the
bench's, 2 workers), measured one after the other on a quiet machine: 8 buckets (625,000 each, the
rule before) 1,350 MiB in 31.4 s; 32 buckets 825 MiB in 29.6 s; 34 (this rule) 768 MiB in 30.2 s.
At 2M: 8 buckets 870 MiB, 14 (this rule) 778 MiB, both 13.7-14.3 s. Up to about 1.2M events: 8,
as before (the 1M bench is unchanged)."""

MIN_BUCKETS = 8
"""At least this many: both local worker processes busy during the resolve, and no local change for
small inputs (8 was the fixed default)."""

MAX_BUCKETS = 10_000
"""At most this many: the sinks write one Parquet file per bucket, and the BigQuery sink loads all
of them with one load job, which takes at most 10,000 source URIs."""


def estimated_events(files: Iterable[tuple[str, int]]) -> int:
    """Events in some ``(uri, size in bytes)`` files (``transforms.sources.files.expand_patterns``), from the
    size each would have as NDJSON: compressed and Parquet files expanded by their measured ratios."""
    ndjson_bytes = 0.0
    for uri, size in files:
        name = uri.lower()
        factor = 1.0
        for suffix, expansion in EXPANSION.items():
            if name.endswith(suffix):
                factor, name = expansion, name[: -len(suffix)]
                break
        if name.endswith(PARQUET_SUFFIXES):
            factor *= PARQUET_EXPANSION
        ndjson_bytes += size * factor
    return math.ceil(ndjson_bytes / NDJSON_BYTES_PER_EVENT)


def derive_buckets(files: Iterable[tuple[str, int]], local: bool) -> int:
    """Dedupe buckets for an import of these ``(uri, size)`` files when ``--buckets`` is not given:
    ⌈estimated events ÷ events per bucket⌉ (150,000 locally, 50,000 on Dataflow), kept within
    [MIN_BUCKETS, MAX_BUCKETS]."""
    per_bucket = EVENTS_PER_BUCKET_LOCAL if local else EVENTS_PER_BUCKET_DATAFLOW
    wanted = math.ceil(estimated_events(files) / per_bucket)
    return max(MIN_BUCKETS, min(MAX_BUCKETS, wanted))


def shuffle_objects(bundles: int, arrow_bytes: int, flush_bytes: int) -> int:
    """Most files the dedupe shuffle writes into a shuffle folder (local runners): one per flush, and
    a bundle flushes each time its buffer passes ``flush_bytes`` (32 MiB) and once more at its end, so

        objects written ≤ bundles + ⌊Arrow bytes ÷ flush_bytes⌋,  Arrow bytes ≈ 476 × events,

    whatever the number of buckets (before: input batches × buckets). Bundles without rows write
    nothing. On Dataflow nothing is written: the runner's shuffle moves ≤ flushes × buckets elements
    (flushes of 128 MiB there)."""
    return bundles + arrow_bytes // flush_bytes
