"""Progress told by the workers: log lines the launcher recognizes (``pipeline.progress`` shows them).

Workers are other processes (the local runner's, or Dataflow's machines); their log lines are the one
channel that already reaches the launcher of a local run (``pipeline.local_runner.WorkerLogs``). A
progress line is ``progress read KEY DONE RECORDS`` (bytes of a read task done so far, of the file as
stored, and records read) or ``progress phase NAME started|ended``, at most one per second and task.
On Dataflow they are ordinary worker log lines; the job's own page shows its progress.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

PREFIX = "progress "
INTERVAL_SECONDS = 1.0

log = logging.getLogger("importer.progress")

_positions = threading.local()


def task_key(uri: str, split_index: int) -> str:
    """A short name of one read task, free of characters a relayed log line would escape."""
    return hashlib.sha1(f"{uri}#{split_index}".encode()).hexdigest()[:12]


def track_stream(raw) -> None:
    """Remember the stored-bytes stream the current thread reads (before any decompression)."""
    _positions.raw = raw


def stream_position() -> int | None:
    raw = getattr(_positions, "raw", None)
    try:
        return raw.tell() if raw is not None else None
    except (OSError, ValueError, AttributeError):  # closed, or a stream that cannot tell
        return None


class ReadTicker:
    """The progress of one read task: ``tick`` after each batch, ``done`` at its end."""

    def __init__(self, uri: str, split_index: int, start: int, end: int) -> None:
        self.key, self.start, self.end = task_key(uri, split_index), start, end
        self.records = 0
        self._last = time.monotonic()
        _positions.raw = None

    def tick(self, records: int) -> None:
        self.records += records
        now = time.monotonic()
        if now - self._last < INTERVAL_SECONDS:
            return
        self._last = now
        position = stream_position()
        if position is not None:
            self._tell(min(max(position - self.start, 0), self.end - self.start))

    def done(self) -> None:
        self._tell(self.end - self.start)

    def _tell(self, done: int) -> None:
        log.info("%sread %s %d %d", PREFIX, self.key, done, self.records)


def phase(name: str, state: str = "started") -> None:
    """Tell that a phase started or ended. Several bundles may start one phase: the launcher shows
    its first start; a phase ends when it says so, or when the next one starts."""
    log.info("%sphase %s %s", PREFIX, name, state)
