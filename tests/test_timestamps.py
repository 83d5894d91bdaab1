"""Event-time conversion: unit detection, exactness, bounds, fill and forced units; ISO instants."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.settings import TimestampPolicy, parse_instant, to_micros
from transforms.core.timestamps import UNIT_FACTORS, convert_epochs

OK, MISSING, NOT_FINITE, OUT_OF_RANGE = 0, 1, 2, 3
Y2000_MS = 946_684_800_000
Y2100_MS = 4_102_444_800_000
NO_BOUNDS = TimestampPolicy(min_micros=-(2**62))


def convert(values: list[float], policy: TimestampPolicy = TimestampPolicy()) -> tuple[list[int], list[int]]:
    micros, status = convert_epochs(np.array(values, dtype=np.float64), policy)
    assert micros.dtype == np.int64
    assert status.dtype == np.int8
    return micros.tolist(), status.tolist()


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        # seconds below 1e11
        (1_763_000_000, 1_763_000_000_000_000),
        (99_999_999_999, 99_999_999_999_000_000),
        (1.0, 1_000_000),
        # milliseconds from 1e11 to below 1e14
        (100_000_000_000, 100_000_000_000_000),
        (1_763_000_000_123, 1_763_000_000_123_000),
        (99_999_999_999_936, 99_999_999_999_936_000),  # exact in float64 (spacing 16 near 1e17)
        # microseconds from 1e14 to below 1e17
        (100_000_000_000_000, 100_000_000_000_000),
        (1_763_000_000_123_456, 1_763_000_000_123_456),
        (99_999_999_999_999_984, 99_999_999_999_999_984),  # the float64 just below 1e17
        # on the absolute value: negative numbers get the same unit
        (-1_763_000_000, -1_763_000_000_000_000),
        (-1_763_000_000_123, -1_763_000_000_123_000),
    ],
)
def test_unit_detected_by_magnitude(value: float, micros: int) -> None:
    assert convert([value], NO_BOUNDS) == ([micros], [OK])


def test_magnitude_of_1e17_and_more_is_out_of_range() -> None:
    assert convert([1e17, 1e19, -1e17], NO_BOUNDS) == ([0, 0, 0], [OUT_OF_RANGE] * 3)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(Y2000_MS, Y2100_MS - 1), min_size=1, max_size=50))
def test_milliseconds_convert_exactly(millis: list[int]) -> None:
    assert convert([float(m) for m in millis]) == ([m * 1000 for m in millis], [OK] * len(millis))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(Y2000_MS, Y2100_MS - 1), min_size=1, max_size=50))
def test_float_seconds_with_a_millisecond_fraction_keep_the_millisecond(millis: list[int]) -> None:
    # a sender printing 1763000000.123 gives the float nearest to it, which is what m / 1000 is
    assert convert([m / 1000 for m in millis]) == ([m * 1000 for m in millis], [OK] * len(millis))


def test_millisecond_conversion_exact_on_many_random_values() -> None:
    millis = np.random.default_rng(20_26).integers(Y2000_MS, Y2100_MS, size=200_000)
    micros, status = convert_epochs(millis.astype(np.float64), TimestampPolicy())
    assert (status == OK).all()
    assert np.array_equal(micros, millis * 1000)
    micros, status = convert_epochs(millis / 1000, TimestampPolicy())
    assert (status == OK).all()
    assert np.array_equal(micros, millis * 1000)


@pytest.mark.parametrize(
    ("seconds", "micros"),
    [
        (1_763_000_000.123, 1_763_000_000_123_000),
        (1_763_000_000.001, 1_763_000_000_001_000),
        (1_763_000_000.999, 1_763_000_000_999_000),
        (946_684_800.5, 946_684_800_500_000),
        (4_102_444_799.999, 4_102_444_799_999_000),
    ],
)
def test_float_seconds(seconds: float, micros: int) -> None:
    assert convert([seconds]) == ([micros], [OK])


def test_statuses_side_by_side() -> None:
    values = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e17, 1_763_000_000_000.0]
    assert convert(values) == (
        [0, 0, 0, 0, 0, 0, 1_763_000_000_000_000],
        [MISSING, NOT_FINITE, NOT_FINITE, OUT_OF_RANGE, OUT_OF_RANGE, OUT_OF_RANGE, OK],
    )


def test_default_lower_bound_is_2000_inclusive() -> None:
    assert convert([946_684_800, 946_684_799.999, 946_684_800_000, 946_684_799_999]) == (
        [946_684_800_000_000, 0, 946_684_800_000_000, 0],
        [OK, OUT_OF_RANGE, OK, OUT_OF_RANGE],
    )


def test_upper_bound_inclusive() -> None:
    limit = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
    policy = TimestampPolicy(max_micros=limit)
    ms = limit // 1000
    assert convert([ms, ms + 1, 4_102_444_800], policy) == ([limit, 0, 0], [OK, OUT_OF_RANGE, OUT_OF_RANGE])


def test_no_upper_bound_by_default() -> None:
    # year 5138 in seconds is still a valid event time when no --max bound is given
    assert convert([99_999_999_999]) == ([99_999_999_999_000_000], [OK])


def test_custom_lower_bound() -> None:
    policy = TimestampPolicy(min_micros=0)
    assert convert([0.0, -0.001, 1.0], policy) == ([0, 0, 1_000_000], [OK, OUT_OF_RANGE, OK])


def test_fill_policy_fills_only_missing() -> None:
    fill = 1_700_000_000_000_000
    policy = TimestampPolicy(fill_micros=fill)
    assert convert([np.nan, 1_763_000_000_000, np.inf, -5.0, np.nan], policy) == (
        [fill, 1_763_000_000_000_000, 0, 0, fill],
        [OK, OK, NOT_FINITE, OUT_OF_RANGE, OK],
    )


def test_reject_policy_reports_missing() -> None:
    assert convert([np.nan, np.nan]) == ([0, 0], [MISSING, MISSING])


@pytest.mark.parametrize(
    ("unit", "value", "micros", "status"),
    [
        ("s", 1_763_000_000, 1_763_000_000_000_000, OK),
        ("s", 1_763_000_000.25, 1_763_000_000_250_000, OK),
        ("ms", 1_763_000_000_123, 1_763_000_000_123_000, OK),
        ("us", 1_763_000_000_123_456, 1_763_000_000_123_456, OK),
        # forcing the unit overrides the magnitude rule: seconds read as ms fall before 2000
        ("ms", 1_763_000_000, 0, OUT_OF_RANGE),
        ("us", 1_763_000_000_123, 0, OUT_OF_RANGE),
        # ... and a forced unit has no 1e17 ceiling
        ("us", 1e17, 100_000_000_000_000_000, OK),
        ("s", 1e30, 0, OUT_OF_RANGE),
    ],
)
def test_forced_units(unit: str, value: float, micros: int, status: int) -> None:
    assert convert([value], TimestampPolicy(unit=unit)) == ([micros], [status])


def test_empty_input() -> None:
    assert convert([]) == ([], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00+02:00", datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31T12:00:00.123456Z", datetime(2026, 1, 31, 12, 0, 0, 123_456, tzinfo=UTC)),
        (" 2000-01-01T00:00:00Z\n", datetime(2000, 1, 1, tzinfo=UTC)),
        ("1969-12-31T23:59:59.999999Z", datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ],
)
def test_parse_instant(text: str, expected: datetime) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_instant(text) == (expected - epoch) // timedelta(microseconds=1)


def test_parse_instant_known_values() -> None:
    assert parse_instant("2000-01-01") == TimestampPolicy().min_micros
    assert parse_instant("1970-01-01T00:00:00Z") == 0
    assert parse_instant("1969-12-31T23:59:59.999999Z") == -1


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "2026-01-31T25:00:00Z"])
def test_parse_instant_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


@pytest.mark.parametrize("text", ["2026-01-31T12:00:00z", "2026-01-31t12:00:00Z", "2026-01-31t12:00:00z"])
def test_parse_instant_accepts_rfc3339_lower_case_t_and_z(text: str) -> None:
    # RFC 3339 §5.6: "T" and "Z" may be written in lower case
    assert parse_instant(text) == parse_instant("2026-01-31T12:00:00Z")


def test_numbers_given_as_python_values_convert_like_float64() -> None:
    # integers too large for int64 (a CSV cell read with int()) are out of range, not an error
    micros, status = convert_epochs([1_763_000_000_123, 10**20, -(10**19)], TimestampPolicy())
    assert micros.tolist() == [1_763_000_000_123_000, 0, 0]
    assert status.tolist() == [OK, OUT_OF_RANGE, OUT_OF_RANGE]


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_no_upper_bound_still_keeps_times_that_fit_int64_microseconds(unit: str) -> None:
    # without --max_event_time an event time must still fit an int64 of µs (2^63 µs ≈ year 294,247):
    # 5e18 and 1e19 µs, in the forced unit, are beyond any time a sender meant
    scale = UNIT_FACTORS[unit]
    assert convert([5e18 / scale, 1e19 / scale], TimestampPolicy(unit=unit)) == ([0, 0], [OUT_OF_RANGE] * 2)


def test_huge_and_non_finite_values_raise_no_numpy_warning() -> None:
    # a batch of hostile numbers is data, not a reason for the workers' logs to fill with RuntimeWarnings
    hostile = [1e308, -1e308, np.inf, -np.inf, np.nan, 1.7e300]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for policy in (TimestampPolicy(), TimestampPolicy(unit="s"), TimestampPolicy(unit="us")):
            _, status = convert(hostile, policy)
            assert status == [OUT_OF_RANGE, OUT_OF_RANGE, NOT_FINITE, NOT_FINITE, MISSING, OUT_OF_RANGE]
