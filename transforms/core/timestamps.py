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

from datetime import UTC, datetime

import numpy as np

from transforms.core.settings import TimestampPolicy, to_micros

UNIT_FACTORS = {"s": 1_000_000, "ms": 1_000, "us": 1}
SECONDS_BELOW = 1e11
MILLIS_BELOW = 1e14
MICROS_BELOW = 1e17


def from_micros(micros: int) -> datetime:
    """UTC microseconds as an aware datetime."""
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def now_micros() -> int:
    """This moment in UTC microseconds."""
    return to_micros(datetime.now(UTC))


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
