"""The order in which ``--by-cost`` hands tests to the workers: from this machine's last measures, else
from the committed ones (tests/durations.json), which must keep up with the suite."""

from __future__ import annotations

from tests.conftest import UNKNOWN_SECONDS, committed_durations, seconds_of


def test_a_test_costs_its_last_measure_here_else_the_committed_one_else_the_default():
    known, committed = {"a": 3.0}, {"a": 9.0, "b": 7.0}
    assert seconds_of("a", known, committed) == 3.0
    assert seconds_of("b", known, committed) == 7.0
    assert seconds_of("c", known, committed) == UNKNOWN_SECONDS


def test_the_committed_durations_cover_the_tests_collected(request):
    """A test missing from tests/durations.json is scheduled as if it took half a second: a long new one
    would start last and hold the run (``./run.sh test --store-durations`` after a full run renews it)."""
    committed = committed_durations()
    collected = {item.nodeid for item in request.session.items}
    missing = sorted(collected - set(committed))
    assert len(missing) <= max(10, len(collected) // 20), f"{len(missing)} without a duration: {missing[:5]}"
    assert all(seconds >= 0 for seconds in committed.values())
