"""The completeness rule (pipeline.gaps) on synthetic histories: holes found, quiet weekends and dips not."""

from __future__ import annotations

import random
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.gaps import MIN_USUAL, completeness, find_gaps

MONDAY = date(2026, 9, 7)
WEEKDAY, WEEKEND = 1000, 150  # weekends at 15 % of a weekday: far below any "quarter of the usual" of all days


def history(weeks: int = 8, seed: int = 1, start: date = MONDAY, weekday: int = WEEKDAY, weekend: int = WEEKEND,
            noise: float = 0.15) -> dict[date, int]:
    rnd = random.Random(seed)
    out = {}
    for i in range(weeks * 7):
        day = start + timedelta(days=i)
        base = weekend if day.weekday() >= 5 else weekday
        out[day] = max(0, round(base * (1 + rnd.uniform(-noise, noise))))
    return out


def span(counts: dict[date, int]) -> tuple[date, date]:
    return min(counts), max(counts)


def flagged(counts: dict[date, int], **kw) -> dict[date, str]:
    return {g.day: g.reason for g in find_gaps(counts, *span(counts), **kw)}


def test_quiet_weekends_and_noise_are_not_gaps():
    for seed in range(20):
        assert flagged(history(seed=seed)) == {}


def test_a_missing_day_is_found_and_only_it():
    counts = history()
    hole = MONDAY + timedelta(days=23)  # a Wednesday
    del counts[hole]  # no file for that day: the day is absent from the counts altogether
    assert flagged(counts) == {hole: "no events"}


def test_a_missing_weekend_day_is_found_against_other_weekends():
    counts = history()
    sunday = MONDAY + timedelta(days=27)
    counts[sunday] = 0
    assert flagged(counts) == {sunday: "no events"}


def test_a_missing_week_is_found_day_by_day():
    counts = history(weeks=10)
    week = [MONDAY + timedelta(days=35 + i) for i in range(7)]
    for day in week:
        counts.pop(day)
    assert flagged(counts) == {day: "no events" for day in week}


def test_a_partial_day_far_below_the_usual_is_a_drop_but_a_dip_is_not():
    counts = history()
    cut, holiday = MONDAY + timedelta(days=15), MONDAY + timedelta(days=30)  # a Tuesday, a Wednesday
    counts[cut] = 90  # one file of the day's ten
    counts[holiday] = 550  # a quiet day, not a missing export
    assert flagged(counts) == {cut: "drop"}


def test_the_first_and_last_day_are_never_flagged():
    counts = history()
    first, last = span(counts)
    counts[first] = counts[last] = 3  # an export starts and ends at any hour
    assert flagged(counts) == {}


def test_a_sparse_series_is_not_judged():
    counts = {MONDAY + timedelta(days=i): (3 if i % 2 else 0) for i in range(56)}  # a tiny key: most days empty
    assert flagged(counts) == {}
    hole = MONDAY + timedelta(days=20)
    steady = history(weekday=MIN_USUAL * 4, weekend=MIN_USUAL * 4, noise=0.0)
    assert flagged(steady | {hole: 0}) == {hole: "no events"}


def test_a_short_span_uses_the_days_around_and_still_spares_a_weekend_at_a_third():
    counts = history(weeks=2, weekend=350)  # too short for four same weekdays: the 7 days either side
    assert flagged(counts) == {}
    hole = MONDAY + timedelta(days=8)
    counts[hole] = 0
    assert flagged(counts) == {hole: "no events"}


def test_neighbours_outside_the_span_come_from_the_table():
    counts = history(weeks=12)
    inside = {d: n for d, n in counts.items() if MONDAY + timedelta(days=35) <= d <= MONDAY + timedelta(days=41)}
    hole = MONDAY + timedelta(days=38)
    counts[hole] = 0
    # the import holds one week; with the table's weeks around it, its Thursday is judged by other Thursdays
    gaps = find_gaps(counts, min(inside), max(inside))
    assert [(g.day, g.reason) for g in gaps] == [(hole, "no events")]


def test_completeness_uses_the_history_the_table_holds_and_names_keys():
    a, b = "a" * 24, "b" * 24
    days = history(weeks=6)
    imported = {(d, a): n for d, n in days.items()} | {(d, b): n // 2 for d, n in days.items()}
    hole = MONDAY + timedelta(days=17)
    del imported[(hole, b)]  # key b's export lacks a day
    result = completeness(imported)
    assert [(g["day"], g["key"], g["reason"]) for g in result["gaps"]] == [(hole.isoformat(), b, "no events")]
    assert result["span"] == [MONDAY.isoformat(), (MONDAY + timedelta(days=41)).isoformat()]
    assert len(result["days"]) == 42 and result["keys"] == 2
    # the same import into a table that already held key b's day: the history is complete
    table = {k: (n, n) for k, n in imported.items()} | {(hole, b): (days[hole] // 2, 0)}
    filled = completeness(imported, table)
    assert filled["gaps"] == []
    day = next(d for d in filled["days"] if d["day"] == hole.isoformat())
    assert day["held_before"] == days[hole] // 2 and day["in_table"] == day["held_before"] + day["imported"]


def test_a_hole_in_every_key_is_a_gap_of_the_whole_history():
    days = history(weeks=6)
    hole = MONDAY + timedelta(days=16)
    imported = {(d, k): n for d, n in days.items() for k in ("a" * 24, "b" * 24) if d != hole}
    result = completeness(imported)
    assert {(g["day"], g["key"]) for g in result["gaps"]} == {(hole.isoformat(), None), (hole.isoformat(), "a" * 24),
                                                             (hole.isoformat(), "b" * 24)}
    assert [d["gap"] for d in result["days"]].count(True) == 1


def test_nothing_imported_has_no_span():
    assert completeness({}) == {"rule": completeness({})["rule"], "span": None, "days": [], "gaps": []}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=1.5), min_size=42, max_size=70),
       st.integers(min_value=MIN_USUAL, max_value=100_000), st.floats(min_value=0.05, max_value=1.0))
def test_any_history_within_half_and_one_and_a_half_of_its_weekly_profile_has_no_gap(factors, volume, quiet):
    counts = {}
    for i, f in enumerate(factors):
        day = MONDAY + timedelta(days=i)
        counts[day] = round(volume * (quiet if day.weekday() >= 5 else 1.0) * f)
    assert flagged(counts) == {}
