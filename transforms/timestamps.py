"""Event-time conversion: epoch numbers in s, ms or µs to UTC microseconds, with bounds.

Unit by magnitude (``auto``), on the absolute value:
    < 1e11 → seconds       (1e11 s is the year 5138)
    < 1e14 → milliseconds  (1e11 ms is 1973-03-03)
    < 1e17 → microseconds  (1e14 µs is 1973-03-03)
    else   → out of range
Millisecond input converts exactly: every ms value below 2^53 / 1000 (the year 2255) times 1000 is
exact in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

UNIT_FACTORS = {"s": 1_000_000, "ms": 1_000, "us": 1}
SECONDS_BELOW = 1e11
MILLIS_BELOW = 1e14
MICROS_BELOW = 1e17


@dataclass(frozen=True)
class TimestampPolicy:
    """How to read and bound event times (built from the import options)."""

    unit: str = "auto"  # auto | s | ms | us
    min_micros: int = 946_684_800_000_000  # 2000-01-01T00:00:00Z
    max_micros: int | None = None  # None: no upper bound
    fill_micros: int | None = None  # None: a missing timestamp is rejected


def to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_instant(text: str) -> int:
    """An ISO-8601 instant (``2026-01-31``, ``2026-01-31T12:00:00Z``…) as UTC microseconds."""
    # upper(): RFC 3339 allows a lower-case `z` (and `t`), which fromisoformat refuses
    return to_micros(datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00")))


def convert_epochs(values: np.ndarray, policy: TimestampPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Convert float64 epoch numbers (NaN = missing) to int64 µs.

    Returns (micros, status) where status is 0 = ok, 1 = missing, 2 = not finite, 3 = out of range.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    finite = np.isfinite(values)
    magnitude = np.abs(np.where(finite, values, 0.0))
    if policy.unit == "auto":
        factor = np.select(
            [magnitude < SECONDS_BELOW, magnitude < MILLIS_BELOW, magnitude < MICROS_BELOW],
            [1e6, 1e3, 1.0],
            default=np.nan,
        )
    else:
        factor = np.full(values.shape, float(UNIT_FACTORS[policy.unit]))
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(np.where(finite, values, 0.0) * factor)
    upper = policy.max_micros if policy.max_micros is not None else 2**62
    in_range = np.isfinite(scaled) & (scaled >= policy.min_micros) & (scaled <= upper)
    status = np.where(missing, 1, np.where(~finite, 2, np.where(in_range, 0, 3))).astype(np.int8)
    micros = np.where(status == 0, scaled, 0).astype(np.int64)
    if policy.fill_micros is not None:
        micros = np.where(missing, policy.fill_micros, micros)
        status = np.where(missing, 0, status).astype(np.int8)
    return micros, status
