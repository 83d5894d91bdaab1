"""Events per event day and ``key`` of the rows an import keeps, and their first and last event time.

Counted on the deduplicated rows, beside whatever sink writes them (``WithDayCounts`` wraps the sink:
its counts join the sink's own in the run's accounting). They are not tied to one input file, so
they carry the source ``ALL_FILES``; ``pipeline.report.assemble`` takes them out of the per-file
accounting into ``event_days`` and ``event_time``. Counts are summed, so the first and last event
time travel as metric *names* (``event_time_min:MICROS``), one per table, and the report keeps the
smallest and largest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

ALL_FILES = ""
DAY_METRIC = "event_day"
MIN_METRIC = "event_time_min"
MAX_METRIC = "event_time_max"


def day_counts(element) -> Iterator[tuple[tuple[str, str], int]]:
    """``(bucket, table)`` of deduplicated rows → ``((ALL_FILES, "event_day:DAY|KEY"), n)`` and the
    table's first and last event time."""
    _, table = element
    if not table.num_rows:
        return
    stamps = table.column("timestamp")
    grouped = pa.table({"day": stamps.cast(pa.date32()), "key": table.column("key")}).group_by(
        ["day", "key"]).aggregate([([], "count_all")])
    for row in grouped.to_pylist():
        yield (ALL_FILES, f"{DAY_METRIC}:{row['day'].isoformat()}|{row['key']}"), row["count_all"]
    bounds = pc.min_max(stamps.cast(pa.int64())).as_py()
    yield (ALL_FILES, f"{MIN_METRIC}:{bounds['min']}"), 1
    yield (ALL_FILES, f"{MAX_METRIC}:{bounds['max']}"), 1


class WithDayCounts(beam.PTransform):
    """The sink ``inner`` (``ImportOutputs`` → counts), plus the day counts of the rows it is given;
    without ``inner`` (a dry run, given only the rows: it gathers no dead letters), only the day counts."""

    def __init__(self, inner: beam.PTransform | None) -> None:
        super().__init__()
        self.inner = inner

    def expand(self, outputs):
        days = getattr(outputs, "rows", outputs) | "CountEventDays" >> beam.FlatMap(day_counts)
        if self.inner is None:
            return days
        written = self.inner.expand(outputs)  # the sink's own steps, named as before
        return (written, days) | "WithDayCounts" >> beam.Flatten()


def with_day_counts(sink: Callable[[], beam.PTransform] | None) -> Callable[[], beam.PTransform]:
    """A sink factory (``pipeline.graph.build_pipeline``) whose sink also counts events per day; for a
    dry run (no sink), one that only counts them, so a dry run checks an export's completeness too."""
    return lambda: WithDayCounts(sink() if sink is not None else None)
