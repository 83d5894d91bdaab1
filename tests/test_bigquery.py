"""The BigQuery sink against the real local emulator: tables, exact values, idempotent re-runs, faults."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from pipeline.launcher import run
from schemas.bigquery import CLUSTER_COLUMNS, EVENTS_SCHEMA
from tests.conftest import ROOT, free_port
from tests.factory import BASE_MS, DATASOURCE, envelope, line, write_ndjson
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

pytestmark = pytest.mark.emulator
FAST = ["--direct_num_workers=1"]


@pytest.fixture
def dataset(request) -> str:
    return "t_" + re.sub(r"\W", "_", request.node.name)[:60]


def import_args(emulator, table: str, *inputs) -> list[str]:
    args = []
    for path in inputs:
        args += ["--input", str(path)]
    return args + ["--output_table", table, "--bigquery_endpoint", emulator.endpoint,
                   "--datasource_id", DATASOURCE] + FAST


def table_rows(emulator, table: str) -> list[dict]:
    ref = TableRef.parse(table)
    return query(emulator.session(), f"SELECT * EXCEPT (imported_at, import_run_id) FROM {ref.sql} ORDER BY eventId")


def test_table_is_created_from_the_schema_source(bigquery_emulator, dataset, tmp_path):
    table = f"local-project.{dataset}.events"
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1))])
    code, _ = run(import_args(bigquery_emulator, table, path))
    assert code == 0
    got = bigquery_emulator.client().get_table(table)
    assert [f.to_api_repr() for f in got.schema] == [
        {**f, "fields": f.get("fields", [])} if f["type"] == "RECORD" else f for f in EVENTS_SCHEMA
    ] or [(f.name, f.field_type, f.mode, f.description) for f in got.schema] == [
        (f["name"], f["type"], f["mode"], f["description"]) for f in EVENTS_SCHEMA]
    assert got.time_partitioning.field == "timestamp" and got.time_partitioning.type_ == "DAY"
    assert got.clustering_fields == list(CLUSTER_COLUMNS)
    assert all(f.description for f in got.schema)


def test_values_land_exactly(bigquery_emulator, dataset, tmp_path):
    table = f"local-project.{dataset}.events"
    purchase = envelope(1, name="purchase", timestamp=BASE_MS + 999,
                        data={"ids": "SKU-1;SKU-2|SKU-3", "value": 46.599998474121094, "transId": "T-9",
                              "locale": "fr", "qty": 2, "promo": True})
    seconds = envelope(2, timestamp=1_763_000_123)  # seconds, as third-party senders send
    category = envelope(3, name="category_view", data={"ids": "Shoes, Men"})
    path = write_ndjson(tmp_path / "a.ndjson", [line(purchase), line(seconds), line(category)])
    code, report = run(import_args(bigquery_emulator, table, path))
    assert code == 0 and report["total"]["loaded"] == 3
    ref = TableRef.parse(table)
    rows = query(bigquery_emulator.session(),
                 f"SELECT eventId, UNIX_MILLIS(timestamp) AS ms, value, ids, transId, labels, url, datasourceId "
                 f"FROM {ref.sql} ORDER BY eventId")
    assert [r["ms"] for r in rows] == [BASE_MS + 999, 1_763_000_123_000, envelope(3)["timestamp"]]
    first = rows[0]
    assert first["value"] == Decimal("46.60")
    assert first["ids"] == ["SKU-1", "SKU-2", "SKU-3"] and first["transId"] == "T-9"
    assert first["labels"] == [{"key": "locale", "value": "fr"}, {"key": "promo", "value": "true"},
                               {"key": "qty", "value": "2"}]
    assert first["url"] == "https://shop.example.com/p/1" and first["datasourceId"] == DATASOURCE
    assert rows[2]["ids"] == ["Shoes, Men"]
    unnested = query(bigquery_emulator.session(),
                     f"SELECT item FROM {ref.sql}, UNNEST(ids) AS item WHERE name = @name ORDER BY item",
                     {"name": "purchase"})
    assert [r["item"] for r in unnested] == ["SKU-1", "SKU-2", "SKU-3"]


def test_reimport_is_a_no_op_and_a_then_a_plus_b_loads_the_union(bigquery_emulator, dataset, tmp_path):
    table = f"local-project.{dataset}.events"
    a = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(50)])
    b = write_ndjson(tmp_path / "b.ndjson", [line(envelope(i)) for i in range(40, 90)])
    code, first = run(import_args(bigquery_emulator, table, a))
    assert code == 0 and first["total"]["loaded"] == 50
    before = table_rows(bigquery_emulator, table)
    code, again = run(import_args(bigquery_emulator, table, a))
    assert code == 0
    assert again["total"]["loaded"] == 0 and again["total"]["already_present"] == 50
    assert again["files"][str(a)]["balanced"]
    assert table_rows(bigquery_emulator, table) == before
    code, union = run(import_args(bigquery_emulator, table, a, b))
    assert code == 0
    # events 40-49 are in both files: a's copies win the dedupe (earlier input) and are already present
    assert union["files"][str(a)]["already_present"] == 50
    assert union["files"][str(b)]["loaded"] == 40 and union["files"][str(b)]["duplicate_exact"] == 10
    assert union["ok"]
    rows = table_rows(bigquery_emulator, table)
    assert [r["eventId"] for r in rows] == sorted(envelope(i)["eventId"] for i in range(90))


def test_dead_letters_and_conflicts_land_replayable(bigquery_emulator, dataset, tmp_path):
    table = f"local-project.{dataset}.events"
    bad = b'{"key":"nothex","tmpId":"t","eventId":"e","name":"x","url":"u","v":1}'
    path = write_ndjson(tmp_path / "a.ndjson",
                        [line(envelope(1)), bad, line(envelope(1, url="https://other.example/"))])
    code, report = run(import_args(bigquery_emulator, table, path))
    assert code == 0
    dead = query(bigquery_emulator.session(), f"SELECT * FROM `local-project.{dataset}.events_dead_letters`")
    assert len(dead) == 1
    d = dead[0]
    assert d["raw_payload"].encode() == bad
    assert (d["source_uri"], d["source_line"], d["run_id"], d["stage"]) == (str(path), 2, report["run_id"], "validate")
    assert [r["code"] for r in d["reasons"]] == ["key:pattern"] and d["reasons"][0]["value"] == "nothex"
    conflicts = query(bigquery_emulator.session(),
                      f"SELECT kept, differs_from_kept FROM `local-project.{dataset}.events_conflicts` ORDER BY kept")
    assert [(c["kept"], c["differs_from_kept"]) for c in conflicts] == [(False, ["url"]), (True, [])]


def test_incompatible_table_stops_the_run_before_anything_is_written(bigquery_emulator, dataset, tmp_path):
    from google.cloud import bigquery

    client = bigquery_emulator.client()
    client.create_dataset(f"local-project.{dataset}", exists_ok=True)
    table = f"local-project.{dataset}.events"
    client.create_table(bigquery.Table(table, schema=[bigquery.SchemaField("eventId", "INT64"),
                                                      bigquery.SchemaField("timestamp", "TIMESTAMP")]))
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1))])
    result = subprocess.run([sys.executable, "-m", "pipeline", *import_args(bigquery_emulator, table, path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 3
    assert "column eventId is INTEGER NULLABLE, expected STRING REQUIRED" in result.stderr
    assert query(bigquery_emulator.session(), f"SELECT COUNT(*) AS n FROM `{table}`")[0]["n"] == 0


def test_unreachable_bigquery_fails_fast_and_clearly(tmp_path, capsys):
    """In this process (the launcher's ``main``): the time measured is the import's, not a new Python's start."""
    from pipeline.launcher import main

    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1))])
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["--input", str(path), "--output_table", "local-project.d.events", "--bigquery_endpoint", endpoint,
                 "--bigquery_retry_seconds", "3"])
    result = subprocess.CompletedProcess([], code, *capsys.readouterr())
    assert result.returncode == 3
    assert f"cannot prepare the tables in local emulator at {endpoint}" in result.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("text, ok", [
    ("my-project.dataset.table", True),
    ("my-project:dataset_1.table-2", True),
    ("example.com:my-project.ds.t", True),
    ("my-project.dataset", False),
    ("my-project.data-set.table", False),
    ("my-project.dataset.t`; DROP TABLE x; --", False),
    ("MyProject.dataset.table", False),
    ("my-project.dataset.table.extra", False),
])
def test_table_names_are_validated_before_any_sql(text, ok):
    if ok:
        assert TableRef.parse(text).sql.count("`") == 2
    else:
        with pytest.raises(ValueError, match="is not a BigQuery table name"):
            TableRef.parse(text)
