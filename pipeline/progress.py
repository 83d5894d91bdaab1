"""What a person watching an import sees while it works: the read against its total, then each phase.

The workers tell their progress as log lines (``transforms.core.progress``); the launcher takes them out of
the log here and shows them: on a terminal, a bar (tqdm) with bytes read of the input's total, percent,
rate and the lines/rows read (lines of NDJSON and CSV, rows of Parquet, elements of a JSON array: an
NDJSON line holding an array is one line here and several records in the report), then one line per
phase as it starts and ends (dedupe, staging or writing the rows, load, MERGE); elsewhere (a file, CI, a
scheduler), a plain log line every ``LOG_EVERY_SECONDS`` while reading, and the same phase lines.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager

from transforms.core.progress import PREFIX, task_key

log = logging.getLogger("importer")

LOG_EVERY_SECONDS = 10.0
PHASES = {
    "dedupe": "deduplicating on eventId",
    "write_rows": "writing the rows",
    "load": "loading the staged files into BigQuery",
    "merge": "MERGE into the target (one transaction)",
}
WORKER_LOGGERS = ("apache_beam.runners.portability.local_job_service", "importer.progress")
"""Where progress lines arrive: relayed from worker processes, or logged in this process (a one-process run)."""


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress(logging.Filter):
    """Takes the progress lines out of the log (``filter`` returns False for them) and shows them."""

    def __init__(self, tasks, stream=None, tty: bool | None = None, phase_names: dict | None = None,
                 clock=time.monotonic) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.sizes = {task_key(t.uri, t.split_index): (t.size if t.end is None else min(t.end, t.size)) - t.start
                      for t in tasks}
        self.total = sum(self.sizes.values())
        self.phase_names = {**PHASES, **(phase_names or {})}
        self.clock = clock
        self.done: dict[str, int] = {}
        self.records: dict[str, int] = {}
        self.started = clock()
        self._last_log = self.started
        self._read_over = not self.sizes
        self._phase: tuple[str, float] | None = None
        self._phases_seen: set[str] = set()
        self._lock = threading.Lock()
        self._bar = None
        if self.tty and self.sizes:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="B", unit_scale=True, unit_divisor=1024, desc="reading",
                             file=self.stream, dynamic_ncols=True, mininterval=0.5, leave=True)

    # the log side
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        text = text.removeprefix("worker: ")
        if not text.startswith(PREFIX):
            return True
        try:
            self.told(text[len(PREFIX):])
        except Exception:  # a display problem must never stop the import
            pass
        return False

    def told(self, text: str) -> None:
        kind, *rest = text.split()
        with self._lock:
            if kind == "read" and len(rest) == 3:
                self._read(rest[0], int(rest[1]), int(rest[2]))
            elif kind == "phase" and len(rest) == 2:
                self._phase_told(rest[0], rest[1])

    # reading
    def _read(self, key: str, done: int, records: int) -> None:
        if key not in self.sizes or self._read_over:
            return
        before = self.done.get(key, 0)
        self.done[key] = max(before, min(done, self.sizes[key]))
        self.records[key] = max(self.records.get(key, 0), records)
        if self._bar is not None:
            self._bar.update(self.done[key] - before)
            self._bar.set_postfix_str(f"{sum(self.records.values()):,} lines/rows", refresh=False)
        elif self.clock() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = self.clock()
            self._say(self.read_line())
        if sum(self.done.values()) >= self.total and len(self.done) == len(self.sizes):
            self._end_read()

    def read_line(self) -> str:
        done, seconds = sum(self.done.values()), max(self.clock() - self.started, 1e-9)
        percent = 100 * done / self.total if self.total else 100.0
        return (f"reading: {percent:.0f} % ({_size(done)} of {_size(self.total)}), "
                f"{sum(self.records.values()):,} lines/rows, {_size(done / seconds)}/s")

    def _end_read(self) -> None:
        if self._read_over:
            return
        self._read_over = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        told = sum(self.done.values()) >= self.total  # else the last ticks did not arrive: no count to give
        records = f": {sum(self.records.values()):,} lines/rows" if told else ""
        self._say(f"read {_size(self.total)}{records} in {self.clock() - self.started:.1f} s")

    # phases
    def _phase_told(self, name: str, state: str) -> None:
        if state == "started":
            if name in self._phases_seen:
                return
            self._phases_seen.add(name)
            self._end_read()
            self._end_phase()
            self._phase = (name, self.clock())
            self._say(f"{self.phase_names.get(name, name)}…")
        elif state == "ended" and self._phase is not None and self._phase[0] == name:
            self._end_phase()

    def _end_phase(self) -> None:
        if self._phase is not None:
            name, since = self._phase
            self._say(f"{self.phase_names.get(name, name)}: done in {self.clock() - since:.1f} s")
            self._phase = None

    def _say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        elif self.tty:
            print(line, file=self.stream, flush=True)
        else:
            log.info("%s", line)

    def close(self, finished: bool = True) -> None:
        """Stop showing; a run that did not finish leaves its phase unended (the launcher says why)."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if finished:
                self._end_phase()
            self._phase = None


@contextmanager
def shown(progress: Progress):
    """Show ``progress`` while the block runs: its filter on the loggers progress lines arrive on,
    and, with a bar on screen, the other log lines written above the bar."""
    loggers = [logging.getLogger(name) for name in WORKER_LOGGERS]
    for logger in loggers:
        logger.addFilter(progress)
    finished = False
    try:
        if progress.tty:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                yield progress
        else:
            yield progress
        finished = True
    finally:
        for logger in loggers:
            logger.removeFilter(progress)
        progress.close(finished)
