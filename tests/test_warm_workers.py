"""The local runner's warm worker processes (pipeline.warm_workers): forked by the server when it
runs, Beam's own worker when not, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from pipeline import warm_workers
from pipeline.launcher import run
from tests.conftest import ROOT
from tests.factory import envelope, line, write_ndjson

pytestmark = pytest.mark.e2e
FALLBACK = warm_workers.FALLBACK


def export(tmp_path: Path) -> Path:
    envs = [envelope(i) for i in range(30)]
    lines = [line(e) for e in envs] + [line(envs[0]), b"{broken"]
    path = tmp_path / "export.ndjson"
    write_ndjson(path, lines)
    return path


def check_counts(report: dict) -> None:
    total = report["total"]
    assert (total["read"], total["loaded"], total["duplicate_exact"], total["dead_lettered"]) == (32, 30, 1, 1)


@pytest.mark.parametrize("argv, expected", [
    (["--input", "x.ndjson", "--dry_run"], True),
    (["--input=x.ndjson", "--output_dir", "out"], True),
    (["--input", "x.ndjson", "--runner=DataflowRunner"], False),
    (["--input", "x.ndjson", "--runner", "FnApiRunner"], False),
    (["--input", "x.ndjson", "--direct_num_workers=1"], False),
    (["--input", "x.ndjson", "--direct_running_mode", "in_memory"], False),
    (["--input_subscription", "projects/p-roject/subscriptions/s-ub"], False),
    (["--help"], False),
])
def test_warm_workers_only_for_the_default_local_run(argv: list[str], expected: bool) -> None:
    assert warm_workers.wanted(argv) is expected


def test_no_warm_workers_where_processes_cannot_fork(monkeypatch) -> None:
    monkeypatch.delattr(os, "fork")
    assert warm_workers.wanted(["--input", "x.ndjson", "--dry_run"]) is False


def test_an_import_runs_on_workers_forked_by_the_server(tmp_path: Path, capfd) -> None:
    folder = warm_workers.start()
    try:
        code, report = run(["--input", str(export(tmp_path)), "--output_dir", str(tmp_path / "out"),
                            "--temp_location", str(tmp_path / "tmp")])
        assert code == 0
        check_counts(report)
        # the server notes each worker it forks: the runner's two
        served = (Path(folder) / warm_workers.SERVED).read_text().split()
        assert len(served) == 2 and all(pid.isdigit() for pid in served)
        assert FALLBACK not in capfd.readouterr().err
    finally:
        warm_workers.stop()
    assert not os.path.exists(folder) and warm_workers.DIR_VARIABLE not in os.environ
    assert not [pid for pid in served if os.path.exists(f"/proc/{pid}")]


def test_without_a_server_the_workers_are_beams_own(tmp_path: Path, capfd, monkeypatch) -> None:
    empty = tmp_path / "no-server"
    empty.mkdir()
    monkeypatch.setenv(warm_workers.DIR_VARIABLE, str(empty))
    code, report = run(["--input", str(export(tmp_path)), "--dry_run", "--report_path", str(tmp_path / "r.json")])
    assert code == 0
    check_counts(report)
    assert capfd.readouterr().err.count(FALLBACK) == 2  # both workers said so, and ran


def test_the_cli_imports_with_warm_workers_and_leaves_nothing_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--input", str(export(tmp_path)), "--dry_run",
         "--report_path", str(tmp_path / "report.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    check_counts(orjson.loads((tmp_path / "report.json").read_bytes()))
    assert FALLBACK not in done.stderr
    assert not list(scratch.glob("rlvt-warm-*"))
    assert not _processes_mentioning(str(scratch))


def test_the_server_exits_with_the_launcher(tmp_path: Path) -> None:
    # a launcher that stops before running anything (a usage error, say): its server follows it
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    subprocess.run([sys.executable, "-c", "from pipeline import warm_workers; warm_workers.start()"],
                   cwd=ROOT, check=True, timeout=60, env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(scratch)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_mentioning(str(scratch))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(pid))
    return found


def test_without_a_usable_temporary_folder_there_is_no_server(tmp_path: Path, monkeypatch) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr("tempfile.tempdir", str(deep))  # a socket path there would be too long
    assert warm_workers.start() is None
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    assert warm_workers.start() is None
    assert warm_workers.worker_command() is None and not list(deep.iterdir())
