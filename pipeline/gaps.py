"""Completeness of an imported history: event days with no events, or far fewer than usual.

A day with no file looks the same as a quiet day in the accounting; here each day of the imported
span is compared with its neighbours. The rule, in one sentence (``RULE``):

    a day strictly inside the imported span is a probable gap when its usual count (the median of
    the same weekday up to four weeks before and after it, or of the seven days either side when
    fewer than two such days are known) is at least ``MIN_USUAL`` events, and the day has fewer
    than a quarter of it and lies more than three median absolute deviations below it.

Comparing a day with the same weekday is what keeps quiet weekends (and a quiet Monday) from being
flagged; the median and the MAD are not moved by one hole or one spike among the neighbours; the
first and last day of a span are never flagged, since an export starts and ends at any hour. The
functions are pure: counts in, flags out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from statistics import median

MIN_USUAL = 10
WEEKS = 4
DROP_RATIO = 0.25
MADS = 3.0
RULE = (f"a day strictly inside the imported span is a probable gap when the median of the same weekday up to "
        f"{WEEKS} weeks either side (of the 7 days either side when fewer than two such days are known) is at "
        f"least {MIN_USUAL} events and the day has less than {DROP_RATIO:.0%} of it and lies more than "
        f"{MADS:g} MADs below it")


@dataclass(frozen=True)
class Gap:
    day: date
    events: int
    usual: float
    reason: str  # "no events" | "drop"
    key: str | None = None  # None: all keys together

    def as_json(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat()}


def _usual(series: Mapping[date, int], day: date) -> tuple[float, float] | None:
    """(median, MAD) of the day's neighbours: the same weekday up to ``WEEKS`` weeks either side, or
    the 7 days either side when fewer than two of those are known; None with too few neighbours."""
    same = [series[d] for k in range(1, WEEKS + 1) for d in (day - timedelta(weeks=k), day + timedelta(weeks=k))
            if d in series]
    values = same if len(same) >= 2 else [series[d] for k in range(1, 8)
                                          for d in (day - timedelta(days=k), day + timedelta(days=k)) if d in series]
    if len(values) < 2:
        return None
    mid = median(values)
    return mid, median(abs(v - mid) for v in values)


def find_gaps(counts: Mapping[date, int], first: date, last: date, key: str | None = None,
              min_usual: int = MIN_USUAL) -> list[Gap]:
    """Probable gaps among the days strictly between ``first`` and ``last`` (the imported span).

    ``counts``: events per day; days of the span it lacks have none; days outside the span are
    neighbours only when present (what a table held around the span)."""
    series = {d: n for d, n in counts.items() if not first <= d <= last}
    day = first
    while day <= last:
        series[day] = counts.get(day, 0)
        day += timedelta(days=1)
    gaps = []
    day = first + timedelta(days=1)
    while day < last:
        usual = _usual(series, day)
        n = series[day]
        if usual is not None:
            mid, mad = usual
            if mid >= min_usual and n < DROP_RATIO * mid and mid - n > MADS * mad:
                gaps.append(Gap(day, n, float(mid), "no events" if n == 0 else "drop", key))
        day += timedelta(days=1)
    return gaps


def completeness(imported: Mapping[tuple[date, str], int],
                 table: Mapping[tuple[date, str], tuple[int, int]] | None = None) -> dict:
    """The run report's ``completeness`` section.

    ``imported``: events the run kept per (day, key) (loaded or already present). ``table``: what the
    events table holds per (day, key) after the run, for the span and four weeks around it, as
    (rows, of which written by this run); None for the file sink. The rule runs on the history: the
    table's counts when there is a table (a day an earlier import filled is not a gap), else the
    imported ones; over all keys together, and per key over that key's own span."""
    if not imported:
        return {"rule": RULE, "span": None, "days": [], "gaps": []}
    history: dict[str, dict[date, int]] = defaultdict(dict)
    source = {k: v[0] for k, v in table.items()} if table is not None else imported
    for (day, key), n in source.items():
        history[key][day] = history[key].get(day, 0) + n
    total: dict[date, int] = defaultdict(int)
    for series in history.values():
        for day, n in series.items():
            total[day] += n
    spans: dict[str, tuple[date, date]] = {}
    for day, key in imported:
        lo, hi = spans.get(key, (day, day))
        spans[key] = (min(lo, day), max(hi, day))
    first = min(lo for lo, _ in spans.values())
    last = max(hi for _, hi in spans.values())
    gaps = find_gaps(total, first, last)
    if len(spans) > 1:
        for key in sorted(spans):
            gaps += find_gaps(history.get(key, {}), *spans[key], key=key)
    days = []
    per_day_imported: dict[date, int] = defaultdict(int)
    for (day, _), n in imported.items():
        per_day_imported[day] += n
    per_day_table: dict[date, tuple[int, int]] = {}
    for (day, _), (rows, by_run) in (table or {}).items():
        held, ours = per_day_table.get(day, (0, 0))
        per_day_table[day] = (held + rows, ours + by_run)
    flagged = {g.day for g in gaps if g.key is None}
    day = first
    while day <= last:
        entry = {"day": day.isoformat(), "imported": per_day_imported.get(day, 0), "gap": day in flagged}
        if table is not None:
            rows, ours = per_day_table.get(day, (0, 0))
            entry.update({"held_before": rows - ours, "loaded": ours, "in_table": rows})
        days.append(entry)
        day += timedelta(days=1)
    return {"rule": RULE, "span": [first.isoformat(), last.isoformat()], "keys": len(spans), "days": days,
            "gaps": [g.as_json() for g in sorted(gaps, key=lambda g: (g.day, g.key or ""))]}
