"""Progress a person can follow: the read against its total, then each phase as it starts and ends
(``pipeline.progress``, fed by the workers' ``transforms.core.progress`` lines)."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from pipeline.progress import LOG_EVERY_SECONDS, Progress, shown
from tests.factory import envelope, line, write_ndjson
from transforms.core.progress import task_key
from transforms.sources.files import ReadTask

ROOT = Path(__file__).resolve().parents[1]
TASKS = [ReadTask("gs://b/a.ndjson", "ndjson", "none", 1000), ReadTask("gs://b/b.ndjson.gz", "ndjson", "gzip", 3000)]
A, B = task_key("gs://b/a.ndjson", 0), task_key("gs://b/b.ndjson.gz", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_shows_a_bar_of_bytes_read_against_the_total_then_each_phase():
    out = io.StringIO()
    progress = Progress(TASKS, stream=out, tty=True)
    progress.told(f"read {A} 500 10")
    progress.told(f"read {A} 1000 20")
    progress.told(f"read {B} 3000 30")
    progress.told("phase dedupe started")
    progress.told("phase merge started")
    progress.told("phase merge ended")
    progress.close()
    text = out.getvalue()
    assert re.search(r"reading:\s+100%.*3\.91k/3\.91k.*50 lines/rows", text), text
    assert "read 3.9 KiB: 50 lines/rows" in text
    lines = [x for x in text.replace("\r", "\n").split("\n") if x and not x.startswith("reading:")]
    assert lines == ["read 3.9 KiB: 50 lines/rows in 0.0 s",
                     "deduplicating on eventId…", "deduplicating on eventId: done in 0.0 s",
                     "MERGE into the target (one transaction)…",
                     "MERGE into the target (one transaction): done in 0.0 s"], lines


def test_a_task_told_twice_or_past_its_end_counts_once_and_a_foreign_task_not_at_all():
    clock = Clock()
    progress = Progress(TASKS, stream=io.StringIO(), tty=False, clock=clock)
    progress.told(f"read {A} 800 5")
    progress.told(f"read {A} 600 7")  # an older tick arriving late does not go back
    progress.told(f"read {A} 5000 9")  # past the task's end: the task's size
    progress.told("read 0123456789ab 999 1")  # not a task of this run
    assert progress.done == {A: 1000}
    assert progress.records == {A: 9}
    assert progress.read_line().startswith("reading: 25 % (1000 B of 3.9 KiB), 9 lines/rows")


def test_off_a_terminal_one_log_line_per_interval_and_no_bar(caplog):
    clock = Clock()
    out = io.StringIO()
    progress = Progress(TASKS, stream=out, tty=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="importer"):
        progress.told(f"read {A} 100 1")
        clock.now += LOG_EVERY_SECONDS / 2
        progress.told(f"read {A} 200 2")
        clock.now += LOG_EVERY_SECONDS
        progress.told(f"read {A} 300 3")
        clock.now += 1
        progress.told(f"read {A} 400 4")
    reading = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reading:")]
    assert reading == ["reading: 8 % (300 B of 3.9 KiB), 3 lines/rows, 20 B/s"]
    assert out.getvalue() == ""


def test_a_phase_ends_when_the_next_starts_and_an_interrupted_one_is_not_said_done():
    out = io.StringIO()
    progress = Progress(TASKS, stream=out, tty=True, phase_names={"write_rows": "staging the rows"})
    progress.told("phase dedupe started")
    progress.told("phase write_rows started")
    progress.told("phase write_rows started")  # another bundle: shown once
    progress.told("phase load started")
    progress.close(finished=False)
    lines = [x for x in out.getvalue().replace("\r", "\n").split("\n") if x and not x.startswith("reading:")]
    assert lines == [
        "read 3.9 KiB in 0.0 s",
        "deduplicating on eventId…", "deduplicating on eventId: done in 0.0 s",
        "staging the rows…", "staging the rows: done in 0.0 s",
        "loading the staged files into BigQuery…"], lines


def test_progress_lines_are_taken_out_of_the_log_and_others_pass():
    progress = Progress(TASKS, stream=io.StringIO(), tty=False)
    worker = logging.LogRecord("apache_beam.runners.portability.local_job_service", logging.INFO, "", 0,
                               "worker: %s", (f"progress read {A} 1000 3",), None)
    own = logging.LogRecord("importer.progress", logging.INFO, "", 0, "progress read %s %d %d", (B, 10, 1), None)
    other = logging.LogRecord("importer", logging.INFO, "", 0, "worker: %s", ("wrote to x: 3 new row(s)",), None)
    assert progress.filter(worker) is False and progress.filter(own) is False
    assert progress.filter(other) is True
    assert progress.done == {A: 1000, B: 10}


def test_shown_removes_its_filter_when_the_run_ends():
    progress = Progress(TASKS, stream=io.StringIO(), tty=False)
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    with shown(progress):
        assert progress in relay.filters
    assert progress not in relay.filters


def _run_on_a_terminal(argv: list[str], env: dict, timeout: float = 240) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal of 120 columns as its stdout and stderr; returns (exit code, output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.emulator
def test_an_import_on_a_terminal_shows_the_read_then_dedupe_staging_load_and_merge(tmp_path, bigquery_emulator):
    path = write_ndjson(tmp_path / "events.ndjson",
                        [line(envelope(i)) for i in range(3000)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code, out = _run_on_a_terminal(
        [sys.executable, "-m", "pipeline", "--input", str(path), "--output_table", "local-project.rlvt.progress",
         "--bigquery_endpoint", bigquery_emulator.endpoint], env)
    assert code == 0, out
    screen = out.replace("\r\n", "\n")
    assert re.search(r"reading: 100%\|.*\| [\d.]+k/[\d.]+k .*3,000 lines/rows\]", screen), screen
    order = ["read ", "deduplicating on eventId…", "staging the rows for BigQuery…",
             "loading the staged files into BigQuery…", "loading the staged files into BigQuery: done in",
             "MERGE into the target (one transaction)…", "MERGE into the target (one transaction): done in",
             "loaded:                3,000"]
    positions = [screen.find(x) for x in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions))
    assert "progress read" not in screen and "progress phase" not in screen
