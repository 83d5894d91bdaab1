"""The Beam wrappers of the stages, on TestPipeline with assert_that."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.factory import envelope, line, write_ndjson
from transforms.read import ReadLimits
from transforms.records import ImportContext
from transforms.sources import plan_reads
from transforms.stages import DedupeEvents, ReadValidateNormalize
from transforms.timestamps import TimestampPolicy

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
