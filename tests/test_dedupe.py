"""Dedupe stage: bucketing by eventId and resolving a bucket (winner, exact and conflicting duplicates)."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow import ROW_SCHEMA
from transforms.core.records import ImportContext, RecordBatch
from transforms.core.settings import TimestampPolicy
from transforms.stages.dedupe import (
    bucket_of,
    gather_by_bucket,
    read_bucket_batches,
    resolve_bucket,
    split_into_buckets,
    write_bucket_file,
)
from transforms.stages.normalize import normalize_batch

CTX = ImportContext("run-dedupe", 1_764_000_000_000_000, "5f0c2a9e8b3d4c1a2b3c4d5e")
KEY = "61a095fdd8d2e20011544831"
T0 = 1_763_000_000_000  # ms
A, B, C = "gs://bucket/a.ndjson", "gs://bucket/b.ndjson", "gs://bucket/c.ndjson"


def event(event_id: str, ts: int = T0, **overrides) -> dict:
    env = {"key": KEY, "tmpId": "ckz2qlmkm00002y8pa227wee9", "eventId": event_id, "name": "page_view",
           "url": "https://shop.example.com/p/1", "v": 1, "timestamp": ts, "data": {"locale": "fr"}}
    env.update(overrides)
    return env


def table(uri: str, *rows: tuple) -> pa.Table:
    """rows: (envelope, line) or (envelope, line, index)."""
    batch = RecordBatch(uri)
    for row in rows:
        env, line, index = (*row, None) if len(row) == 2 else row
        batch.append(env, b"{}", line, index)
    out, dead, _ = normalize_batch(batch, CTX, TimestampPolicy())
    assert dead == []
    return out


def origins(t: pa.Table) -> list[tuple]:
    return list(zip(t.column("eventId").to_pylist(), t.column("source_uri").to_pylist(),
                    t.column("source_line").to_pylist(), t.column("source_index").to_pylist(), strict=True))


# --- split_into_buckets ------------------------------------------------------------------------


def _many_rows() -> pa.Table:
    rows = [(event(f"evt-{i % 37}", T0 + i), i + 1) for i in range(200)]
    return table(A, *rows)


def test_every_row_lands_in_exactly_one_bucket() -> None:
    t = _many_rows()
    parts = split_into_buckets(t, 8)
    numbers = [n for n, _ in parts]
    assert len(numbers) == len(set(numbers))
    assert all(0 <= n < 8 for n in numbers)
    assert sum(p.num_rows for _, p in parts) == t.num_rows
    assert sorted(o for _, p in parts for o in origins(p)) == sorted(origins(t))
    assert all(p.num_rows > 0 and p.schema == ROW_SCHEMA for _, p in parts)


def test_same_event_id_same_bucket_and_bucket_matches_bucket_of() -> None:
    parts = split_into_buckets(_many_rows(), 8)
    bucket_by_id: dict[str, set[int]] = {}
    for n, p in parts:
        for eid in p.column("eventId").to_pylist():
            bucket_by_id.setdefault(eid, set()).add(n)
    assert all(len(b) == 1 for b in bucket_by_id.values())
    ids = sorted(bucket_by_id)
    assert bucket_of(pa.array(ids), 8).tolist() == [bucket_by_id[i].pop() for i in ids]


def test_same_event_id_same_bucket_across_tables() -> None:
    first = table(A, (event("x1"), 1), (event("x2"), 2), (event("x3"), 3))
    second = table(B, (event("x3", T0 + 5), 9), (event("x1", T0 + 5), 10))
    where = {}
    for t in (first, second):
        for n, p in split_into_buckets(t, 16):
            for eid in p.column("eventId").to_pylist():
                assert where.setdefault(eid, n) == n


def test_bucketing_is_deterministic() -> None:
    t = _many_rows()
    once = [(n, origins(p)) for n, p in split_into_buckets(t, 8)]
    again = [(n, origins(p)) for n, p in split_into_buckets(t, 8)]
    assert once == again


def test_bucket_numbers_are_the_same_in_another_process() -> None:
    # workers split different files: a bucket number must not depend on the process computing it
    ids = [f"evt-{i}" for i in range(50)] + ["", "é", "android_id"]
    here = bucket_of(pa.array(ids), 64).tolist()
    code = (
        "import sys, json, pyarrow as pa\n"
        "from transforms.stages.dedupe import bucket_of\n"
        "print(json.dumps(bucket_of(pa.array(json.loads(sys.argv[1])), 64).tolist()))\n"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code, json.dumps(ids)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert json.loads(out.stdout) == here


def test_one_bucket_holds_everything() -> None:
    t = _many_rows()
    [(n, p)] = split_into_buckets(t, 1)
    assert n == 0 and p.num_rows == t.num_rows


def test_empty_table_gives_no_bucket() -> None:
    assert split_into_buckets(_many_rows().slice(0, 0), 8) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40), st.integers(1, 20))
def test_bucket_partition_property(ids: list[str], buckets: int) -> None:
    t = table(A, *[(event(eid, T0 + i), i + 1) for i, eid in enumerate(ids)])
    parts = split_into_buckets(t, buckets)
    assert sorted(o for _, p in parts for o in origins(p)) == sorted(origins(t))
    seen: dict[str, int] = {}
    for n, p in parts:
        assert 0 <= n < buckets
        for eid in p.column("eventId").to_pylist():
            assert seen.setdefault(eid, n) == n


def test_gather_by_bucket_joins_tables_into_one_chunk_in_bucket_order() -> None:
    first, second = _many_rows(), table(B, *[(event(f"evt-{i}", T0 + 9), i + 1) for i in range(50)])
    gathered, runs = gather_by_bucket([first, second], 8)
    assert gathered.column("eventId").num_chunks == 1
    assert sorted(origins(gathered)) == sorted(origins(first) + origins(second))
    assert [b for b, _, _ in runs] == sorted({b for b, _, _ in runs})  # bucket order, each bucket once
    assert sum(n for _, _, n in runs) == gathered.num_rows
    for bucket, start, length in runs:
        assert set(bucket_of(gathered.column("eventId").slice(start, length), 8).tolist()) == {bucket}


def test_bucket_file_holds_one_record_batch_per_bucket(tmp_path: Path) -> None:
    gathered, runs = gather_by_bucket([_many_rows()], 8)
    path = tmp_path / "part.arrow"
    with path.open("wb") as f:
        indexes = write_bucket_file(gathered, runs, f, compression=None)
    assert [b for b, _ in indexes] == [b for b, _, _ in runs] and [i for _, i in indexes] == list(range(len(runs)))
    expected = dict(split_into_buckets(_many_rows(), 8))
    for bucket, index in indexes:
        before = pa.total_allocated_bytes()
        part = read_bucket_batches(pa.memory_map(str(path)), [index])
        assert pa.total_allocated_bytes() == before, "an uncompressed local file is read zero-copy"
        assert origins(part) == origins(expected[bucket])


def test_compressed_bucket_file_reads_back(tmp_path: Path) -> None:
    gathered, runs = gather_by_bucket([_many_rows()], 8)
    path = tmp_path / "part.arrow"
    with path.open("wb") as f:
        indexes = write_bucket_file(gathered, runs, f, compression="lz4")
    with path.open("rb") as f:
        parts = read_bucket_batches(f, [i for _, i in indexes])
    assert sorted(origins(parts)) == sorted(origins(gathered))


def test_bucket_copies_do_not_carry_the_gathered_rows() -> None:
    # a slice would pickle every row it was cut from: one bucket of 8 must weigh about an eighth
    t = pa.concat_tables([_many_rows()] * 20).combine_chunks()
    for _, part in split_into_buckets(t, 8):
        assert len(pickle.dumps(part)) < 3 * t.nbytes / 8


# --- resolve_bucket ----------------------------------------------------------------------------


def winners(result) -> list[tuple]:
    return origins(result.rows)


def test_no_duplicates_keeps_everything_and_counts_loaded() -> None:
    result = resolve_bucket([table(A, (event("e2"), 1), (event("e1"), 2)), table(B, (event("e3"), 1))])
    assert winners(result) == [("e1", A, 2, None), ("e2", A, 1, None), ("e3", B, 1, None)]
    assert result.conflicts == []
    assert result.counts == Counter({(A, "loaded"): 2, (B, "loaded"): 1})


def test_earliest_timestamp_wins_even_from_a_later_position() -> None:
    result = resolve_bucket([table(A, (event("e", T0 + 1), 1)), table(B, (event("e", T0), 50))])
    assert winners(result) == [("e", B, 50, None)]
    # same eventId, different timestamp: a conflicting duplicate
    assert result.counts == Counter({(B, "loaded"): 1, (A, "duplicate_conflicting"): 1})


@pytest.mark.parametrize(
    ("rows_a", "rows_b", "winner"),
    [
        # same time: source_uri first
        ([("e", 9)], [("e", 1)], ("e", A, 9, None)),
        # same time and file: line
        ([("e", 7), ("e", 3)], [], ("e", A, 3, None)),
        # same line (one JSON array): index
        ([("e", 4, 2), ("e", 4, 0), ("e", 4, 1)], [], ("e", A, 4, 0)),
    ],
)
def test_ties_broken_by_source_position(rows_a: list, rows_b: list, winner: tuple) -> None:
    tables = [table(A, *[(event(r[0]), *r[1:]) for r in rows_a])]
    if rows_b:
        tables.append(table(B, *[(event(r[0]), *r[1:]) for r in rows_b]))
    assert winners(resolve_bucket(tables)) == [winner]


def test_exact_duplicates_counted_per_source_file() -> None:
    result = resolve_bucket([
        table(A, (event("e1"), 1), (event("e1"), 2), (event("e2"), 3)),
        table(B, (event("e1"), 1), (event("e2"), 2), (event("e2"), 3)),
        table(C, (event("e3"), 1)),
    ])
    assert winners(result) == [("e1", A, 1, None), ("e2", A, 3, None), ("e3", C, 1, None)]
    assert result.conflicts == []
    assert result.counts == Counter({
        (A, "loaded"): 2, (C, "loaded"): 1,
        (A, "duplicate_exact"): 1, (B, "duplicate_exact"): 3,
    })


def test_exact_duplicate_means_same_content_not_same_raw_text() -> None:
    # the URLs differ on the wire but normalize to the same value: still an exact duplicate
    result = resolve_bucket([table(A, (event("e", url="https://Shop.Example.com:443/p/1?utm=x"), 1),
                                   (event("e", url="https://shop.example.com/p/1#top"), 2))])
    assert result.counts == Counter({(A, "loaded"): 1, (A, "duplicate_exact"): 1})
    assert result.conflicts == []


def test_conflicting_duplicates_listed_with_every_version() -> None:
    result = resolve_bucket([
        table(A, (event("e", url="https://shop.example.com/p/1"), 1),
              (event("other"), 2)),
        table(B, (event("e", url="https://shop.example.com/p/2"), 1),
              (event("e", url="https://shop.example.com/p/1"), 2),
              (event("e", url="https://shop.example.com/p/3", name="add_cart"), 3)),
    ])
    assert winners(result) == [("e", A, 1, None), ("other", A, 2, None)]
    assert result.counts == Counter({
        (A, "loaded"): 2,
        (B, "duplicate_conflicting"): 2,
        (B, "duplicate_exact"): 1,
    })
    summary = [(c["eventId"], c["kept"], c["differs_from_kept"], c["row"]["source_uri"], c["row"]["source_line"],
                c["row"]["url"]) for c in result.conflicts]
    assert summary == [
        ("e", True, [], A, 1, "https://shop.example.com/p/1"),
        ("e", False, ["url"], B, 1, "https://shop.example.com/p/2"),
        ("e", False, [], B, 2, "https://shop.example.com/p/1"),
        ("e", False, ["name", "url"], B, 3, "https://shop.example.com/p/3"),
    ]
    assert set(result.conflicts[0]["row"]) == set(ROW_SCHEMA.names)


def test_labels_and_value_differences_are_conflicts() -> None:
    result = resolve_bucket([table(A, (event("e", data={"value": 10}), 1), (event("e", data={"value": 10.001}), 2),
                                   (event("e", data={"value": 11, "x": "y"}), 3))])
    assert [c["differs_from_kept"] for c in result.conflicts] == [[], [], ["value", "labels"]]
    assert result.counts == Counter({(A, "loaded"): 1, (A, "duplicate_exact"): 1, (A, "duplicate_conflicting"): 1})


def test_single_empty_table() -> None:
    empty = table(A)
    result = resolve_bucket([empty])
    assert result.rows.num_rows == 0
    assert result.conflicts == [] and result.counts == Counter()


def _fixture_tables() -> list[pa.Table]:
    return [
        table(A, (event("e1"), 1), (event("e2", T0 + 3), 2), (event("e3", url="https://x.example/"), 3, 0),
              (event("e3"), 3, 1), (event("e4"), 4)),
        table(B, (event("e1"), 1), (event("e2", T0 + 1), 2), (event("e3", url="https://y.example/"), 3),
              (event("e5"), 4)),
        table(C, (event("e2", T0 + 1), 7), (event("e1", ua="curl"), 8), (event("e5"), 9)),
    ]


def _summary(result) -> tuple:
    return (result.rows.to_pylist(), result.conflicts, result.counts)


def test_fixture_result() -> None:
    result = resolve_bucket(_fixture_tables())
    assert winners(result) == [("e1", A, 1, None), ("e2", B, 2, None), ("e3", A, 3, 0), ("e4", A, 4, None),
                               ("e5", B, 4, None)]
    assert result.counts == Counter({
        (A, "loaded"): 3, (B, "loaded"): 2,
        (B, "duplicate_exact"): 1, (C, "duplicate_exact"): 2, (C, "duplicate_conflicting"): 1,
        (A, "duplicate_conflicting"): 2, (B, "duplicate_conflicting"): 1,
    })
    assert [(c["eventId"], c["kept"], c["row"]["source_uri"], c["differs_from_kept"]) for c in result.conflicts] == [
        ("e1", True, A, []), ("e1", False, B, []), ("e1", False, C, ["ua"]),
        ("e2", True, B, []), ("e2", False, C, []), ("e2", False, A, ["timestamp"]),
        ("e3", True, A, []), ("e3", False, A, ["url"]), ("e3", False, B, ["url"]),
    ]


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(12)), st.lists(st.integers(1, 11), max_size=4, unique=True))
def test_result_independent_of_input_order_and_grouping(order: list[int], cuts: list[int]) -> None:
    expected = _summary(resolve_bucket(_fixture_tables()))
    everything = pa.concat_tables(_fixture_tables())
    shuffled = everything.take(pa.array(order))
    bounds = [0, *sorted(cuts), everything.num_rows]
    tables = [shuffled.slice(lo, hi - lo) for lo, hi in pairwise(bounds)]
    assert _summary(resolve_bucket(tables)) == expected


def test_result_independent_of_table_order_random_shuffles() -> None:
    rng = random.Random(7)
    tables = _fixture_tables()
    expected = _summary(resolve_bucket(tables))
    for _ in range(20):
        rng.shuffle(tables)
        assert _summary(resolve_bucket(list(tables))) == expected


# --- what the mutation pass asked for (docs/mutation.md) -----------------------------------------


def test_bucket_numbers_are_integers() -> None:
    numbers = bucket_of(pa.array(["a", "b", "c"]), 7)
    assert numbers.dtype == np.int64
    assert all(0 <= n < 7 for n in numbers.tolist())


def test_gathering_keeps_the_input_order_within_each_bucket() -> None:
    # rows of one bucket come out in the order they came in (a stable gather), so a bucket's content
    # does not depend on the sorting algorithm
    t = table(A, *[(event(f"evt-{i % 300}", T0 + i), i + 1) for i in range(2_000)])
    gathered, runs = gather_by_bucket([t], 4)
    for _, start, length in runs:
        lines = gathered.column("source_line").slice(start, length).to_pylist()
        assert lines == sorted(lines)


def test_split_into_buckets_takes_several_tables() -> None:
    first, second = _many_rows(), table(B, *[(event(f"evt-{i}", T0 + 9), i + 1) for i in range(50)])
    parts = split_into_buckets([first, second], 8)
    assert sorted(o for _, p in parts for o in origins(p)) == sorted(origins(first) + origins(second))
    assert dict(parts).keys() == dict(split_into_buckets(pa.concat_tables([first, second]), 8)).keys()


def test_bucket_files_are_lz4_compressed_by_default(tmp_path: Path) -> None:
    gathered, runs = gather_by_bucket([pa.concat_tables([_many_rows()] * 10)], 8)
    sizes = {}
    for name, kwargs in (("default", {}), ("plain", {"compression": None})):
        path = tmp_path / f"{name}.arrow"
        with path.open("wb") as f:
            indexes = write_bucket_file(gathered, runs, f, **kwargs)
        with path.open("rb") as f:
            assert sorted(origins(read_bucket_batches(f, [i for _, i in indexes]))) == sorted(origins(gathered))
        sizes[name] = path.stat().st_size
    assert sizes["default"] < sizes["plain"] / 2
    with (tmp_path / "default.arrow").open("rb") as f:
        assert pa.ipc.open_file(f).get_batch(0).num_rows > 0  # a reader without options reads it


def test_reading_no_batch_of_a_bucket_file_gives_an_empty_table_of_its_schema(tmp_path: Path) -> None:
    gathered, runs = gather_by_bucket([_many_rows()], 8)
    path = tmp_path / "part.arrow"
    with path.open("wb") as f:
        write_bucket_file(gathered, runs, f)
    with path.open("rb") as f:
        empty = read_bucket_batches(f, [])
    assert empty.num_rows == 0 and empty.schema == ROW_SCHEMA


def test_a_single_row_is_loaded_and_counted() -> None:
    result = resolve_bucket([table(A, (event("only"), 7))])
    assert winners(result) == [("only", A, 7, None)]
    assert result.counts == Counter({(A, "loaded"): 1})
    assert result.conflicts == []
