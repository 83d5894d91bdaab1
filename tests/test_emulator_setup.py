"""The local BigQuery emulator around the commands: its set-up never disturbs a running emulator's
extension files, and a command whose emulator died says so, with the log's last lines."""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.factory import envelope, line, write_ndjson
from tests.services import make_emulator

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup_bigquery_emulator.sh"


def _install(src: Path, folder: Path) -> None:
    subprocess.run([str(SETUP), "install-extension", str(src), str(folder)], check=True, timeout=60)


def test_extension_files_in_use_are_never_rewritten(tmp_path):
    """Before: the set-up `cp -f`-ed over the files every running emulator had mapped (SIGBUS)."""
    folder, src = tmp_path / "extensions", tmp_path / "wheel"
    folder.mkdir()
    src.mkdir()
    (src / "spatial.duckdb_extension").write_bytes(b"version one " * 1000)
    _install(src / "spatial.duckdb_extension", folder)
    installed = folder / "spatial.duckdb_extension"
    first = installed.stat().st_ino
    with open(installed, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:  # a running emulator
        _install(src / "spatial.duckdb_extension", folder)  # another checkout, same version
        assert installed.stat().st_ino == first, "the same bytes: left alone"
        (src / "spatial.duckdb_extension").write_bytes(b"version two " * 1000)
        _install(src / "spatial.duckdb_extension", folder)  # different bytes
        assert mapped[:12] == b"version one ", "the mapped file is untouched"
        assert installed.read_bytes()[:12] == b"version two " and installed.stat().st_ino != first
    assert sorted(p.name for p in folder.iterdir()) == ["spatial.duckdb_extension"], "no temporary file left"


def test_a_command_whose_emulator_died_says_so(tmp_path):
    """Before: a 60 s wait, then "Connection refused", and nothing about the emulator."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "BQ_EMULATOR_DATA_DIR")}
    env.update(BQ_EMULATOR_PORT=str(port), BQ_EMULATOR_GRPC_PORT=str(free_port()),
               BQ_EMULATOR_DATA_DIR=str(tmp_path / "data"))
    if (Path.home() / ".config/gcloud/application_default_credentials.json").exists():
        pytest.skip("Google credentials on this machine: run.sh would use real BigQuery")
    path = write_ndjson(tmp_path / "in.ndjson", [line(envelope(i)) for i in range(60_000)])
    temp = tmp_path / "temp"
    pid_file = ROOT / ".emulators" / f"bigquery-{port}.pid"
    process = subprocess.Popen([str(ROOT / "run.sh"), "import", "--input", str(path), "--output_table",
                                "local-project.died.events", "--temp_location", str(temp),
                                "--bigquery_retry_seconds", "3"],
                               cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not list(temp.glob("*/shuffle/*")):  # the emulator is up and the rows are being read
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
        subprocess.run([str(ROOT / "scripts" / "bigquery_emulator.sh"), "stop"], env=env, capture_output=True)
    assert process.returncode != 0
    assert f"error: the local BigQuery emulator (http://127.0.0.1:{port}) died while the command ran; last lines " \
           f"of {ROOT}/.emulators/bigquery-{port}.log:" in err
    assert "  | === " in err or "  | " in err, "the log's last lines follow"


def test_the_health_check_restarts_a_dead_emulator_on_its_data(own_emulator):
    """What the `bigquery_emulator` fixture does before each test: an emulator that died mid-suite is started
    again on the same port and data folder, and a call to a dead one gives up after its short deadline."""
    from google.api_core.exceptions import GoogleAPIError

    from tests.conftest import ShortRetries
    from transforms.bigquery.client import make_client

    own_emulator.client().create_dataset("local-project.kept_across_restarts")
    assert own_emulator.problem() is None
    own_emulator.ensure_running()
    assert own_emulator.restarts == [], "a healthy emulator is left alone"
    os.kill(own_emulator.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while own_emulator.problem() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "gone" in own_emulator.problem() or "does not answer" in own_emulator.problem()

    dead = ShortRetries(make_client(own_emulator.project, own_emulator.endpoint), seconds=2)
    started = time.monotonic()
    with pytest.raises((GoogleAPIError, OSError)):
        list(dead.list_datasets())
    assert time.monotonic() - started < 15, "the short deadline, not the client's 600 s of retries"

    own_emulator.ensure_running()
    assert own_emulator.problem() is None and len(own_emulator.restarts) == 1
    names = [d.dataset_id for d in own_emulator.client().list_datasets()]
    assert "kept_across_restarts" in names, "the same data folder"


def test_the_tests_emulators_run_duckdb_on_the_threads_they_are_given(bigquery_emulator):
    """``BQ_EMULATOR_THREADS`` (tests/services.py sets 1) reaches the emulator's DuckDB: it answers the
    setting back through the BigQuery API (DuckDB's own default is one thread per core)."""
    rows = list(bigquery_emulator.client().query_and_wait("SELECT current_setting('threads') AS threads"))
    assert bigquery_emulator.env["BQ_EMULATOR_THREADS"] == "1"
    assert [r["threads"] for r in rows] == [1]


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_thread_count_that_is_not_a_whole_number_is_refused_before_starting(value, tmp_path):
    port = free_port()
    env = {**os.environ, "BQ_EMULATOR_THREADS": value, "BQ_EMULATOR_PORT": str(port),
           "BQ_EMULATOR_GRPC_PORT": str(free_port()), "BQ_EMULATOR_DATA_DIR": str(tmp_path / "data"),
           "EMULATOR_RUN_DIR": str(tmp_path / "run")}
    result = subprocess.run([str(ROOT / "scripts" / "bigquery_emulator.sh"), "start"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert f"BQ_EMULATOR_THREADS must be a whole number ≥ 1, not '{value}'" in result.stderr


def test_the_tests_emulator_lists_tables_as_the_emulator_itself_does(tmp_path, capsys):
    """The tests' emulator (scripts/lib/local-bigquery-tuned.py) lists a dataset's tables from DuckLake's
    catalog instead of the emulator's ``duckdb_tables()``. With ``BQ_EMULATOR_CHECK_LISTING=1`` it also asks
    the emulator's own code at every call and stops at the first difference: an import (table creates, loads,
    the MERGE and its DML), a DELETE, an UPDATE, a view, a wildcard query, a rename and drops all go through
    it, and the emulator is still up at the end with no difference in its log."""
    from pipeline.launcher import main

    emulator = make_emulator(tmp_path / "data")
    emulator.env["BQ_EMULATOR_CHECK_LISTING"] = "1"
    emulator.start()
    try:
        dataset = f"{emulator.project}.listing"
        export = write_ndjson(tmp_path / "export.ndjson", [line(envelope(i)) for i in range(20)] + [b"{broken"])
        code = main(["--input", str(export), "--output_table", f"{dataset}.events", "--bigquery_endpoint",
                     emulator.endpoint, "--direct_num_workers=1", "--bigquery_retry_seconds", "3"])
        assert code == 0, capsys.readouterr().err
        client = emulator.client()
        for sql in [f"DELETE FROM `{dataset}.events` WHERE eventId < '{envelope(5)['eventId']}'",
                    f"UPDATE `{dataset}.events` SET name = 'renamed' WHERE eventId < '{envelope(8)['eventId']}'",
                    f"CREATE VIEW `{dataset}.recent` AS SELECT eventId FROM `{dataset}.events`",
                    f"SELECT count(*) AS n FROM `{dataset}.events_dead*`",
                    f"CREATE TABLE `{dataset}.copy` AS SELECT * FROM `{dataset}.recent`",
                    f"ALTER TABLE `{dataset}.copy` RENAME TO copied"]:
            client.query_and_wait(sql)
        listed = {t.table_id: t.table_type for t in client.list_tables(dataset)}
        assert listed["recent"] == "VIEW" and listed["copied"] == "TABLE" and "copy" not in listed
        assert {"events", "events_dead_letters"} <= set(listed)
        assert client.get_table(f"{dataset}.copied").num_rows == 15
        assert client.get_table(f"{dataset}.events_dead_letters").num_rows == 1
        client.delete_table(f"{dataset}.recent")
        client.delete_table(f"{dataset}.copied")
        assert {"recent", "copied"}.isdisjoint(t.table_id for t in client.list_tables(dataset))
        client.delete_dataset(dataset, delete_contents=True)
        assert emulator.problem() is None, "the check stops the emulator at the first difference"
    finally:
        emulator.stop()
    log = (emulator.run_dir / f"bigquery-{emulator.env['BQ_EMULATOR_PORT']}.log").read_text()
    assert "differs from the emulator's own" not in log


def test_an_emulator_that_exited_is_not_alive_while_it_waits_to_be_reaped():
    """``stop`` waits until the emulator is gone. Once the start script has ended, the server's parent is
    PID 1, which some inits reap only every second or two, and ``kill -0`` still succeeds on the zombie
    it is until then: every stop took 2 s. ``alive`` (scripts/lib/emulator.sh) reads the process state."""
    exited = subprocess.Popen(["true"])  # never waited for: a zombie of this process once it has exited
    running = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{exited.pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)

        def alive(pid: int) -> int:
            script = f'source "{ROOT}/scripts/lib/emulator.sh" test; alive {pid}'
            return subprocess.run(["bash", "-c", script], env={**os.environ, "EMULATOR_RUN_DIR": "/tmp"}).returncode

        assert alive(exited.pid) == 1, "an exited process (a zombie) is not alive"
        assert alive(running.pid) == 0
    finally:
        running.kill()
        running.wait()
        exited.wait()
