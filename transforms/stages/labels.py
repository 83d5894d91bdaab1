"""Label (`data`) normalization: one event's `data` object into typed columns and quality flags.

Never raises and never rejects: a label that cannot be used is nulled or dropped and the problem is
returned as a quality flag (codes in ``schemas.envelope.LABEL_ISSUES``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from itertools import repeat
from typing import NamedTuple

import pyarrow as pa

from schemas.envelope import ANDROID_ID_LABEL, RESERVED_LABELS, UNSPLIT_ID_EVENTS
from transforms.core.records import compact_json

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


class LabelBuffers:
    """The label columns of many events as flat lists and offsets: Arrow list arrays are built from
    them in one step, without a Python list or dict per event (a measured 2× on the stage)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.ids_ends: list[int] = [0]
        self.trans_ids: list[str | None] = []
        self.values: list[Decimal | None] = []
        self.keys: list[str] = []
        self.texts: list[str | None] = []
        self.labels_ends: list[int] = [0]
        self.flags: list[str] = []
        self.flags_ends: list[int] = [0]

    def add(self, datas: Iterable, names: Iterable[str], filled: Iterable[bool] | None = None) -> None:
        """Normalize the ``data`` of each event (``filled``: its timestamp was filled in)."""
        ids, trans_ids, values, keys, texts, flags = (
            self.ids, self.trans_ids, self.values, self.keys, self.texts, self.flags)
        end_ids, add_trans, add_value = self.ids_ends.append, trans_ids.append, values.append
        end_labels, end_flags = self.labels_ends.append, self.flags_ends.append
        add_key, add_text, add_flag = keys.append, texts.append, flags.append
        for data, name, fill in zip(datas, names, filled if filled is not None else repeat(False)):
            if not data:  # `{}` or absent: the most common labels of all
                end_ids(len(ids))
                add_trans(None)
                add_value(None)
                end_labels(len(keys))
                if fill:
                    add_flag("timestamp:filled")
                end_flags(len(flags))
                continue
            keep_id = "ids" in data
            if keep_id:
                invalid = _add_ids(ids, data["ids"], name not in UNSPLIT_ID_EVENTS)
            elif ANDROID_ID_LABEL in data:
                invalid = _add_ids(ids, data[ANDROID_ID_LABEL], False)
            else:
                invalid = False
            end_ids(len(ids))
            if invalid:
                add_flag("ids:invalid")

            trans = data.get("transId")
            if trans is None or type(trans) is str:
                add_trans(trans or None)  # an empty transId is no transaction: null
            elif isinstance(trans, (int, float)) and not isinstance(trans, bool):
                add_trans(label_text(trans))
            else:
                add_trans(None)
                add_flag("transId:invalid")

            value = data.get("value")
            if value is None:
                add_value(None)
            else:
                amount, flag = to_money(value)
                add_value(amount)
                if flag:
                    add_flag(flag)

            blank = False
            for key in sorted(data) if len(data) > 1 else data:
                if key in _CONSUMED and not (keep_id and key == ANDROID_ID_LABEL):
                    continue
                if not key.strip():
                    blank = True
                    continue
                text = data[key]
                add_key(key)
                add_text(text if type(text) is str else label_text(text))
            end_labels(len(keys))
            if blank:
                add_flag("labels:blank_key")
            if fill:
                add_flag("timestamp:filled")
            end_flags(len(flags))

    def event(self, i: int) -> Labels:
        """The labels of the ``i``-th event added."""
        a, b = self.labels_ends[i], self.labels_ends[i + 1]
        return Labels(
            self.ids[self.ids_ends[i]:self.ids_ends[i + 1]], self.trans_ids[i], self.values[i],
            [{"key": k, "value": v} for k, v in zip(self.keys[a:b], self.texts[a:b])],
            self.flags[self.flags_ends[i]:self.flags_ends[i + 1]],
        )

    def arrays(self, types: dict[str, pa.DataType]) -> dict[str, pa.Array]:
        """``ids``, ``transId``, ``value``, ``labels`` and ``quality_flags`` as Arrow arrays of ``types``."""
        label_type = types["labels"]
        return {
            "ids": pa.ListArray.from_arrays(pa.array(self.ids_ends, pa.int32()), pa.array(self.ids, pa.string()),
                                            type=types["ids"]),
            "transId": pa.array(self.trans_ids, types["transId"]),
            "value": pa.array(self.values, types["value"]),
            "labels": pa.ListArray.from_arrays(
                pa.array(self.labels_ends, pa.int32()),
                pa.StructArray.from_arrays([pa.array(self.keys, pa.string()), pa.array(self.texts, pa.string())],
                                           fields=list(label_type.value_type)),
                type=label_type),
            "quality_flags": pa.ListArray.from_arrays(
                pa.array(self.flags_ends, pa.int32()), pa.array(self.flags, pa.string()),
                type=types["quality_flags"]),
        }


def _add_ids(out: list[str], raw: object, split: bool) -> bool:
    """Add the ids of a list or a string to ``out``; returns whether some item was invalid."""
    if type(raw) is str:
        if not split or not _HAS_SEPARATOR(raw):
            item = raw.strip()
            if item:
                out.append(item)
            return False
        out += [p.strip() for p in _ID_SEPARATORS.split(raw) if p.strip()]
        return False
    if type(raw) is list and all(type(item) is str for item in raw):  # the usual list of ids
        out += [item for item in map(str.strip, raw) if item]
        return False
    if isinstance(raw, list):
        invalid = False
        for item in raw:
            if isinstance(item, str):
                if item.strip():
                    out.append(item.strip())
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append(label_text(item))
            elif item is not None:
                invalid = True
        return invalid
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        out.append(label_text(raw))
        return False
    return raw is not None


def normalize_labels(data: dict | None, event_name: str) -> Labels:
    """Split one event's ``data`` into ids, transId, value and free labels."""
    buffers = LabelBuffers()
    buffers.add([data], [event_name])
    return buffers.event(0)
