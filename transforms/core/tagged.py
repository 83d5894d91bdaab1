"""What every DoFn of the import shares: its tagged outputs (dead letters, counts, conflicts), their
shape, and the timing of a stage.

Counts are ``((source_uri, metric), n)`` pairs, summed at the end into the run report. A stage's dead
letters of one batch travel as ONE element (a list): one element per dead letter went through Beam's
per-element machinery 35,000 times per million lines (with their counts, up to a tenth of the workers'
profile samples).
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.core.records import prepare_worker_gc

DEAD_LETTERS = "dead_letters"
COUNTS = "counts"
CONFLICTS = "conflicts"


class TimedDoFn(beam.DoFn):
    """Records the milliseconds spent per batch in a distribution named after the stage (the report's
    ``stage_seconds``), and the records it handled in a counter."""

    STAGE = "stage"

    def __init__(self) -> None:
        self._msecs = Metrics.distribution("importer", f"{self.STAGE}_msecs")
        self._rows = Metrics.counter("importer", f"{self.STAGE}_records")

    def setup(self) -> None:
        prepare_worker_gc()

    def _timed(self, started: float, rows: int) -> None:
        self._msecs.update(int((time.perf_counter() - started) * 1000))
        self._rows.inc(rows)
