"""Ctrl-C (SIGINT) and SIGTERM during an import: one exception in the launcher, one line for the user.

The launcher turns either signal into ``Interrupted`` in its main thread, so the run unwinds through
its own clean-up (the write's state settled, the claim released, staging tables dropped, the work
folder removed) instead of dying where it stood. The local worker processes ignore SIGINT
(``pipeline.warm_workers``): the terminal sends it to the whole process group, and their tracebacks
said nothing the launcher's line does not. Beam's own chatter is silenced once a run is interrupted:
its runner logs the broken worker streams that the interruption itself causes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""128 + the signal's number, as shells report a process a signal ended."""
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Interrupted(BaseException):
    """The import was asked to stop. ``phase``: what it was doing; ``outcome``: the state it left,
    in words (filled in by the launcher as it unwinds)."""

    _tagged_with_step = True
    """Beam re-raises what a step raised as a new exception of its type, the step's name added to its
    first argument (``apache_beam.runners.common.DoFnRunner._reraise_augmented``), unless it is tagged
    so. An interruption is not the step's failure: it must reach the launcher as raised, its signal an
    int (an import in the launcher's own process, ``--direct_num_workers=1``, ended in a ValueError)."""

    def __init__(self, signum: int) -> None:
        super().__init__(NAMES.get(signum, f"signal {signum}"))
        self.signum = signum
        self.phase = "preparing the import"
        self.outcome = "nothing was written"
        self.stoppable = False  # while True, a second signal raises again (to stop a wait for BigQuery)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + int(self.signum))

    def line(self) -> str:
        return f"interrupted ({self}) during {self.phase}; {self.outcome}"


def _silence_beam() -> None:
    for name in ("apache_beam", "grpc", "importer.workers"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    logging.getLogger("apache_beam.runners.portability.local_job_service").disabled = True


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise ``Interrupted`` in the main thread, once: a second signal while
    the run unwinds is ignored, so the clean-up finishes, except while the first one is ``stoppable``
    (waiting for a BigQuery job to tell whether the write committed). Elsewhere than the main thread:
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def handler(signum: int, frame) -> None:  # noqa: ANN001 (signal's signature)
        if raised:
            if raised[0].stoppable:
                raised[0].stoppable = False
                raise Interrupted(signum)
            return
        raised.append(Interrupted(signum))
        _silence_beam()
        raise raised[0]

    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
