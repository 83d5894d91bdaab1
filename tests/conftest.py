"""How the suite runs: the order and grouping in which ``pytest -n N --dist loadfile --by-cost`` hands tests
to the workers, and ``--fast``. The fixtures of the emulators and stand-ins are in tests/services.py, loaded
here as a plugin."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.services")  # before the import below, as pytest_plugins would
from tests.services import ROOT, ShortRetries, as_from_a_terminal, free_port, run_in_gcloud_python  # noqa: E402

pytest_plugins = ["tests.services"]
# test modules import them from here
__all__ = ["ROOT", "ShortRetries", "as_from_a_terminal", "free_port", "run_in_gcloud_python"]


# --- which tests, in which order, on which worker ----------------------------------------------------------

SERVICE_FIXTURES = {"bigquery_emulator", "own_emulator", "pubsub_emulator", "gcs_emulator"}
SLOW_MARKS = {"emulator", "e2e", "packaging", "slow"}
SLOW_ELSEWHERE = (
    # tests without a service or a slow mark that still start processes, Beam pipelines or a browser
    # (measured over a second each); `--fast` leaves them out
    "tests/test_command_line.py", "tests/test_emulator_setup.py", "tests/test_gcs_import.py",
    "tests/test_packaging.py", "tests/test_report_html.py", "tests/test_stages_beam.py",
    "tests/test_workfiles.py", "tests/test_warm_workers.py", "tests/test_privacy_agents.py",
    "tests/test_replay_lineage.py", "tests/test_run_history.py", "tests/test_resources.py",
    "tests/test_costs.py", "tests/test_worker_image.py::test_the_entry_point",
    "tests/test_template.py::test_template_entry_file", "tests/test_template.py::test_the_gcloud_flags",
    "tests/test_template.py::test_gcloud_accepts", "tests/test_schedule.py::test_the_environment",
    "tests/test_template.py::test_submit", "tests/test_template.py::test_template_",
    "tests/test_fuzz.py", "tests/test_element_failures.py", "tests/test_gaps.py::test_any_history",
    "tests/test_disk_full.py", "tests/test_dedupe.py::test_bucket_numbers_are_the_same_in_another_process",
)
SPLIT_FILES = {
    # files whose tests are independent of each other (a dataset, topic or emulator of their own, no
    # module-scoped fixture worth sharing): `--by-cost` hands them to the workers one test at a time
    "tests/test_bigquery.py", "tests/test_cli.py", "tests/test_command_line.py", "tests/test_concurrency.py",
    "tests/test_emulator_setup.py", "tests/test_faults.py", "tests/test_gcs_import.py", "tests/test_interrupts.py",
    "tests/test_landing_merge.py", "tests/test_packaging.py", "tests/test_pubsub.py", "tests/test_pubsub_stops.py",
    "tests/test_query.py", "tests/test_schedule.py", "tests/test_template.py", "tests/test_worker_image.py",
    "tests/test_write_retries.py",
}
DURATIONS_KEY = "rlvt/durations"
DURATIONS_FILE = Path(__file__).with_name("durations.json")
"""Seconds per test of a full run on this project's 2-core machine (three workers), for a clone that has not
measured them yet (CI's), in place of per-file guesses. One clone, run five times: 258 and 260 s with its own
durations, 261 and 271 s with these, 275 s with the guesses (runs differ by several seconds anyway).
``./run.sh test --store-durations`` writes this run's."""
UNKNOWN_SECONDS = 0.5


def pytest_addoption(parser) -> None:
    parser.addoption("--fast", action="store_true",
                     help="only the pure-function tests: no emulator, no process, no Beam pipeline (seconds)")
    parser.addoption("--store-durations", action="store_true",
                     help="write this run's seconds per test to tests/durations.json (after a full run: the "
                          "tests it did not run are left out)")
    parser.addoption("--by-cost", action="store_true",
                     help="with -n N --dist loadfile: the files of tests/conftest.py's SPLIT_FILES go to the "
                          "workers test by test, and the longest work goes first (durations measured by earlier "
                          "runs, in .pytest_cache, else those of tests/durations.json)")


def is_fast(item) -> bool:
    if {m.name for m in item.iter_markers()} & SLOW_MARKS or SERVICE_FIXTURES & set(item.fixturenames):
        return False
    return not item.nodeid.startswith(SLOW_ELSEWHERE)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    if not config.getoption("--fast"):
        return
    fast = [item for item in items if is_fast(item)]
    config.hook.pytest_deselected(items=[item for item in items if not is_fast(item)])
    items[:] = fast


_measured: dict[str, float] | None = None
"""Seconds per test of this run (setup + call + teardown), kept by the controller (or a run without xdist)
and merged into .pytest_cache at the end, for `--by-cost` to start the longest work first next time."""


def pytest_sessionstart(session) -> None:
    global _measured
    if not hasattr(session.config, "workerinput"):
        _measured = {}


def pytest_runtest_logreport(report) -> None:
    if _measured is not None:
        _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session) -> None:
    if not _measured:
        return
    measured = {k: round(v, 2) for k, v in sorted(_measured.items())}
    if session.config.getoption("--store-durations"):
        DURATIONS_FILE.write_text(json.dumps(measured, indent=0) + "\n")
    cache = getattr(session.config, "cache", None)
    if cache is not None:
        cache.set(DURATIONS_KEY, {**cache.get(DURATIONS_KEY, {}), **measured})


def committed_durations() -> dict[str, float]:
    return json.loads(DURATIONS_FILE.read_text()) if DURATIONS_FILE.exists() else {}


def seconds_of(nodeid: str, known: dict, committed: dict) -> float:
    """This machine's last measure of the test, else the committed one, else ``UNKNOWN_SECONDS``."""
    return known.get(nodeid, committed.get(nodeid, UNKNOWN_SECONDS))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if not config.getoption("--by-cost") or config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    known = config.cache.get(DURATIONS_KEY, {}) if getattr(config, "cache", None) else {}
    committed = committed_durations()

    class LongestFirst(OrderedDict):
        """The work queue: the next unit handed out is the one with the most seconds left in it."""

        def popitem(self, last: bool = True):
            if last or not self:
                return super().popitem(last)
            scope = max(self, key=lambda s: sum(seconds_of(nodeid, known, committed) for nodeid in self[s]))
            return scope, self.pop(scope)

    class CostScheduling(LoadScopeScheduling):
        """loadfile, except that SPLIT_FILES' tests are units of their own, and units are handed out longest
        first (a worker that takes the last long test while the others run out of work sets the wall time)."""

        def __init__(self, config, log=None) -> None:
            super().__init__(config, log)
            self.workqueue = LongestFirst()

        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return nodeid if file in SPLIT_FILES else file

    config.option.loadscopereorder = False
    return CostScheduling(config, log)


def pytest_make_parametrize_id(config, val, argname):
    """A gzip member as a parameter gets an id without its header's timestamp: ``gzip.compress`` writes the
    current time there, so two xdist workers collecting a second apart would see different test ids (and
    xdist stops the run: "Different tests were collected")."""
    if isinstance(val, bytes) and val[:2] == b"\x1f\x8b" and len(val) >= 10:
        import hashlib

        return "gzip-" + hashlib.sha1(val[:4] + b"\0\0\0\0" + val[8:]).hexdigest()[:8]
    return None
