"""The process-wide "cyclic GC off during a batch" switch, used by several threads at once.

Beam runs bundles on several threads of one worker process, each in ``cyclic_gc_paused`` while it
works on a batch: the collector is off while any of them is inside, and on again (if it was on before
the first came in) once the last has left, whatever the order they leave in.
"""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from transforms.core.records import cyclic_gc_paused

WAIT = 30  # seconds; a step that takes longer is a deadlock, not a slow machine
PAUSE = 1.0


@pytest.fixture(autouse=True)
def collector_on():
    gc.enable()
    yield
    gc.enable()  # whatever a failed test left behind


def step(event: threading.Event) -> None:
    assert event.wait(WAIT), "the other thread did not get there"


def run_threads(*targets) -> None:
    errors: list[BaseException] = []

    def guarded(target):
        def run():
            try:
                target()
            except BaseException as err:  # reported by the main thread
                errors.append(err)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a thread is stuck"
    if errors:
        raise errors[0]


def test_the_first_to_leave_does_not_turn_the_collector_on_under_the_other():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first():
        with cyclic_gc_paused():
            first_in.set()
            step(second_in)
        first_out.set()

    def second():
        step(first_in)
        with cyclic_gc_paused():
            second_in.set()
            step(first_out)
            seen["inside after the first left"] = gc.isenabled()

    run_threads(first, second)
    assert seen["inside after the first left"] is False
    assert gc.isenabled(), "on again once the last thread left"


def test_a_thread_that_read_the_state_just_before_another_left_does_not_leave_it_off():
    # The unguarded switch read "is it on?" and then turned it off in two steps. A thread that read
    # "off" (another thread was inside), and switched it off again after that thread had left and
    # turned it on, left it off for good. A profiler hook holds this thread right after it read the
    # state (for at most PAUSE seconds, if it reads it at all) while the other one leaves.
    other_in, reading, other_out = threading.Event(), threading.Event(), threading.Event()

    def hold_after_reading(frame, event, arg):
        if event == "c_return" and arg is gc.isenabled and other_in.is_set() and not reading.is_set():
            reading.set()
            other_out.wait(PAUSE)

    def reader():
        step(other_in)
        sys.setprofile(hold_after_reading)
        try:
            with cyclic_gc_paused():
                pass
        finally:
            sys.setprofile(None)

    def other():
        with cyclic_gc_paused():
            other_in.set()
            reading.wait(PAUSE)  # a switch that reads nothing while another thread is inside never signals
        other_out.set()

    run_threads(reader, other)
    assert gc.isenabled(), "left off by a thread that read the state while another thread was inside"


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    both_in = threading.Barrier(2, timeout=WAIT)

    def worker():
        with cyclic_gc_paused():
            both_in.wait()

    run_threads(worker, worker)
    assert not gc.isenabled()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()


def test_nested_and_raising_uses_restore_it():
    with pytest.raises(RuntimeError):
        with cyclic_gc_paused():
            with cyclic_gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled(), "the inner exit leaves it off for the outer block"
            raise RuntimeError("a batch failed")
    assert gc.isenabled()


def test_many_threads_in_any_order():
    threads, rounds = 8, 200
    start = threading.Barrier(threads, timeout=WAIT)
    on_inside: list[int] = []

    def worker():
        start.wait()
        for _ in range(rounds):
            with cyclic_gc_paused():
                if gc.isenabled():
                    on_inside.append(1)

    run_threads(*[worker] * threads)
    assert not on_inside, f"the collector was on inside the switch {len(on_inside)} times"
    assert gc.isenabled()
