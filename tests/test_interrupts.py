"""Ctrl-C and SIGTERM during a real import into the local BigQuery emulator: one line that tells the
truth (what was running, whether the write committed), the claim released, staging tables and
temporary files removed, exit 130 / 143, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import as_from_a_terminal
from tests.factory import envelope, line, write_ndjson
from transforms.bigquery.jobs import job_id

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
EVENTS = 100_000  # long enough to read that a signal reliably falls while the rows are being read
WRITE_EVENTS = 20_000  # the write test waits for the write job itself: a shorter read, either side of the commit


@pytest.fixture(scope="module")
def big_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupts")
    return write_ndjson(folder / "big.ndjson", [line(envelope(i)) for i in range(EVENTS)])


@pytest.fixture(scope="module")
def write_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupts-write")
    return write_ndjson(folder / "export.ndjson", [line(envelope(i)) for i in range(WRITE_EVENTS)])


def _start(args: list[str]) -> subprocess.Popen:
    # a session of its own, signalled as a whole: a terminal's Ctrl-C reaches every process of the group
    return subprocess.Popen([str(ROOT / ".venv/bin/python"), "-m", "pipeline", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _when(condition: Callable[[], object], process: subprocess.Popen, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the import ended (exit {process.returncode}) before the moment to interrupt it:\n{err}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("the moment to interrupt never came")


def _query(emulator, sql: str) -> list[dict]:
    from transforms.bigquery.tables import query

    session = emulator.session()
    try:
        return query(session, sql)
    finally:
        session.close()


def _claimed_launch(emulator, dataset: str, run_id: str) -> str | None:
    try:
        rows = _query(emulator, f"SELECT launch FROM `local-project.{dataset}.events__runs` WHERE run_id = '{run_id}'")
    except Exception:  # the table is not created yet
        return None
    return rows[0]["launch"] if rows else None


def _job_exists(emulator, name: str) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        emulator.client().get_job(name)
        return True
    except NotFound:
        return False


def _leftovers(emulator, dataset: str, temp: Path) -> tuple[list[str], list[str]]:
    tables = [t.table_id for t in emulator.client().list_tables(f"local-project.{dataset}")]
    return [t for t in tables if "__staging_" in t], [str(p) for p in temp.rglob("*") if p.is_file()]


def _import_args(big_export: Path, emulator, dataset: str, run_id: str, temp: Path) -> list[str]:
    return ["--input", str(big_export), "--output_table", f"local-project.{dataset}.events", "--bigquery_endpoint",
            emulator.endpoint, "--run_id", run_id, "--temp_location", str(temp)]


# Ctrl-C on the local worker processes (the terminal signals them too: they ignore it), SIGTERM in the
# launcher's own process (the default for so small an input: pipeline.local_runner.one_process)
@pytest.mark.parametrize("signum, code, name, flags", [(signal.SIGINT, 130, "Ctrl-C", ["--direct_num_workers=2"]),
                                                       (signal.SIGTERM, 143, "SIGTERM", [])])
def test_interrupt_while_reading_leaves_the_target_unchanged(bigquery_emulator, big_export, tmp_path, signum, code,
                                                             name, flags):
    dataset, run_id, temp = f"interrupt_read_{code}", f"read-{code}", tmp_path / "temp"
    process = _start(_import_args(big_export, bigquery_emulator, dataset, run_id, temp) + flags)
    _when(lambda: list(temp.glob("*/shuffle/*")), process)  # the dedupe's shuffle files: rows being read
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)  # SIGTERM goes to the launcher only (as `kill PID` does)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert f"interrupted ({name}) during reading, validating and deduplicating the rows; the target is " \
           f"unchanged (local-project.{dataset}.events); temporary files removed" in err
    assert "Traceback" not in err and "Exception" not in err
    assert len([x for x in err.splitlines() if "interrupted" in x]) == 1
    assert _query(bigquery_emulator, f"SELECT COUNT(*) AS n FROM `local-project.{dataset}.events`") == [{"n": 0}]
    status = _query(bigquery_emulator, f"SELECT status FROM `local-project.{dataset}.events__runs` "
                                       f"WHERE run_id = '{run_id}'")
    assert status == [{"status": "failed"}], "the claim is released: the same run id can run again at once"
    assert _leftovers(bigquery_emulator, dataset, temp) == ([], [])


def test_interrupt_during_the_write_tells_whether_it_committed(bigquery_emulator, write_export, tmp_path):
    dataset, run_id, temp = "interrupt_write", "write-1", tmp_path / "temp"
    process = _start(_import_args(write_export, bigquery_emulator, dataset, run_id, temp))
    launch = _when(lambda: _claimed_launch(bigquery_emulator, dataset, run_id), process)
    write_job = job_id(run_id, launch, "write")
    _when(lambda: _job_exists(bigquery_emulator, write_job), process)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception" not in err
    stored = _query(bigquery_emulator, f"SELECT COUNT(*) AS n FROM `local-project.{dataset}.events`")[0]["n"]
    status = _query(bigquery_emulator, f"SELECT status FROM `local-project.{dataset}.events__runs` "
                                       f"WHERE run_id = '{run_id}'")[0]["status"]
    # the line tells the truth, whichever side of the commit the signal fell on
    if status == "merged":
        assert stored == WRITE_EVENTS
        assert ("interrupted (Ctrl-C) during the write transaction; the write had committed: "
                f"local-project.{dataset}.events holds this run's rows") in err
    else:
        assert (stored, status) == (0, "failed")
        assert ("interrupted (Ctrl-C) during the write transaction; the target is unchanged "
                f"(local-project.{dataset}.events)") in err
    assert _leftovers(bigquery_emulator, dataset, temp) == ([], [])


def test_interrupt_of_a_file_import_that_wrote_nothing_leaves_its_output_folder_empty(big_export, tmp_path):
    # Beam's temporary folders of the unfinished dead-letter and conflict files go too: a run told "nothing
    # was written" is not refused next time as a non-empty --output_dir
    out, temp = tmp_path / "out", tmp_path / "temp"
    process = _start(["--input", str(big_export), "--output_dir", str(out), "--temp_location", str(temp)])
    _when(lambda: list(temp.glob("*/shuffle/*")), process)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"nothing was written to {out}; temporary files removed" in err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.fixture
def silent_endpoint():
    """A port that accepts connections and never answers: a command waiting on it waits until stopped."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    reached = threading.Event()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            reached.set()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], reached
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("command, args, what", [
    ("pipeline.query", ["--bigquery_endpoint", "http://127.0.0.1:{port}", "SELECT 1"], "the query was not waited for"),
    ("pipeline.merge_landed", ["--output_table", "local-project.d.events", "--bigquery_endpoint",
                               "http://127.0.0.1:{port}"], "a MERGE already sent commits whole or not at all"),
    ("pipeline.publish", ["examples/*.ndjson.gz", "--topic", "projects/p/topics/t"],
     "the messages published before it stay on the topic"),
])
def test_ctrl_c_in_a_small_command_is_one_line_and_exit_130(command, args, what, silent_endpoint):
    port, reached = silent_endpoint
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}
    argv = [str(ROOT / ".venv/bin/python"), "-m", command, *(a.format(port=port) for a in args)]
    process = subprocess.Popen(as_from_a_terminal(argv), cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert reached.wait(60), "the command never called its endpoint"
        time.sleep(0.3)  # waiting on the answer
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and err.startswith(f"interrupted (Ctrl-C): {what}"), err
