"""Bucket counts derived from the input's size, and the shuffle's object count."""

from __future__ import annotations

import pytest

from transforms.core.sizing import (
    EXPANSION,
    MAX_BUCKETS,
    MIN_BUCKETS,
    NDJSON_BYTES_PER_EVENT,
    PARQUET_EXPANSION,
    derive_buckets,
    estimated_events,
    shuffle_objects,
)

GB = 10**9


def ndjson(size: int, name: str = "gs://b/x.ndjson") -> list[tuple[str, int]]:
    return [(name, size)]


@pytest.mark.parametrize("local", [True, False])
def test_more_input_never_means_fewer_buckets(local: bool) -> None:
    sizes = [0, 1, 10**6, 400 * 10**6, 4 * GB, 40 * GB, 400 * GB, 4000 * GB]
    buckets = [derive_buckets(ndjson(s), local) for s in sizes]
    assert buckets == sorted(buckets)
    assert buckets[0] == MIN_BUCKETS and buckets[-1] == MAX_BUCKETS


def test_small_local_imports_keep_eight_buckets_and_larger_ones_about_150_thousand_events_a_bucket() -> None:
    # the bench's 1M events (393.5 MB): as before (--buckets defaulted to 8); its 5M: 34 (768 MiB, not 1,350)
    assert derive_buckets(ndjson(393_497_647), local=True) == 8
    assert derive_buckets(ndjson(2 * 393_497_647), local=True) == 14
    assert derive_buckets(ndjson(5 * 393_497_647), local=True) == 34


def test_dataflow_aims_at_about_fifty_thousand_events_a_bucket() -> None:
    hundred_million = ndjson(100_000_000 * NDJSON_BYTES_PER_EVENT)
    assert derive_buckets(hundred_million, local=False) == 2_000
    assert derive_buckets(hundred_million, local=True) == 667
    assert derive_buckets(ndjson(1_000_000 * NDJSON_BYTES_PER_EVENT), local=False) == 20


def test_compressed_files_count_as_their_uncompressed_size() -> None:
    plain = estimated_events(ndjson(GB))
    assert estimated_events(ndjson(GB, "gs://b/x.ndjson.gz")) == pytest.approx(plain * EXPANSION[".gz"], rel=1e-6)
    assert estimated_events(ndjson(GB, "gs://b/x.JSONL.ZST")) == pytest.approx(plain * EXPANSION[".zst"], rel=1e-6)
    assert estimated_events(ndjson(GB, "/data/x.json.bz2")) == pytest.approx(plain * EXPANSION[".bz2"], rel=1e-6)
    assert estimated_events(ndjson(GB, "x.ndjson.deflate")) > plain
    gz, plain_buckets = ndjson(20 * GB, "gs://b/x.ndjson.gz"), derive_buckets(ndjson(20 * GB), local=False)
    assert derive_buckets(gz, local=False) > plain_buckets


def test_parquet_counts_as_ndjson_of_the_same_events() -> None:
    plain = estimated_events(ndjson(GB))
    assert estimated_events(ndjson(GB, "gs://b/x.parquet")) == pytest.approx(plain * PARQUET_EXPANSION, rel=1e-6)
    assert estimated_events(ndjson(GB, "gs://b/x.pq.gz")) == pytest.approx(
        plain * PARQUET_EXPANSION * EXPANSION[".gz"], rel=1e-6)


def test_sizes_of_many_files_add_up() -> None:
    files = [(f"gs://b/2026-11-{d:02d}.ndjson.gz", GB // 10) for d in range(1, 31)]
    assert estimated_events(files) == pytest.approx(estimated_events([("gs://b/all.ndjson.gz", 3 * GB)]), rel=1e-6)


def test_every_compression_the_reader_knows_is_expanded() -> None:
    from transforms.sources.files import _COMPRESSION_BY_EXTENSION

    assert set(_COMPRESSION_BY_EXTENSION) <= set(EXPANSION)


def test_shuffle_objects_bound() -> None:
    # 1M events ≈ 476 MB of Arrow, in 2 bundles, flushed every 32 MiB: at most 16 files (was 20 batches × 8)
    assert shuffle_objects(bundles=2, arrow_bytes=476 * 10**6, flush_bytes=32 << 20) == 16
    assert shuffle_objects(bundles=3, arrow_bytes=(128 << 20) - 1, flush_bytes=128 << 20) == 3
