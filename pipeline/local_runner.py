"""The local runner: Beam's in-process runner on two worker processes (the warm ones of
``pipeline.warm_workers`` where it can), or in the launcher's own process for a small input, and the
relay of those workers' log lines.

Beam is imported inside the functions that need it: ``start_warm_workers`` runs before the launcher
imports Beam, so that the server imports the workers' modules meanwhile."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipeline import warm_workers

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")
"""How ENOSPC and EDQUOT read in an error's text or a worker's log line (``pipeline.failures.disk_full``)."""
LOCAL_WORKERS = 2
"""Worker processes of a local import (the machine this was tuned on has two cores)."""
ONE_PROCESS_EVENTS = 100_000
"""A local import of fewer events than this (estimated from its files' sizes:
``transforms.core.sizing.estimated_events``) runs in the launcher's own process, on one worker: two
worker processes cost more to start (each imports Beam, pyarrow, polars and pandera, or is forked from
a server that did) than they save on so little. Dry runs of ``bench/generate_events.py`` files, one
worker against two, one after the other on the 2-core machine (wall s, CPU s): 12,500 events (the
example) 1.9 against 2.2, 1.9 against 3.7; 50,000 2.4 against 2.6, 2.4 against 4.0; 100,000 2.9 against
3.2, 2.9 against 4.5; 200,000 3.9 against 3.4 (two workers win from here on)."""


def start_warm_workers(argv: list[str]) -> None:
    """Start the warm workers' server when this command line runs the default local file import; return
    at once otherwise (Dataflow, a Pub/Sub import, a running mode of one's own, --help…), or where
    processes cannot fork: there the runner starts Beam's own worker processes."""
    if warm_workers.wanted(argv):
        warm_workers.start()


def stop_warm_workers() -> None:
    """End the warm workers' server, if one was started (``pipeline.warm_workers.stop``)."""
    warm_workers.stop()


def one_process(files: Iterable[tuple[str, int]]) -> bool:
    """Whether a local import of these ``(uri, size)`` files runs on one worker, in the launcher's own
    process (fewer than ``ONE_PROCESS_EVENTS`` estimated events)."""
    from transforms.core.sizing import estimated_events

    return estimated_events(files) < ONE_PROCESS_EVENTS


def local_runner_defaults(options: PipelineOptions, argv: list[str],
                          files: list[tuple[str, int]] | None = None) -> None:
    """Without --runner, use Beam's in-process runner (the default DirectRunner would try to download the
    Prism runner binary, which fails offline): on two worker processes, or in this process when the
    import's ``files`` are small (``one_process``; None: a subscription, no files to size). Explicit
    --direct_num_workers / --direct_running_mode win."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    std = options.view_as(StandardOptions)
    if std.runner is not None:
        return
    std.runner = "FnApiRunner"
    direct = options.view_as(DirectOptions)

    def given(flag: str) -> bool:
        return any(a == flag or a.startswith(flag + "=") for a in argv)

    if not given("--direct_num_workers"):
        small = files is not None and not given("--direct_running_mode") and one_process(files)
        direct.direct_num_workers = 1 if small else LOCAL_WORKERS
        if small:
            warm_workers.discard()  # started for an input foreseen larger: nothing will attach to it
    if not given("--direct_running_mode"):
        direct.direct_running_mode = "multi_processing" if direct.direct_num_workers != 1 else "in_memory"


def workers_said(options: PipelineOptions) -> str:
    """Where a local import runs, for its log line: ``in this process`` or ``on N worker processes``."""
    from apache_beam.options.pipeline_options import DirectOptions

    workers = options.view_as(DirectOptions).direct_num_workers
    where = "in this process" if workers == 1 else f"on {workers} worker processes"
    return f"{where} (--direct_num_workers to choose)"


class _RunningModeNote(logging.Filter):
    """Hides the runner's warning that ``in_memory`` with several workers runs them in one process:
    with the worker command of ``warm_runner`` they are separate processes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("If direct_num_workers is not equal to 1")


def warm_runner(options: PipelineOptions):
    """The local runner whose worker processes are the warm ones ``python -m pipeline`` started
    (``pipeline.warm_workers``), or None (none started, or not the default two-process local run).

    ``multi_processing`` would replace any worker command by Beam's own, so the mode becomes
    ``in_memory`` with an explicit environment: still ``direct_num_workers`` worker processes."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    command = warm_workers.worker_command()
    direct = options.view_as(DirectOptions)
    if (command is None or options.view_as(StandardOptions).runner != "FnApiRunner"
            or direct.direct_running_mode != "multi_processing"):
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    direct.direct_running_mode = "in_memory"
    note = logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner")
    if not any(isinstance(f, _RunningModeNote) for f in note.filters):
        note.addFilter(_RunningModeNote())
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))


class WorkerLogs(logging.Filter):
    """Log lines relayed from the local runner's worker processes: our own (progress, MERGE results)
    in plain words; Beam's INFO chatter and its harmless start-up warning hidden."""

    _MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
    _LOCATION = re.compile(r'log_location: "([^"]*)"')

    def filter(self, record: logging.LogRecord) -> bool:
        # the relay logs 'Worker: %s' with the text form of the worker's log-entry proto
        text = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        message, location = self._MESSAGE.search(text), self._LOCATION.search(text)
        if not message or not location:
            return record.levelno >= logging.WARNING
        ours = "/transforms/" in location[1] or "/pipeline/" in location[1]
        if (not ours and record.levelno < logging.WARNING) or "semi_persistent_directory" in message[1]:
            return False
        if any(text in message[1] for text in DISK_FULL_TEXT):
            return False  # the launcher says it in one line (pipeline.failures.disk_full), without the traceback
        record.msg, record.args = "worker: %s", (message[1],)
        return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apache_beam", "pandera"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    relay.setLevel(logging.INFO)
    relay.addFilter(WorkerLogs())
    # a full disk is said in one line by the launcher (pipeline.failures.disk_full), not as Beam's traceback
    logging.getLogger("apache_beam.runners.common").addFilter(
        lambda record: not any(text in record.getMessage() for text in DISK_FULL_TEXT))
