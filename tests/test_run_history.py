"""The run history (pipeline.run_history) on the local BigQuery emulator: one row per run, written once
however often the write is executed, for file imports, re-runs and a Pub/Sub import; the file sink's
record beside its outputs; the completeness flags in the report, the row and the summary."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from pipeline import report as run_report
from pipeline import run_history
from pipeline.launcher import run
from pipeline.publish import publish_lines
from tests.factory import DATASOURCE, KEY, envelope, line, write_ndjson
from transforms.bigquery import jobs as bq_jobs
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

FAST = ["--direct_num_workers=1"]
FIRST = date(2026, 9, 7)  # a Monday
HOLE = FIRST + timedelta(days=16)  # a Wednesday with no file
DAYS = 35


def export_lines() -> tuple[list[bytes], int]:
    """Five weeks of events (30 a weekday, 8 a weekend day) without HOLE, and two broken lines."""
    lines, i = [], 0
    for d in range(DAYS):
        day = FIRST + timedelta(days=d)
        if day == HOLE:
            continue
        start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)
        for k in range(8 if day.weekday() >= 5 else 30):
            lines.append(line(envelope(i, timestamp=start + 3_600_000 + k * 60_000)))
            i += 1
    return lines + [b"{not json", line(envelope(10**6, key="bad"))], i


@pytest.fixture
def dataset(request) -> str:
    return "rh_" + re.sub(r"\W", "_", request.node.name)[:50]


def runs_rows(emulator, table: str) -> list[dict]:
    return query(emulator.session(), f"SELECT * FROM {TableRef.parse(table).sql} ORDER BY started_at, launch")


@pytest.mark.emulator
def test_each_run_appends_one_row_with_its_accounting_and_gaps(bigquery_emulator, dataset, tmp_path, capsys):
    table = f"local-project.{dataset}.events"
    lines, n_events = export_lines()
    path = write_ndjson(tmp_path / "export.ndjson", lines)
    args = ["--input", str(path), "--output_table", table, "--bigquery_endpoint", bigquery_emulator.endpoint,
            "--datasource_id", DATASOURCE, "--report_path", str(tmp_path / "report.json")] + FAST
    code, report = run(args)
    assert code == 0, report["problems"]
    assert report["runs_table"] == f"{table}_runs"
    [row] = runs_rows(bigquery_emulator, f"{table}_runs")
    assert (row["run_id"], row["kind"], row["status"], row["exit_code"]) == (report["run_id"], "files", "succeeded", 0)
    assert row["code_version"].startswith("rlvt-bigquery-importer/0.1.0")
    assert row["launched_by"]["host"] and "--output_table" in row["launched_by"]["command"]
    assert row["inputs"] == [{"uri": str(path), "bytes": os.path.getsize(path)}]
    assert {"name": "output_table", "value": table} in row["options"]
    assert {"name": "datasource_id", "value": DATASOURCE} in row["options"]
    totals = row["totals"]
    assert (totals["read"], totals["loaded"], totals["dead_lettered"]) == (n_events + 2, n_events, 2)
    assert totals["balanced"] is True
    assert {r["code"]: r["records"] for r in totals["dead_letter_reasons"]} == {"parse:invalid_json": 1,
                                                                               "key:pattern": 1}
    [file_row] = row["files"]
    assert file_row["uri"] == str(path) and file_row["read"] == n_events + 2 and file_row["file_errors"] == []
    assert row["first_event_time"].date() == FIRST and row["last_event_time"].date() == FIRST + timedelta(DAYS - 1)
    assert row["days_touched"] == [FIRST + timedelta(days=d) for d in range(DAYS) if FIRST + timedelta(d) != HOLE]
    assert len(row["event_days"]) == DAYS
    hole_day = next(d for d in row["event_days"] if d["day"] == HOLE)
    assert (hole_day["imported"], hole_day["gap"]) == (0, True)
    assert [(g["day"], g["key"], g["reason"]) for g in row["gaps"]] == [(HOLE, None, "no events")]
    assert "same weekday" in row["gap_rule"]
    assert row["started_at"] <= row["ended_at"]
    assert row["report_path"] == str(tmp_path / "report.json") and row["report_html"] == str(tmp_path / "report.html")

    # the JSON report and the summary carry the same flags
    saved = orjson.loads((tmp_path / "report.json").read_bytes())
    assert [g["day"] for g in saved["completeness"]["gaps"]] == [HOLE.isoformat()]
    assert saved["event_days"][FIRST.isoformat()] == {KEY: 30}
    summary = run_report.summary(report)
    assert f"{HOLE.isoformat()} Wed" in summary and "PROBABLE GAP" in summary and f"{table}_runs" in summary
    page = (tmp_path / "report.html").read_text()  # each reason with an example from the dead-letter table
    assert "<pre>{not json</pre>" in page and "<pre>{&#34;key&#34;:&#34;bad&#34;," in page

    # a re-run (a new run id) adds nothing to the events, and one row of its own to the history
    code, again = run(args)
    assert code == 0
    rows = runs_rows(bigquery_emulator, f"{table}_runs")
    assert [r["run_id"] for r in rows] == [report["run_id"], again["run_id"]]
    second = rows[1]
    assert (second["totals"]["loaded"], second["totals"]["already_present"]) == (0, n_events)
    assert second["days_touched"] == []  # it wrote no partition
    assert [d["held_before"] for d in second["event_days"]][:2] == [30, 30]
    assert [g["day"] for g in second["gaps"]] == [HOLE]  # the history still lacks the day


@pytest.mark.emulator
def test_a_retried_history_write_adds_the_row_once(bigquery_emulator, dataset, tmp_path, monkeypatch):
    table = f"local-project.{dataset}.events"
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(5)])
    code, report = run(["--input", str(path), "--output_table", table, "--bigquery_endpoint",
                        bigquery_emulator.endpoint, "--runs_table", f"local-project.{dataset}.history"] + FAST)
    assert code == 0
    runs = TableRef.parse(f"local-project.{dataset}.history")
    [row] = runs_rows(bigquery_emulator, str(runs))
    target = run_history.BigQueryTarget.for_events(table, endpoint=bigquery_emulator.endpoint)
    record = orjson.loads(orjson.dumps({**row, "run_id": "retried-run", "launch": "0badcafe"},
                                       default=lambda v: v.isoformat()))

    # the write step executed twice (a retry, a zombie): the second attaches to the first one's jobs
    run_history.write_row(target, runs, record)
    run_history.write_row(target, runs, record)
    # and once more as if those jobs were gone (new job ids): the INSERT's NOT EXISTS keeps one row
    job_id = bq_jobs.job_id
    monkeypatch.setattr(bq_jobs, "job_id", lambda *a, **kw: job_id(*a, **kw) + "_again")
    assert run_history.write_row(target, runs, record) is False
    rows = runs_rows(bigquery_emulator, str(runs))
    assert sorted(r["run_id"] for r in rows) == sorted([report["run_id"], "retried-run"])
    # another launch of the same run id is a run of its own
    run_history.write_row(target, runs, {**record, "launch": "1badcafe"})
    assert len(runs_rows(bigquery_emulator, str(runs))) == 3
    assert not any(t.table_id.startswith("history__stage") for t in bigquery_emulator.client().list_tables(dataset))


@pytest.mark.emulator
def test_the_day_counts_put_each_row_on_its_utc_day_on_either_side_of_1970(bigquery_emulator, dataset):
    """The completeness check's read of the events table: rows per UTC day and key, and how many this run
    wrote, within the span ± CONTEXT_DAYS; the day is computed in SQL, so its edges are checked here."""
    table = TableRef.parse(f"local-project.{dataset}.events")
    session = bigquery_emulator.session()
    session.client.create_dataset(dataset, exists_ok=True)
    query(session, f"CREATE TABLE {table.sql} (timestamp TIMESTAMP, key STRING, import_run_id STRING)")
    rows = [("1969-12-31 00:00:00", "k1", "run-1"), ("1969-12-31 23:59:59.999999", "k1", "other"),
            ("1970-01-01 00:00:00", "k1", "run-1"), ("1970-01-01 23:59:59", "k2", "run-1"),
            ("1970-01-02 00:00:00", "k2", "other"),
            ("1969-11-01 00:00:00", "k1", "run-1"),  # before the span's 28 days
            ("1970-03-01 00:00:00", "k1", "run-1")]  # after them
    values = ", ".join(f"(TIMESTAMP '{t}+00', '{k}', '{r}')" for t, k, r in rows)
    query(session, f"INSERT INTO {table.sql} (timestamp, key, import_run_id) VALUES {values}")
    target = run_history.BigQueryTarget.for_events(str(table), endpoint=bigquery_emulator.endpoint)

    counts = run_history.table_day_counts(target, "run-1", date(1969, 12, 31), date(1970, 1, 1))

    assert counts == {(date(1969, 12, 31), "k1"): (2, 1), (date(1970, 1, 1), "k1"): (1, 1),
                      (date(1970, 1, 1), "k2"): (1, 1), (date(1970, 1, 2), "k2"): (1, 0)}
    with pytest.raises(ValueError, match="not a run id"):
        run_history.table_day_counts(target, "run-1' OR TRUE OR '", date(1970, 1, 1), date(1970, 1, 1))


@pytest.mark.emulator
def test_a_pubsub_run_has_its_row_from_the_rows_it_wrote(pubsub_emulator, bigquery_emulator, dataset):
    topic, subscription = pubsub_emulator.topic_and_subscription("history")
    table = f"local-project.{dataset}.stream"
    day0 = int(datetime(2026, 11, 2, 8, tzinfo=UTC).timestamp() * 1000)
    messages = [orjson.dumps(envelope(i, timestamp=day0 + (i % 3) * 86_400_000 + i)) for i in range(30)]
    publish_lines(topic, messages + [b"{broken"])
    code, report = run(["--input_subscription", subscription, "--output_table", table, "--bigquery_endpoint",
                        bigquery_emulator.endpoint, "--stop_after_idle_seconds", "3", "--merge_interval_seconds", "2"])
    assert code == 0, report["problems"]
    [row] = runs_rows(bigquery_emulator, f"{table}_runs")
    assert (row["run_id"], row["kind"], row["status"]) == (report["run_id"], "subscription", "succeeded")
    assert row["inputs"] == [{"uri": subscription, "bytes": None}]
    assert (row["totals"]["read"], row["totals"]["loaded"], row["totals"]["dead_lettered"]) == (31, 30, 1)
    assert row["days_touched"] == [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]
    assert [(d["day"], d["imported"]) for d in row["event_days"]] == [
        (date(2026, 11, 2), 10), (date(2026, 11, 3), 10), (date(2026, 11, 4), 10)]
    assert row["first_event_time"] == datetime.fromtimestamp(day0 / 1000, UTC)


def test_the_file_sink_writes_the_same_record_beside_its_outputs(tmp_path):
    lines, n_events = export_lines()
    path = write_ndjson(tmp_path / "export.ndjson.gz", lines)
    out = tmp_path / "out"
    code, report = run(["--input", str(path), "--output_dir", str(out)] + FAST)
    assert code == 0
    record = orjson.loads((out / run_history.RECORD_FILE).read_bytes())
    assert list(record) == [f["name"] for f in run_history.RUN_HISTORY_SCHEMA]
    assert record["run_id"] == report["run_id"] and record["totals"]["loaded"] == n_events
    assert [g["day"] for g in record["gaps"]] == [HOLE.isoformat()]
    assert record["report_html"] == str(out / "import_report.html") and (out / "import_report.html").exists()
    assert report["run_record"] == str(out / run_history.RECORD_FILE)


@pytest.mark.parametrize(("flags", "message"), [
    (["--output_dir", "OUT", "--runs_table", "p-roject.d.t"], "need --output_table"),
    (["--output_table", "local-project.d.events", "--runs_table", "local-project.d.events__runs"], "claim table"),
    (["--output_table", "local-project.d.events", "--runs_table", "local-project.d.events"], "table of its own"),
])
def test_runs_table_flag_is_checked_before_any_work(tmp_path, flags, message):
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1))])
    flags = [str(tmp_path / "out") if f == "OUT" else f for f in flags]
    with pytest.raises(ValueError, match=message):
        run(["--input", str(path), *flags])
