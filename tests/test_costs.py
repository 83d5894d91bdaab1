"""The cost figures of docs/dataflow.md: BigQuery's size rules, and the page equal to what the code prints."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from pipeline import costs

NOW = 1_795_000_000_000_000  # 2026-11-18, in microseconds


def test_bigquery_logical_sizes_follow_the_documented_rules():
    table = pa.table({
        "s": pa.array(["abc", None, "é"]),  # 2+3, 0, 2+2 (UTF-8)
        "n": pa.array([1, None, 3], pa.int64()),  # 8, 0, 8
        "t": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC")),
        "d": pa.array([Decimal("1.5"), None, None], pa.decimal128(38, 9)),  # 16
        "b": pa.array([True, False, None]),  # 1, 1, 0
        "l": pa.array([["ab", "c"], [], None], pa.list_(pa.string())),  # 4 + 3
        "r": pa.array([{"k": "x", "v": None}, None, {"k": "yy", "v": "z"}],
                      pa.struct([("k", pa.string()), ("v", pa.string())])),  # 3, 0, 4 + 3
    })
    sizes = costs.bigquery_bytes(table)
    assert {k: v * 3 for k, v in sizes.items()} == {"s": 9, "n": 16, "t": 24, "d": 16, "b": 2, "l": 7, "r": 10}


def test_only_the_ids_lookup_grows_with_the_table():
    sizes = costs.RowSizes(event=400, event_id=27, run_id=32, source_uri=40)
    small, big = (costs.write_statement_bytes(sizes, 1_000_000, stored) for stored in (10**7, 10**10))
    grown = {k for k in small if big[k] > small[k]}
    assert grown == {"ids already stored (join with `__ids`)"}
    assert big["stored versions of moved ids (their days only)"] == 0, "no moved id, no events partition read"
    assert big["ids already stored (join with `__ids`)"] == 1_000_000 * 27 + 10**10 * 35
    # an id stored under an outlier day costs that one day of the table, not the days between
    one, two = (costs.write_statement_bytes(sizes, 1_000_000, 10**10, moved_days=d) for d in (1, 2))
    per_day = 10**10 / costs.DAYS_OF_HISTORY * 400
    assert one["stored versions of moved ids (their days only)"] == per_day
    assert two["stored versions of moved ids (their days only)"] == 2 * per_day


def test_the_page_shows_what_the_code_computes():
    doc = Path(costs.DOC).read_text()
    assert costs.embedded(doc, costs.render()) == doc, "stale: run `.venv/bin/python -m pipeline.costs --write`"


def test_the_pubsub_page_shows_the_stream_merge_costs_the_code_computes():
    page = Path(costs.PUBSUB_DOC).read_text()
    assert costs.embedded(page, costs.render_stream(), costs.STREAM_BEGIN, costs.STREAM_END) == page, \
        "stale: run `.venv/bin/python -m pipeline.costs --write`"


def test_fewer_larger_merges_cost_less_and_the_defaults_follow():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import check_options

    sizes = costs.RowSizes(event=400, event_id=27, run_id=32, source_uri=40)
    often, seldom = (sum(costs.stream_merge_bytes(sizes, 100_000_000, i).values()) for i in (60, 900))
    assert seldom < often / 10
    base = ["--input_subscription", "projects/test-project/subscriptions/events", "--output_table", "p-123456.d.t"]
    local = check_options(PipelineOptions(base), NOW).stream.merge_interval
    dataflow = check_options(PipelineOptions([*base, "--runner", "DataflowRunner"]), NOW).stream.merge_interval
    given = check_options(PipelineOptions([*base, "--merge_interval_seconds", "30"]), NOW).stream.merge_interval
    assert (local, dataflow, given) == (60.0, 900.0, 30.0)
