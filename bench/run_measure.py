"""Measuring one contender of the benchmark: wall time, and CPU and memory over its whole process tree
(read from /proc every 0.2 s), and when given log lines appeared. Part of ``bench/run_bench.py``."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split(None, 2)[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system seconds of one process so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0


@dataclass
class Run:
    name: str
    wall: float = 0.0
    cpu: float = 0.0
    peak_max: int = 0  # bytes, largest single process
    peak_sum: int = 0  # bytes, largest sum over the process tree
    code: int = 0
    stdout: Path | None = None
    stderr: Path | None = None
    started_at: float = 0.0  # time.time() at launch
    marks: dict[str, float] = field(default_factory=dict)  # seconds after launch
    extra_rss: int = 0  # peak RSS of a watched process outside the tree (the emulator)
    cpu_seen: dict[int, float] = field(default_factory=dict)  # CPU seconds of each process of the tree, sampled
    killed: str = ""  # why the benchmark stopped the run, if it did
    info: dict = field(default_factory=dict)


def measure(name: str, cmd: list[str], cwd: Path, stdout: Path, stderr: Path, memory_limit: int,
            watch_pid: int | None = None, watch_log: Path | None = None,
            log_marks: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` in ``cwd``, its output to ``stdout`` and ``stderr``, sampling its process tree every
    0.2 s (stopped past ``memory_limit`` bytes); ``watch_log`` lines matching ``log_marks`` patterns are
    timestamped as they appear (the emulator's log has no timestamps of its own)."""
    run = Run(name, stdout=stdout, stderr=stderr)
    log_pos = watch_log.stat().st_size if watch_log and watch_log.exists() else 0
    done = threading.Event()
    with run.stdout.open("wb") as out, run.stderr.open("wb") as err:
        run.started_at = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)

        def sample() -> None:
            nonlocal log_pos
            while not done.is_set():
                tree = process_tree(proc.pid)
                sizes = [rss(pid) for pid in tree]
                for pid in tree:  # processes the command does not wait for are missing from its rusage
                    run.cpu_seen[pid] = max(run.cpu_seen.get(pid, 0.0), cpu_seconds(pid))
                run.peak_sum = max(run.peak_sum, sum(sizes))
                if sum(sizes) > memory_limit and not run.killed:
                    # the machine is shared: stop this run (its own processes, by PID) before the kernel's
                    # OOM killer picks a victim, possibly someone else's
                    run.killed = f"stopped at {sum(sizes) / (1 << 30):.1f} GiB (--max-rss-gib)"
                    for pid in reversed(tree):
                        try:
                            os.kill(pid, 9)
                        except ProcessLookupError:
                            pass
                run.peak_max = max(run.peak_max, max(sizes, default=0))
                if watch_pid:
                    run.extra_rss = max(run.extra_rss, rss(watch_pid))
                if watch_log and log_marks:
                    with watch_log.open("rb") as f:
                        f.seek(log_pos)
                        chunk = f.read()
                    cut = chunk.rfind(b"\n") + 1
                    log_pos += cut
                    now = time.perf_counter() - t0
                    for line in chunk[:cut].decode(errors="replace").splitlines():
                        for mark, pattern in log_marks.items():
                            if mark not in run.marks and re.search(pattern, line):
                                run.marks[mark] = now
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        run.wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    proc.returncode = run.code = os.waitstatus_to_exitcode(status)
    # the kernel's figure covers the command and the descendants it reaped; the samples also cover
    # those it did not wait for (to 0.2 s): the larger of the two
    run.cpu = max(usage.ru_utime + usage.ru_stime, sum(run.cpu_seen.values()))
    run.peak_max = max(run.peak_max, usage.ru_maxrss * 1024)  # kernel's figure, descendants reaped included
    run.peak_sum = max(run.peak_sum, run.peak_max)
    return run


def log_marks(path: Path, started_at: float, patterns: dict[str, str]) -> dict[str, float]:
    """Seconds after launch of the first log line matching each pattern (Python logging's asctime)."""
    marks: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        stamp = LOG_TIME.match(line)
        if not stamp:
            continue
        for mark, pattern in patterns.items():
            if mark not in marks and re.search(pattern, line):
                when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                marks[mark] = when - started_at
    return marks
