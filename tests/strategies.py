"""Hypothesis strategies for lines a collector export may hold: valid envelopes, mutated (fields dropped,
retyped or added), in arrays, cut, with garbage, BOMs and CRs, or no JSON at all. tests/test_fuzz.py
runs them through the stages; tests/test_validation_rules.py checks the validation against pandera's own
on them."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.factory import BASE_MS, KEY
from transforms.core.records import compact_json

FIELDS = ("key", "tmpId", "eventId", "name", "url", "ua", "data", "clientId", "v", "b", "id", "timestamp")
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)

labels = st.dictionaries(
    st.sampled_from(["ids", "id", "transId", "value", "locale", "", " ", "a.b", "é"]) | st.text(max_size=5),
    st.one_of(json_values, st.lists(st.text(max_size=8), max_size=3),
              st.sampled_from(["SKU-1;SKU-2|SKU-3", "46.599998474121094", "1e400", "-0", " 12.5 "]),
              st.floats(min_value=-1e30, max_value=1e30)),
    max_size=4)

envelopes = st.fixed_dictionaries({  # mostly valid, so that every stage gets work
    "key": st.sampled_from([KEY] * 12 + [KEY.upper(), "zz", ""]),
    "tmpId": st.text(min_size=1, max_size=30),
    "eventId": st.text(alphabet="abcXYZ019-_", min_size=1, max_size=25),
    "name": st.sampled_from(["page_view", "purchase", "category_view", "brand_view", "add_cart"])
            | st.text(min_size=1, max_size=20),
    "url": st.sampled_from(["https://Shop.Example.com:443/p/1?q=1#top", "app://catalogue/product/SKU-1", "unknown",
                            "http://[::1]:80/x", "https://ünïcode.example/ä", "", "//x", "https://exa mple.com/"])
           | st.text(max_size=30),
    "ua": st.none() | st.text(max_size=20),
    "data": st.none() | labels,
    "clientId": st.none() | st.text(max_size=10),
    "v": st.sampled_from([1] * 12 + [1.0, 2, 0, 1.5]),
    "b": st.none() | st.text(max_size=5),
    "id": st.none() | st.text(max_size=5),
    "timestamp": st.one_of(
        *[st.integers(min_value=BASE_MS - 10**10, max_value=BASE_MS + 10**10)] * 4,  # ms
        st.integers(min_value=BASE_MS // 1000 - 10**7, max_value=BASE_MS // 1000 + 10**7),  # s
        st.floats(min_value=BASE_MS - 1e10, max_value=BASE_MS + 1e10),
        st.none() | st.sampled_from([BASE_MS * 1000, -1, 0, 2**70, 1e30, 1e17]),
        st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)),
})


@st.composite
def mutated_envelopes(draw) -> dict:
    """An envelope with 0 to 3 mutations: a field dropped, retyped, or an unknown one added."""
    env = dict(draw(envelopes))
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2, 3]))):
        action, name = draw(st.sampled_from(["drop", "retype", "add"])), draw(st.sampled_from(FIELDS))
        if action == "drop":
            env.pop(name, None)
        elif action == "retype":
            env[name] = draw(json_values)
        else:
            env[draw(st.text(max_size=6))] = draw(json_values)
    return env


def _dumps(value) -> bytes:
    return compact_json(value)  # like orjson.dumps, also for integers beyond 64 bits


@st.composite
def lines(draw) -> bytes:
    kind = draw(st.sampled_from(["envelope"] * 4 + ["array"] * 2 + ["mutated_bytes", "garbage", "scalar", "deep"]))
    if kind == "envelope":
        line = _dumps(draw(mutated_envelopes()))
    elif kind == "array":
        items = draw(st.lists(mutated_envelopes() | json_values, max_size=4))
        line = _dumps(items)
    elif kind == "mutated_bytes":
        line = _dumps(draw(mutated_envelopes()))
        at = draw(st.integers(min_value=0, max_value=len(line)))
        action = draw(st.sampled_from(["cut", "insert", "replace"]))
        garbage = draw(st.binary(min_size=1, max_size=4))
        if action == "cut":
            line = line[:at]
        elif action == "insert":
            line = line[:at] + garbage + line[at:]
        else:
            line = line[:at] + garbage + line[at + len(garbage):]
    elif kind == "garbage":
        line = draw(st.binary(max_size=40))
    elif kind == "scalar":
        line = _dumps(draw(json_scalars))
    else:
        depth = draw(st.integers(min_value=1, max_value=1100))
        line = _dumps(draw(mutated_envelopes()))[:-1] + b',"data":{"d":' + b"[" * depth + b"]" * depth + b"}}"
    if draw(st.booleans()):
        line = draw(st.sampled_from([b"\xef\xbb\xbf", b" ", b"\t"])) + line
    if draw(st.booleans()):
        line += draw(st.sampled_from([b"\r", b" ", b"\x00"]))
    return line
