"""Dedupe stage: one row per ``eventId`` across the whole import.

Rows are spread over buckets by a hash of ``eventId`` (so the shuffle moves a few tables, not
millions of rows); each bucket is then resolved on its own. The winner of a group is the row with
the earliest event time, then the earliest input position (source URI, line, array index): a total
order, so the result does not depend on bundle order. Losers whose content equals the winner's are
exact duplicates (retries); the others are conflicting duplicates, and every version of such a group
is set aside for review.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from schemas.envelope import CONTENT_COLUMNS
from transforms.core.records import cyclic_gc_paused

WINNER_ORDER = ("timestamp", "source_uri", "source_line", "source_published_at", "source_message_id",
                "source_index")
"""The row that wins a group of same-eventId rows comes first in this order (nulls last): the earliest
event time, then the earliest input position (file and line, or publish time and message id)."""
SORT_KEYS = [("eventId", "ascending")] + [(c, "ascending") for c in WINNER_ORDER]


def bucket_of(event_ids: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Bucket number of each event id; stable across processes and runs of the same version."""
    hashes = pl.Series(values=event_ids).hash(seed=0x5EED).to_numpy()
    return (hashes % np.uint64(buckets)).astype(np.int64)


def gather_by_bucket(tables: list[pa.Table], buckets: int) -> tuple[pa.Table, list[tuple[int, int, int]]]:
    """The rows of some tables gathered into bucket order, as one table of a single chunk, and
    ``(bucket, start, length)`` of each non-empty bucket in it, in bucket order.

    Bucket numbers are computed once for all the rows, and the rows are taken once, after the tables
    are joined: taking each bucket from a table of several chunks passes over every chunk again per
    bucket (measured: 17 s for 2,000 buckets of 300,000 rows, against 0.1 s to gather them once)."""
    table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
    if table.num_rows == 0:
        return table, []
    numbers = bucket_of(table.column("eventId"), buckets)
    order = np.argsort(numbers, kind="stable")
    sorted_numbers = numbers[order]
    starts = np.flatnonzero(np.diff(sorted_numbers, prepend=-1))
    ends = np.append(starts[1:], len(sorted_numbers))
    gathered = table.take(pa.array(order)).combine_chunks()
    return gathered, [(int(sorted_numbers[s]), int(s), int(e - s)) for s, e in zip(starts, ends)]


def split_into_buckets(tables: pa.Table | list[pa.Table], buckets: int) -> list[tuple[int, pa.Table]]:
    """The rows of a table (or of several) partitioned by bucket; empty buckets are left out.

    Each bucket is a copy of its rows: a slice pickles the buffers of the whole table it was cut from,
    so N buckets going through an in-memory shuffle with the default coder would each carry them all
    (copying 2,000 buckets of 300,000 gathered rows: 0.4 s)."""
    gathered, runs = gather_by_bucket([tables] if isinstance(tables, pa.Table) else tables, buckets)
    return [(bucket, gathered.take(pa.array(np.arange(start, start + length)))) for bucket, start, length in runs]


def write_bucket_file(gathered: pa.Table, runs: list[tuple[int, int, int]], sink, *,
                      compression: str | None = "lz4") -> list[tuple[int, int]]:
    """The rows ``gather_by_bucket`` returned as ONE Arrow IPC file (random-access format) holding one
    record batch per bucket, so a reader takes only its bucket's batch; returns ``(bucket, batch
    index)`` per bucket. lz4 by default (cheap to write, small on gs://); a local shuffle folder is
    written uncompressed, so that its batches are read back zero-copy from a memory map."""
    [batch] = gathered.combine_chunks().to_batches() or [None]
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_file(sink, gathered.schema, options=options) as writer:
        for _, start, length in runs:
            writer.write_batch(batch.slice(start, length))  # the IPC writer writes only the slice's bytes
    return [(bucket, index) for index, (bucket, _, _) in enumerate(runs)]


def read_bucket_batches(source, indexes: list[int]) -> pa.Table:
    """Some record batches of a file ``write_bucket_file`` wrote, as one table (zero-copy from an
    uncompressed memory-mapped file)."""
    reader = pa.ipc.open_file(source)
    return pa.Table.from_batches([reader.get_batch(i) for i in indexes], schema=reader.schema)


@dataclass
class DedupeResult:
    rows: pa.Table
    conflicts: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (source_uri, metric) -> n


def _differing(a: dict, b: dict) -> list[str]:
    return [c for c in CONTENT_COLUMNS if a[c] != b[c]]


def resolve_bucket(tables: list[pa.Table]) -> DedupeResult:
    """Keep one row per eventId; count and classify the others."""
    with cyclic_gc_paused():
        return _resolve_bucket(tables)


def _counts_by_uri(uris: pa.Array | pa.ChunkedArray, metric: str) -> Counter:
    counts: Counter = Counter()
    for item in pc.value_counts(uris).to_pylist():
        counts[(item["values"], metric)] += item["counts"]
    return counts


def _resolve_bucket(tables: list[pa.Table]) -> DedupeResult:
    table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
    if table.num_rows == 0:
        return DedupeResult(table)
    # sort indices only: the rows are taken once, winners straight from the input
    order = pc.sort_indices(table.select([k for k, _ in SORT_KEYS]), sort_keys=SORT_KEYS).to_numpy()
    ids = table.column("eventId").take(order).combine_chunks()
    first = np.ones(table.num_rows, dtype=bool)
    if table.num_rows > 1:
        first[1:] = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)).to_numpy(zero_copy_only=False)
    winners = table.take(order[first])
    result = DedupeResult(winners)
    result.counts.update(_counts_by_uri(winners.column("source_uri"), "loaded"))
    if first.all():
        return result

    # Each loser against its group's winner, column by column (polars compares nested values too);
    # only groups with a conflicting loser reach per-row Python.
    winner_pos = np.flatnonzero(first)[np.cumsum(first) - 1]
    losers = ~first
    loser_rows, their_winners = order[losers], order[winner_pos[losers]]
    # only the losers and their winners are converted (the whole bucket's content columns were: a
    # copy of most of the bucket, the largest worker's peak at 5M events)
    content = table.select(list(CONTENT_COLUMNS))
    left = pl.from_arrow(content.take(pa.array(loser_rows)), rechunk=True)
    right = pl.from_arrow(content.take(pa.array(their_winners)), rechunk=True)
    same = np.ones(len(loser_rows), dtype=bool)
    for column in CONTENT_COLUMNS:
        same &= left[column].eq_missing(right[column]).to_numpy()
    uris = table.column("source_uri").take(loser_rows)
    result.counts.update(_counts_by_uri(uris.filter(pa.array(same)), "duplicate_exact"))
    if same.all():
        return result
    result.counts.update(_counts_by_uri(uris.filter(pa.array(~same)), "duplicate_conflicting"))

    conflicting_groups = np.unique(their_winners[~same])
    in_conflict = np.isin(order[winner_pos], conflicting_groups)  # sorted positions of those groups
    rows = table.take(order[in_conflict]).to_pylist()
    starts = first[in_conflict]
    groups: list[list[dict]] = []
    for row, starts_group in zip(rows, starts):
        if starts_group:
            groups.append([row])
        else:
            groups[-1].append(row)
    for winner, *others in groups:
        for version in (winner, *others):
            result.conflicts.append({
                "eventId": winner["eventId"],
                "kept": version is winner,
                "differs_from_kept": [] if version is winner else _differing(winner, version),
                "row": version,
            })
    return result
