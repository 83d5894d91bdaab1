"""Label (`data`) normalization: one event's `data` object into typed columns and quality flags.

Never raises and never rejects: a label that cannot be used is nulled or dropped and the problem is
returned as a quality flag (codes in ``schemas.envelope.LABEL_ISSUES``).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import NamedTuple

from schemas.envelope import ANDROID_ID_LABEL, RESERVED_LABELS, UNSPLIT_ID_EVENTS
from transforms.records import compact_json

CENT = Decimal("0.01")
NUMERIC_LIMIT = Decimal(10) ** 29  # BigQuery NUMERIC holds 29 integer digits
_MONEY_CONTEXT = Context(prec=40)
"""Room for 29 integer digits and the cents: the default context (28 digits) cannot quantize them."""
_ID_SEPARATORS = re.compile(r"[;,|]")
_HAS_SEPARATOR = _ID_SEPARATORS.search
_CONSUMED = frozenset(RESERVED_LABELS) | {ANDROID_ID_LABEL}


class Labels(NamedTuple):
    """One event's labels, normalized (a NamedTuple: one is built per event, so it must be cheap)."""

    ids: list[str]
    trans_id: str | None
    value: Decimal | None
    labels: list[dict]  # [{"key": ..., "value": ...}] sorted by key
    flags: list[str]


def label_text(value: object) -> str | None:
    """A free label's value as text: strings as they are, numbers and booleans as canonical JSON,
    nested values as compact JSON with sorted keys, null as null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return compact_json(value, sort_keys=True).decode()


def to_money(value: object) -> tuple[Decimal | None, str | None]:
    """A monetary value rounded half-up to cents, or (None, flag).

    Floats go through their shortest repr, so 46.599998474121094 → 46.60 and 2.675 → 2.68
    (the sender meant the decimal it printed, not the binary fraction under it).
    """
    if isinstance(value, bool) or value is None:
        return None, "value:not_a_number"
    if isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None, "value:not_a_number"
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):
        return None, "value:not_a_number"
    if not amount.is_finite():
        return None, "value:not_a_number"
    if amount.copy_abs() >= NUMERIC_LIMIT:  # copy_abs: exact, abs() would round to 28 digits
        return None, "value:out_of_range"
    amount = amount.quantize(CENT, rounding=ROUND_HALF_UP, context=_MONEY_CONTEXT)
    if amount.copy_abs() >= NUMERIC_LIMIT:  # rounded up past the limit
        return None, "value:out_of_range"
    return amount, None


def _id_items(raw: object, split: bool) -> tuple[list[str], bool]:
    """Ids from a list or a string; returns (ids, had_invalid_items)."""
    if type(raw) is str:
        if not split or not _HAS_SEPARATOR(raw):
            item = raw.strip()
            return ([item] if item else []), False
        return [p.strip() for p in _ID_SEPARATORS.split(raw) if p.strip()], False
    if type(raw) is list and all(type(item) is str for item in raw):  # the usual list of ids
        stripped = [item.strip() for item in raw]
        return [item for item in stripped if item], False
    if isinstance(raw, list):
        ids: list[str] = []
        invalid = False
        for item in raw:
            if isinstance(item, str):
                if item.strip():
                    ids.append(item.strip())
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                ids.append(label_text(item))
            elif item is not None:
                invalid = True
        return ids, invalid
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return [label_text(raw)], False
    return [], raw is not None


def normalize_labels(data: dict | None, event_name: str) -> Labels:
    """Split ``data`` into ids, transId, value and free labels."""
    if not data:
        return Labels([], None, None, [], [])
    flags: list[str] = []
    split = event_name not in UNSPLIT_ID_EVENTS
    if "ids" in data:
        ids, invalid = _id_items(data["ids"], split)
    elif ANDROID_ID_LABEL in data:
        ids, invalid = _id_items(data[ANDROID_ID_LABEL], False)
    else:
        ids, invalid = [], False
    if invalid:
        flags.append("ids:invalid")

    trans = data.get("transId")
    trans_id = None
    if type(trans) is str:
        trans_id = trans
    elif isinstance(trans, (int, float)) and not isinstance(trans, bool):
        trans_id = label_text(trans)
    elif trans is not None:
        flags.append("transId:invalid")

    value = None
    if data.get("value") is not None:
        value, flag = to_money(data["value"])
        if flag:
            flags.append(flag)

    labels = []
    blank = False
    keep_id = "ids" in data
    for key in sorted(data):
        if key in _CONSUMED and not (keep_id and key == ANDROID_ID_LABEL):
            continue
        if not key.strip():
            blank = True
            continue
        text = data[key]
        labels.append({"key": key, "value": text if type(text) is str else label_text(text)})
    if blank:
        flags.append("labels:blank_key")
    return Labels(ids, trans_id, value, labels, flags)
