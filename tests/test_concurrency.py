"""Repeated and concurrent imports into one table: exact rows, nothing missing, nothing doubled.

The emulator serializes writes per table (local_bigquery's ``engine.database.writing`` lock), so the
concurrent case here shows the importer's side is right when the MERGEs really meet at the same
moment (a proxy holds both until both are there); it cannot show a race inside the emulator.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from pipeline.launcher import run
from tests.conftest import ROOT
from tests.factory import DATASOURCE, envelope, line, write_ndjson
from tests.fault_proxy import Fault, FaultProxy, is_merge
from transforms.bigquery.tables import ensure_dataset, query
from transforms.bigquery.target import prepare_target
from transforms.core.settings import BigQueryTarget, TableRef

pytestmark = pytest.mark.emulator


def import_args(endpoint: str, table: str, *paths: Path) -> list[str]:
    args = [arg for path in paths for arg in ("--input", str(path))]
    return args + ["--output_table", table, "--bigquery_endpoint", endpoint, "--datasource_id", DATASOURCE,
                   "--direct_num_workers=1", "--bigquery_retry_seconds", "20"]


def ids_in(emulator, table: str) -> list[str]:
    return [r["eventId"] for r in query(emulator.session(), f"SELECT eventId FROM {TableRef.parse(table).sql}")]


def test_the_same_import_three_times_lands_once(bigquery_emulator, tmp_path):
    table = "local-project.repeated.events"
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(60)]
                        + [line(envelope(7)), b"{broken", line(envelope(8, url="https://other.example/"))])
    reports = []
    for _ in range(3):
        code, report = run(import_args(bigquery_emulator.endpoint, table, path))
        assert code == 0 and report["ok"], report["problems"]
        reports.append(report["files"][str(path)])
    first, *again = reports
    assert (first["loaded"], first["already_present"]) == (60, 0)
    for later in again:
        assert (later["loaded"], later["already_present"]) == (0, 60), "runs 2 and 3: all already present"
        assert (later["duplicate_exact"], later["duplicate_conflicting"], later["dead_lettered"]) == (1, 1, 1)
        assert later["balanced"]
    ids = ids_in(bigquery_emulator, table)
    assert sorted(ids) == sorted(envelope(i)["eventId"] for i in range(60))
    # dead letters and conflicts are per-run logs: each run appends its own, under its own run id
    per_run = query(bigquery_emulator.session(),
                    f"SELECT run_id, COUNT(*) AS n FROM `{table}_dead_letters` GROUP BY run_id")
    assert sorted(r["n"] for r in per_run) == [1, 1, 1]


def _report(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def _three_exports(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tuple(write_ndjson(tmp_path / f"{name}.ndjson", [line(envelope(i)) for i in range(k * 100, k * 100 + 100)])
                 for k, name in enumerate("abc"))


def _start(endpoint: str, table: str, inputs, report: Path) -> subprocess.Popen:
    args = import_args(endpoint, table, *inputs) + ["--report_path", str(report)]
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _overlapping_runs(emulator, table: str, tmp_path: Path, gate: Fault) -> list[tuple[int, str, Path, tuple]]:
    """A+B and B+C started at once through a proxy holding ``gate``'s requests until both arrived;
    returns (exit code, stderr, report path, inputs) per run."""
    a, b, c = _three_exports(tmp_path)
    runs = [((a, b), tmp_path / "report-ab.json"), ((b, c), tmp_path / "report-bc.json")]
    with FaultProxy(emulator.endpoint, [gate], max_hold_seconds=120) as proxy:
        procs = [_start(proxy.endpoint, table, inputs, report) for inputs, report in runs]
        try:
            deadline = time.monotonic() + 150
            while gate.arrived < 2 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
                time.sleep(0.1)
            early = [p.communicate()[1][-3000:] for p in procs if p.poll() is not None]
            assert gate.arrived == 2, f"both runs should have been waiting together; {early}"
            gate.release()
            results = [p.communicate(timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
    return [(p.returncode, err, report, inputs) for p, (_, err), (inputs, report) in zip(procs, results, runs)]


def _assert_every_event_once(emulator, table: str) -> None:
    ids = ids_in(emulator, table)
    assert len(ids) == len(set(ids)), "no eventId twice"
    assert sorted(ids) == sorted(envelope(i)["eventId"] for i in range(300)), "nothing missing"


def test_two_overlapping_imports_at_once_end_with_every_event_once(bigquery_emulator, tmp_path):
    table = "local-project.concurrent.events"
    ref = TableRef.parse(table)
    prepare_target(BigQueryTarget(ref, ref.sibling("events_dead_letters"), ref.sibling("events_conflicts"),
                                  bigquery_emulator.endpoint))
    runs = _overlapping_runs(bigquery_emulator, table, tmp_path, Fault(is_merge, "gate", times=2))
    for code, err, _, _ in runs:
        assert code == 0, err
    _assert_every_event_once(bigquery_emulator, table)
    reports = [_report(report) for _, _, report, _ in runs]
    for report in reports:
        assert report["ok"] and report["total"]["balanced"]
    # B's 100 events were loaded by exactly one of the two runs, found already present by the other
    assert sum(r["total"]["loaded"] for r in reports) == 300
    assert sum(r["total"]["already_present"] for r in reports) == 100
    b = runs[0][3][1]
    for report in reports:
        assert report["files"][str(b)]["loaded"] + report["files"][str(b)]["already_present"] == 100


def is_events_table_creation(r) -> bool:
    return r.method == "POST" and r.path.split("?")[0].endswith("/tables") and \
        re.search(r'"tableId":\s*"events"', r.text) is not None


def test_two_imports_creating_the_table_at_once_fail_cleanly_or_succeed(bigquery_emulator, tmp_path):
    """Both runs find no table and create it at the same moment. Real BigQuery answers the loser 409 (which
    the importer accepts); the emulator may answer 400 'Failed to commit DuckLake transaction', and that run
    then stops before writing anything (exit 3). Either way a re-run of a failed run completes exactly."""
    table = "local-project.creation_race.events"
    # the race under test is the table's: with the dataset missing too, the emulator may already fail
    # one run at the dataset's creation (the same 400), before it reaches the gate
    ensure_dataset(bigquery_emulator.session(), TableRef.parse(table))
    runs = _overlapping_runs(bigquery_emulator, table, tmp_path, Fault(is_events_table_creation, "gate", times=2))
    for code, err, _, inputs in runs:
        assert code in (0, 3), err
        if code == 3:
            assert "error: cannot prepare the tables in local emulator" in err and "Traceback" not in err
            rerun, report = run(import_args(bigquery_emulator.endpoint, table, *inputs))
            assert rerun == 0 and report["ok"]
    _assert_every_event_once(bigquery_emulator, table)
