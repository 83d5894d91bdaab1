"""The reference importer's validate stage: the rules of ``schemas/envelope.py`` checked directly.

Wire types, required fields, the 24-hex ``key``, lengths and ``v == 1``, with pyarrow.compute and
Python type scans (not pandera); every reason of a record counts, as the pipeline's lazy validation
does. Part of ``bench/reference_import.py``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.envelope import ENVELOPE, KEY_PATTERN, NUMBER, STRING

_NUMBER_TYPES = frozenset((int, float))


def _as_floats(values: list) -> pa.Array:
    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowInvalid, OverflowError):  # ints beyond 2^53 / 2^63: as float(), inf on overflow
        def f(x):
            if x is None:
                return None
            try:
                return float(x)
            except OverflowError:
                return float("inf") if x > 0 else float("-inf")
        return pa.array([f(x) for x in values], pa.float64())


def validate(p) -> tuple[np.ndarray, dict[str, pa.Array], Counter]:
    """Returns (ok mask, typed columns over all records, reason counts). Every reason of a record counts."""
    n = len(p.records)
    reasons: dict[int, set[str]] = {}

    def flag(rows, code: str) -> None:
        for i in rows:
            reasons.setdefault(int(i), set()).add(code)

    typed: dict[str, pa.Array] = {}
    for f in ENVELOPE:
        col = p.columns[f.name]
        if f.wire_types == (STRING,):
            try:
                arr = pa.array(col, pa.string())
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                bad = [i for i, x in enumerate(col) if x is not None and type(x) is not str]
                flag(bad, f"{f.name}:type")
                col = list(col)
                for i in bad:
                    col[i] = None
                arr = pa.array(col, pa.string())
        elif f.wire_types == (NUMBER,):
            bad = [i for i, x in enumerate(col) if type(x) not in _NUMBER_TYPES]  # None included
            wrong = [i for i in bad if col[i] is not None]  # bool, str, dict, list
            flag(wrong, f"{f.name}:type")
            col = list(col)
            for i in wrong:
                col[i] = None
            arr = _as_floats(col)
        else:  # data: an object or null
            flag((i for i, x in enumerate(col) if x is not None and type(x) is not dict), f"{f.name}:type")
            arr = None
        if arr is not None:
            typed[f.name] = arr
            nulls = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)) if arr.null_count else ()
        elif f.required or not f.nullable:
            nulls = [i for i, x in enumerate(col) if x is None]
        else:
            nulls = ()
        if f.required and len(nulls):
            # null where the value is required: absent → missing; null or a wrong type → type
            name, recs = f.name, p.records
            flag((i for i in nulls if name not in recs[i]), f"{name}:missing")
            flag((i for i in nulls if name in recs[i] and recs[i][name] is None), f"{name}:type")
        elif not f.nullable and len(nulls):
            flag((i for i in nulls if f.name in p.records[i] and p.records[i][f.name] is None), f"{f.name}:type")
        if arr is None:
            continue
        checks = []
        if f.pattern:
            checks.append((pc.invert(pc.match_substring_regex(arr, f.pattern)), "pattern"))
        if f.min_length or f.max_length:
            length = pc.utf8_length(arr)
            if f.min_length:
                checks.append((pc.less(length, f.min_length), "empty"))
            if f.max_length:
                checks.append((pc.greater(length, f.max_length), "too_long"))
        if f.equals is not None:
            checks.append((pc.not_equal(arr, f.equals), "unsupported"))
        for broken, rule in checks:
            broken = pc.fill_null(broken, False)
            if pc.any(broken).as_py():
                flag(np.flatnonzero(broken.to_numpy(zero_copy_only=False)), f"{f.name}:{rule}")
    ok = np.ones(n, dtype=bool)
    counts: Counter = Counter()
    for i, codes in reasons.items():
        ok[i] = False
        counts.update(codes)
    return ok, typed, counts


assert KEY_PATTERN == r"^[0-9a-f]{24}$"
