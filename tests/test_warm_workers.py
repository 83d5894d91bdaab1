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


def test_warm_workers_only_for_an_input_too_large_for_one_process(tmp_path: Path) -> None:
    from pipeline.local_runner import ONE_PROCESS_EVENTS
    from transforms.core.sizing import NDJSON_BYTES_PER_EVENT

    small, large = tmp_path / "small.ndjson", tmp_path / "large.ndjson.gz"
    with open(small, "wb") as f:
        f.truncate((ONE_PROCESS_EVENTS - 1000) * NDJSON_BYTES_PER_EVENT)
    with open(large, "wb") as f:  # compressed: counted at its expanded size
        f.truncate(ONE_PROCESS_EVENTS * NDJSON_BYTES_PER_EVENT // 6)
    assert warm_workers.wanted(["--input", str(small), "--dry_run"]) is False
    assert warm_workers.wanted(["--input", str(large), "--dry_run"]) is True
    # the patterns' files together, each counted once
    assert warm_workers.wanted(["--input", str(small), f"--input={tmp_path}/*.ndjson", "--dry_run"]) is False
    assert warm_workers.wanted(["--input", str(small), "--input", str(large), "--dry_run"]) is True
    # named: the flag decides; a remote or unmatched pattern counts as large
    assert warm_workers.wanted(["--input", str(small), "--direct_num_workers", "2", "--dry_run"]) is True
    assert warm_workers.wanted(["--input", str(large), "--direct_num_workers=1", "--dry_run"]) is False
    assert warm_workers.wanted(["--input", str(small), "--input", "gs://b-ucket/x.ndjson", "--dry_run"]) is True
    assert warm_workers.wanted(["--input", str(small), "--input", str(tmp_path / "none-*"), "--dry_run"]) is True


@pytest.mark.parametrize("events, argv, expected", [
    (ONE_PROCESS := 99_999, [], (1, "in_memory")),
    (100_000, [], (2, "multi_processing")),
    (ONE_PROCESS, ["--direct_num_workers=2"], (2, "multi_processing")),
    (10**6, ["--direct_num_workers", "1"], (1, "in_memory")),
    (ONE_PROCESS, ["--direct_running_mode=multi_processing"], (2, "multi_processing")),
    (None, [], (2, "multi_processing")),  # a subscription: no files to size
])
def test_the_local_runner_runs_a_small_input_in_its_own_process(events, argv, expected) -> None:
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.local_runner import ONE_PROCESS_EVENTS, local_runner_defaults
    from transforms.core.sizing import NDJSON_BYTES_PER_EVENT

    assert ONE_PROCESS_EVENTS == 100_000  # the cases above are its edges
    options = PipelineOptions(argv)
    files = None if events is None else [("/x/a.ndjson", events * NDJSON_BYTES_PER_EVENT)]
    local_runner_defaults(options, argv, files)
    direct = options.view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == expected


def test_a_server_started_for_an_input_found_small_ends_at_once(tmp_path: Path) -> None:
    # foreseen large (a remote file, say), found small once listed: the import runs in the launcher
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.local_runner import local_runner_defaults

    folder = warm_workers.start()
    server = warm_workers._servers[0]
    options = PipelineOptions([])
    started = time.monotonic()
    local_runner_defaults(options, [], [("gs://b-ucket/x.ndjson", 4096)])
    assert time.monotonic() - started < 5  # not the 10 s a server still importing could take to see its lifeline
    assert options.view_as(DirectOptions).direct_num_workers == 1
    assert server.poll() is not None and not os.path.exists(folder) and warm_workers.worker_command() is None


def test_no_warm_workers_where_processes_cannot_fork(monkeypatch) -> None:
    monkeypatch.delattr(os, "fork")
    assert warm_workers.wanted(["--input", "x.ndjson", "--dry_run"]) is False


def test_an_import_runs_on_workers_forked_by_the_server(tmp_path: Path, capfd) -> None:
    folder = warm_workers.start()
    try:
        code, report = run(["--input", str(export(tmp_path)), "--output_dir", str(tmp_path / "out"),
                            "--temp_location", str(tmp_path / "tmp"), "--direct_num_workers=2"])
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
    code, report = run(["--input", str(export(tmp_path)), "--dry_run", "--report_path", str(tmp_path / "r.json"),
                        "--direct_num_workers=2"])
    assert code == 0
    check_counts(report)
    assert capfd.readouterr().err.count(FALLBACK) == 2  # both workers said so, and ran


@pytest.mark.parametrize("flags, said", [
    (["--direct_num_workers=2"], "on 2 worker processes"),
    ([], "in this process"),  # the default for so small an input: no server, no worker process
])
def test_the_cli_imports_with_warm_workers_and_leaves_nothing_behind(tmp_path: Path, flags, said) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--input", str(export(tmp_path)), "--dry_run",
         "--report_path", str(tmp_path / "report.json"), *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    check_counts(orjson.loads((tmp_path / "report.json").read_bytes()))
    assert f"1 read task(s), {said} (--direct_num_workers to choose)" in done.stderr
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
