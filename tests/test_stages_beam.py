"""The Beam wrappers of the stages, on TestPipeline with assert_that."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.graph import ReadValidateNormalize, shuffle_folder, with_derived_buckets
from pipeline.options import check_options
from tests.factory import envelope, line, write_ndjson
from transforms.core.records import ImportContext, RecordBatch
from transforms.core.settings import ReadLimits, TimestampPolicy
from transforms.core.sizing import derive_buckets
from transforms.sources.files import plan_reads
from transforms.stages import dedupe
from transforms.stages.normalize import normalize_batch
from transforms.stages.shuffle import DedupeEvents, GatherBucketsFn

CTX = ImportContext("run-test", 1_764_000_000_000_000)
OPTIONS = PipelineOptions(["--runner=FnApiRunner"])


@pytest.fixture
def export(tmp_path):
    good = [line(envelope(i)) for i in range(30)]
    lines = good + [good[3], good[7], line(envelope(7, url="https://other.example/x")),
                    b"{broken", line([envelope(100), 5]), line(envelope(200, key="nothex"))]
    path = write_ndjson(tmp_path / "a.ndjson", lines)
    return plan_reads([(str(path), path.stat().st_size)], "auto", split_bytes=300)


def _rows(tables):
    return [(r["eventId"], r["url"], r["source_line"]) for t in tables for r in t.to_pylist()]


def test_read_validate_normalize_routes_every_record(export):
    assert len(export) > 3, "the fixture must be split into several byte ranges"
    with TestPipeline(options=OPTIONS) as p:
        rows, dead, counts = (p | beam.Create(export)
                              | ReadValidateNormalize(CTX, ReadLimits(batch_size=7), TimestampPolicy()))
        row_count = rows | "CountRows" >> beam.Map(lambda t: t.num_rows) | beam.CombineGlobally(sum)
        assert_that(row_count, equal_to([30 + 3 + 1]), label="rows")
        codes = dead | beam.FlatMap(  # one list of dead letters per stage and batch
            lambda batch: [(d["source_line"], d["source_index"], sorted(r["code"] for r in d["reasons"]))
                           for d in batch])
        assert_that(codes, equal_to([
            (34, None, ["parse:invalid_json"]),
            (35, 1, ["parse:not_an_object"]),
            (36, None, ["key:pattern"]),
        ]), label="dead")
        summed = counts | beam.CombinePerKey(sum) | beam.Map(lambda kv: (kv[0][1], kv[1]))
        assert_that(summed, equal_to([("read", 37), ("dead_lettered", 3), ("dead_letter:parse:invalid_json", 1),
                                      ("dead_letter:parse:not_an_object", 1), ("dead_letter:key:pattern", 1)]),
                    label="counts")


def test_the_reads_dead_letters_leave_with_the_process_stages_in_one_output(tmp_path):
    """Lines over --max_line_bytes are the read's dead letters, a broken line the parse's: all come out of
    ProcessBatchFn's one dead-letter output (no Flatten joins two: test_resources), each stage's of a
    batch as ONE element."""
    long = [line(envelope(i, url="https://example.com/" + "x" * 400)) for i in (2, 3)]
    lines = [line(envelope(1)), *long, b"{broken"]
    path = write_ndjson(tmp_path / "a.ndjson", lines)
    tasks = plan_reads([(str(path), path.stat().st_size)], "auto", split_bytes=1 << 20)
    with TestPipeline(options=OPTIONS) as p:
        rows, dead, counts = (p | beam.Create(tasks)
                              | ReadValidateNormalize(CTX, ReadLimits(batch_size=7, max_line_bytes=300),
                                                      TimestampPolicy()))
        codes = dead | beam.FlatMap(lambda batch: [(d["source_line"], d["stage"], [r["code"] for r in d["reasons"]])
                                                   for d in batch])
        assert_that(codes, equal_to([(2, "read", ["read:line_too_long"]), (3, "read", ["read:line_too_long"]),
                                     (4, "parse", ["parse:invalid_json"])]), label="dead")
        elements = dead | "Elements" >> beam.Map(lambda batch: (batch[0]["stage"], len(batch)))
        assert_that(elements, equal_to([("read", 2), ("parse", 1)]), label="elements")
        summed = counts | beam.CombinePerKey(sum) | beam.Map(lambda kv: (kv[0][1], kv[1]))
        assert_that(summed, equal_to([("read", 4), ("dead_lettered", 3), ("dead_letter:read:line_too_long", 2),
                                      ("dead_letter:parse:invalid_json", 1)]), label="counts")


def test_line_numbers_survive_byte_range_splits(export):
    with TestPipeline(options=OPTIONS) as p:
        rows, _, _ = (p | beam.Create(export)
                      | ReadValidateNormalize(CTX, ReadLimits(batch_size=4), TimestampPolicy()))
        lines = rows | beam.FlatMap(lambda t: list(zip(t.column("eventId").to_pylist(),
                                                       t.column("source_line").to_pylist())))
        expected = [(envelope(i)["eventId"], i + 1) for i in range(30)]
        expected += [(envelope(3)["eventId"], 31), (envelope(7)["eventId"], 32), (envelope(7)["eventId"], 33),
                     (envelope(100)["eventId"], 35)]
        assert_that(lines, equal_to(expected))


def test_dedupe_keeps_one_row_per_event_and_reports_conflicts(export):
    with TestPipeline(options=OPTIONS) as p:
        rows, _, _ = (p | beam.Create(export)
                      | ReadValidateNormalize(CTX, ReadLimits(batch_size=5), TimestampPolicy()))
        unique, conflicts, counts = rows | DedupeEvents(buckets=3)
        ids = unique | beam.FlatMap(lambda kv: kv[1].column("eventId").to_pylist())
        assert_that(ids, equal_to([envelope(i)["eventId"] for i in [*range(30), 100]]), label="ids")
        kept = conflicts | beam.Map(lambda c: (c["row"]["source_line"], c["kept"], c["differs_from_kept"]))
        assert_that(kept, equal_to([(8, True, []), (32, False, []), (33, False, ["url"])]), label="conflicts")
        summed = counts | beam.CombinePerKey(sum) | beam.Map(lambda kv: (kv[0][1], kv[1]))
        assert_that(summed, equal_to([("loaded", 31), ("duplicate_exact", 2), ("duplicate_conflicting", 1)]),
                    label="counts")


# --- the dedupe shuffle: through files (local runners) or the runner's own (Dataflow) -----------

BATCHES, BUCKETS = 40, 64


@pytest.fixture(scope="module")
def batches() -> list[pa.Table]:
    """40 normalized tables of 30 rows over 800 event ids: retries across batches, and a changed url
    now and then (conflicts)."""
    tables = []
    for b in range(BATCHES):
        batch = RecordBatch(f"gs://b/export-{b % 3}.ndjson")
        for k in range(30):
            i = (b * 30 + k) * 7 % 800
            env = envelope(i, url=f"https://shop.example/p/{b}") if (b + k) % 11 == 0 else envelope(i)
            batch.append(env, b"{}", b * 30 + k + 1, None)
        table, dead, _ = normalize_batch(batch, CTX, TimestampPolicy())
        assert not dead
        tables.append(table)
    return tables


def _reference(tables: list[pa.Table]):
    """The whole import resolved as one bucket, with no shuffle at all."""
    result = dedupe.resolve_bucket(tables)
    rows = [(r["eventId"], r["source_uri"], r["source_line"]) for r in result.rows.to_pylist()]
    conflicts = [(c["eventId"], c["row"]["source_line"], c["kept"]) for c in result.conflicts]
    return rows, conflicts, list(result.counts.items())


def _shuffle_files(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _run_dedupe(tables, buckets, shuffle_dir, flush_bytes=None):
    rows, conflicts, counts = _reference(tables)
    assert conflicts and any(m == "duplicate_exact" for (_, m), _ in counts), "the fixture must have both"
    with TestPipeline(options=OPTIONS) as p:
        unique, conflicting, summed = (p | beam.Create(tables)
                                       | DedupeEvents(buckets, shuffle_dir, flush_bytes=flush_bytes))
        got = unique | beam.FlatMap(lambda kv: [(r["eventId"], r["source_uri"], r["source_line"])
                                                for r in kv[1].to_pylist()])
        assert_that(got, equal_to(rows), label="rows")
        kept = conflicting | beam.Map(lambda c: (c["eventId"], c["row"]["source_line"], c["kept"]))
        assert_that(kept, equal_to(conflicts), label="conflicts")
        assert_that(summed | beam.CombinePerKey(sum), equal_to(counts), label="counts")


@pytest.mark.parametrize("through_files", [True, False], ids=["shuffle folder", "runner's shuffle"])
def test_dedupe_shuffle_gives_the_rows_of_one_global_dedupe(batches, tmp_path, through_files) -> None:
    folder = tmp_path / "shuffle"
    _run_dedupe(batches, BUCKETS, str(folder) if through_files else None)
    assert not folder.exists(), "the shuffle files are removed once the buckets are resolved"


def _gathered_files(tables, buckets, folder, flush_bytes=None) -> list:
    """The files the shuffle writes (``DedupeEvents`` removes them once it has resolved the buckets)."""
    with TestPipeline(options=OPTIONS) as p:
        _ = p | beam.Create(tables) | beam.ParDo(GatherBucketsFn(buckets, str(folder), flush_bytes))
    return _shuffle_files(folder)


def test_shuffle_files_do_not_grow_with_buckets(batches, tmp_path) -> None:
    # one file per flush: this runner runs the stage in one bundle here, and 40 small tables never
    # reach the byte limit, so one file, whatever the bucket count (it was batches × buckets: ≈1,100)
    for buckets in (8, BUCKETS):
        files = _gathered_files(batches, buckets, tmp_path / f"shuffle-{buckets}")
        assert 1 <= len(files) <= 3, f"{len(files)} files for {buckets} buckets"
        for f in files:
            reader = pa.ipc.open_file(pa.memory_map(str(f)))
            assert reader.num_record_batches <= buckets
            for i in range(reader.num_record_batches):  # a record batch per bucket, with only its rows
                ids = reader.get_batch(i).column("eventId")
                assert len(set(dedupe.bucket_of(ids, buckets).tolist())) == 1


def test_flushes_at_the_byte_limit(batches, tmp_path) -> None:
    limit = 3 * max(t.nbytes for t in batches)  # a flush every 4 tables or so: 10 files
    files = _gathered_files(batches, BUCKETS, tmp_path / "files", flush_bytes=limit)
    assert BATCHES // 5 <= len(files) <= BATCHES // 2
    _run_dedupe(batches, BUCKETS, str(tmp_path / "shuffle"), flush_bytes=limit)


def test_runner_shuffle_moves_flushes_times_buckets_elements(batches) -> None:
    with TestPipeline(options=OPTIONS) as p:
        keyed = p | beam.Create(batches) | beam.ParDo(GatherBucketsFn(BUCKETS))
        # one flush (one bundle): at most one table per bucket, not one per batch and bucket (≈1,100)
        per_bucket = keyed | beam.combiners.Count.PerKey() | beam.Map(lambda kv: kv[1])
        assert_that(per_bucket | "Most" >> beam.CombineGlobally(max), equal_to([1]), label="one per bucket")
        rows = keyed | beam.Map(lambda kv: kv[1].num_rows) | "Rows" >> beam.CombineGlobally(sum)
        assert_that(rows, equal_to([sum(t.num_rows for t in batches)]), label="every row")


def test_shuffle_folder_is_local_for_local_runners_and_absent_for_dataflow(tmp_path) -> None:
    assert shuffle_folder(str(tmp_path / "work"), local_runner=False) is None
    assert shuffle_folder("gs://b/tmp/run", local_runner=False) is None
    assert shuffle_folder(str(tmp_path / "work"), local_runner=True) == str(tmp_path / "work" / "shuffle")
    local = shuffle_folder("gs://b/tmp/run", local_runner=True)  # the local runner's workers are here
    try:
        assert "://" not in local and Path(local).is_dir()
    finally:
        Path(local).rmdir()


def test_buckets_derived_only_when_not_given() -> None:
    opts = check_options(PipelineOptions(["--input=x.ndjson.gz", "--dry_run=true"]), 1_764_000_000_000_000)
    assert opts.buckets is None
    big = [("gs://b/x.ndjson.gz", 20 << 30)]
    assert with_derived_buckets(opts, big, local_runner=False).buckets == derive_buckets(big, local=False) > 8
    given = check_options(PipelineOptions(["--input=x.ndjson.gz", "--dry_run=true", "--buckets=3"]),
                          1_764_000_000_000_000)
    assert with_derived_buckets(given, big, local_runner=False).buckets == 3


@pytest.mark.parametrize("statistics", [True, False])
def test_the_file_sinks_parquet_has_column_statistics_and_the_staged_goes_without(tmp_path, statistics):
    """The file sink's readers filter row groups by their statistics; BigQuery's load reads every row, so the
    files staged for it skip computing them (18 % of the write's CPU)."""
    import pyarrow.parquet as pq

    from transforms.files.write import WriteParquetFn

    fn = WriteParquetFn(str(tmp_path), buckets=2, statistics=statistics)
    fn.start_bundle()
    [path] = fn.process((1, pa.table({"eventId": ["a", "b"], "n": [1, 2]})))
    assert path.endswith("rows/part-00001-of-00002.parquet")
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    assert column.is_stats_set is statistics
    assert pq.read_table(path).to_pydict() == {"eventId": ["a", "b"], "n": [1, 2]}


def test_a_batch_of_dead_letters_goes_to_the_ndjson_writer_as_one_element_of_its_lines():
    """WriteToText writes each element and a newline: a batch's lines joined are written as each line
    would be, for one element instead of one per dead letter (Beam's per-element cost, 35,000 times)."""
    from transforms.core.serialize import dead_letter_json
    from transforms.files.write import _json_lines

    batch = [{"rejected_at": 1_764_000_000_000_000, "reasons": [{"code": "parse:invalid_json"}], "raw_payload": "{x\n"},
             {"rejected_at": 1_764_000_000_000_001, "reasons": [], "raw_payload": "y"}]
    [text] = _json_lines(batch)
    assert text.split("\n") == [dead_letter_json(d) for d in batch]
    assert list(_json_lines([])) == []  # no blank line for an empty batch
