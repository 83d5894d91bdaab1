"""The reference importer's normalize stage: URLs and labels, as ``transforms/stages/`` does them.

URLs on the distinct values only, with pyarrow.compute regexes for the simple shapes and
``transforms.stages.urls.normalize_url`` for the rest; labels with a specialised per-row loop that
follows ``transforms/stages/labels.py`` (money via its ``to_money``, cached per distinct value) and
builds the Arrow list columns from flat buffers. Part of ``bench/reference_import.py``.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from yardstick import NO_SCHEME, OTHER_URL, WEB_URL

from schemas.arrow import ROW_SCHEMA
from schemas.envelope import ANDROID_ID_LABEL, RESERVED_LABELS, UNSPLIT_ID_EVENTS
from transforms.stages.labels import label_text, to_money
from transforms.stages.urls import WEB_SCHEMES, normalize_url

# ---------------------------------------------------------------------------------------------- URLs
_DEFAULT_PORTS = [f"{s}:{p}" for s, p in WEB_SCHEMES.items()]


def normalize_url_column(urls: pa.Array) -> tuple[pa.Array, int, int]:
    """``normalize_url`` over a column: regexes on the distinct values, Python for the odd ones.

    Returns (normalized, distinct values, distinct values that needed Python)."""
    encoded = pc.dictionary_encode(urls)
    values = encoded.dictionary
    cut = pc.replace_substring_regex(values, r"(?s)[?#].*", "", max_replacements=1)
    web = pc.extract_regex(cut, WEB_URL)
    scheme = pc.utf8_lower(web.field(0))
    is_web = pc.and_(web.is_valid(), pc.is_in(scheme, pa.array(list(WEB_SCHEMES))))
    host = pc.utf8_rtrim(pc.utf8_lower(web.field(1)), characters=".")
    port = web.field(2)
    port = pc.if_else(pc.is_in(pc.binary_join_element_wise(scheme, port, ""), pa.array(_DEFAULT_PORTS)), "", port)
    path = pc.if_else(pc.equal(web.field(3), ""), "/", web.field(3))
    web_out = pc.binary_join_element_wise(scheme, "://", host, port, path, "")

    other = pc.extract_regex(cut, OTHER_URL)
    other_scheme = pc.utf8_lower(other.field(0))
    # a `@` may be user info, which normalize_url drops: such URLs go to Python
    no_user_info = pc.invert(pc.match_substring(cut, "@"))
    is_other = pc.and_(pc.and_(other.is_valid(), pc.invert(pc.is_in(other_scheme, pa.array(list(WEB_SCHEMES))))),
                       no_user_info)
    other_out = pc.binary_join_element_wise(other_scheme, ":", other.field(1), "")

    is_plain = pc.and_(pc.match_substring_regex(cut, NO_SCHEME), no_user_info)
    out = pc.if_else(is_web, web_out, pc.if_else(is_other, other_out, pc.if_else(is_plain, cut, pa.nulls(len(cut),
                                                                                                        pa.string()))))
    todo = np.flatnonzero(out.is_null().to_numpy(zero_copy_only=False))
    if todo.size:
        pylist = out.to_pylist()
        raw = values.to_pylist()
        for i in todo.tolist():
            pylist[i] = normalize_url(raw[i])
        out = pa.array(pylist, pa.string())
    return out.take(encoded.indices), len(values), int(todo.size)


# ---------------------------------------------------------------------------------------------- labels
_CONSUMED = frozenset(RESERVED_LABELS) | {ANDROID_ID_LABEL}
_SEPARATORS = re.compile(r"[;,|]")
_money_cache: dict = {}
_text_cache: dict = {}


def _money(value):
    key = (type(value), value)
    try:
        return _money_cache[key]
    except KeyError:
        result = _money_cache[key] = to_money(value)
        return result
    except TypeError:  # unhashable (a list or dict): not a number
        return to_money(value)


def _text(value):
    t = type(value)
    if t is str or value is None:
        return value
    if t is dict or t is list or (t is float and value == 0):  # 0.0 and -0.0 hash alike
        return label_text(value)
    key = (t, value)
    try:
        return _text_cache[key]
    except KeyError:
        result = _text_cache[key] = label_text(value)
        return result


def _id_items(raw, split: bool) -> tuple[list[str], bool]:
    """As ``transforms.stages.labels._id_items``."""
    t = type(raw)
    if t is str:
        if split and _SEPARATORS.search(raw):
            return [s for s in (x.strip() for x in _SEPARATORS.split(raw)) if s], False
        s = raw.strip()
        return ([s] if s else []), False
    if t is list:
        ids: list[str] = []
        invalid = False
        for item in raw:
            ti = type(item)
            if ti is str:
                s = item.strip()
                if s:
                    ids.append(s)
            elif ti is int or ti is float:
                ids.append(_text(item))
            elif item is not None:
                invalid = True
        return ids, invalid
    if t is int or t is float:
        return [_text(raw)], False
    return [], raw is not None


def normalize_labels(datas: list, names: list) -> tuple[dict[str, pa.Array], Counter]:
    """ids / transId / value / labels / quality_flags columns, as ``transforms.stages.labels.normalize_labels``."""
    ids_flat: list[str] = []
    ids_off = [0]
    trans: list = []
    values: list = []
    keys_flat: list[str] = []
    vals_flat: list = []
    lab_off = [0]
    flags_flat: list[str] = []
    flags_off = [0]
    ids_end = ids_off.append
    lab_end = lab_off.append
    flags_end = flags_off.append
    trans_add = trans.append
    value_add = values.append
    for data, name in zip(datas, names):
        if not data:
            ids_end(len(ids_flat))
            trans_add(None)
            value_add(None)
            lab_end(len(keys_flat))
            flags_end(len(flags_flat))
            continue
        if "ids" in data:
            ids, invalid = _id_items(data["ids"], name not in UNSPLIT_ID_EVENTS)
            ids_flat += ids
            if invalid:
                flags_flat.append("ids:invalid")
        elif ANDROID_ID_LABEL in data:
            ids, invalid = _id_items(data[ANDROID_ID_LABEL], False)
            ids_flat += ids
            if invalid:
                flags_flat.append("ids:invalid")
        ids_end(len(ids_flat))

        t = data.get("transId")
        tt = type(t)
        if tt is str or t is None:
            trans_add(t)
        elif (tt is int or tt is float):
            trans_add(_text(t))
        else:
            trans_add(None)
            flags_flat.append("transId:invalid")

        v = data.get("value")
        if v is None:
            value_add(None)
        else:
            amount, problem = _money(v)
            value_add(amount)
            if problem:
                flags_flat.append(problem)

        keys = [k for k in data if k not in _CONSUMED or (k == ANDROID_ID_LABEL and "ids" in data)]
        if keys:
            if len(keys) > 1:
                keys.sort()
            blank = False
            for k in keys:
                if not k.strip():
                    blank = True
                    continue
                keys_flat.append(k)
                vals_flat.append(_text(data[k]))
            if blank:
                flags_flat.append("labels:blank_key")
        lab_end(len(keys_flat))
        flags_end(len(flags_flat))

    label_type = ROW_SCHEMA.field("labels").type
    struct_type = label_type.value_type
    labels = pa.ListArray.from_arrays(
        pa.array(lab_off, pa.int32()),
        pa.StructArray.from_arrays([pa.array(keys_flat, pa.string()), pa.array(vals_flat, pa.string())],
                                   fields=list(struct_type)),
        type=label_type,
    )
    flag_counts = Counter(flags_flat)
    return {
        "ids": pa.ListArray.from_arrays(pa.array(ids_off, pa.int32()), pa.array(ids_flat, pa.string())),
        "transId": pa.array(trans, pa.string()),
        "value": pa.array(values, ROW_SCHEMA.field("value").type),
        "labels": labels,
        "quality_flags": pa.ListArray.from_arrays(pa.array(flags_off, pa.int32()), pa.array(flags_flat, pa.string())),
    }, flag_counts
