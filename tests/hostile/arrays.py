"""Hostile cases about arrays: NDJSON lines holding arrays, .json documents (mixed, empty, cut, unterminated,
with broken elements)."""

from __future__ import annotations

import orjson

from tests.hostile.kit import KEY, Expect, case, dumps, env, ndjson, with_raw


@case("arrays_mixed.ndjson")
def arrays_mixed() -> tuple[bytes, Expect]:
    x = Expect("arrays of envelopes mixing good ones, non-objects, an invalid envelope, copies; an empty "
               "array; arrays of arrays: every element counted on its own")
    g = {i: env("am", i) for i in range(1, 7)}
    lines = [
        dumps([g[1], 42, "x", None, [], {}, env("am", 90, key="zz"), g[1]]),
        b"[]",
        b"[[]]",
        dumps([g[3]]),
        dumps([g[4], g[4]]),
        dumps([[g[5]]]),
        b"  " + dumps([g[6]]) + b"  ",
    ]
    x.good("am-1")
    for _ in range(4):
        x.bad("parse:not_an_object")
    x.bad("key:missing", "tmpId:missing", "eventId:missing", "name:missing", "url:missing", "v:missing")
    x.bad("key:pattern")
    x.exact()
    x.bad("parse:empty_array")
    x.bad("parse:not_an_object")
    x.good("am-3")
    x.good("am-4")
    x.exact()
    x.bad("parse:not_an_object")
    x.good("am-6")
    return ndjson(lines), x


@case("json_array_mixed.json")
def json_array_mixed() -> tuple[bytes, Expect]:
    x = Expect("a .json document: one array mixing an envelope, scalars, an empty object and a nested "
               "array: one record per element")
    body = orjson.dumps([env("ja", 1), 1, "x", None, {}, [env("ja", 2)]], option=orjson.OPT_INDENT_2)
    x.good("ja-1")
    for _ in range(3):
        x.bad("parse:not_an_object")
    x.bad("key:missing", "tmpId:missing", "eventId:missing", "name:missing", "url:missing", "v:missing")
    x.bad("parse:not_an_object")
    return body, x


@case("json_empty_array.json")
def json_empty_array() -> tuple[bytes, Expect]:
    x = Expect("a .json document holding []: one dead letter parse:empty_array")
    x.bad("parse:empty_array")
    return b"[]\n", x


@case("json_array_truncated.json")
def json_array_truncated() -> tuple[bytes, Expect]:
    x = Expect("a pretty-printed .json array cut in its second envelope: read element by element, the "
               "first loads, the cut one is one dead letter parse:invalid_json (the file is not reported "
               "as broken: nothing says it was)")
    full = orjson.dumps([env("jt", 1), env("jt", 2), env("jt", 3)], option=orjson.OPT_INDENT_2)
    cut = full[: full.index(b'"jt-2"') + 3]
    x.good("jt-1")
    x.bad("parse:invalid_json")
    return cut, x


@case("json_array_one_nan.json")
def json_array_one_nan() -> tuple[bytes, Expect]:
    x = Expect("a .json array of 200 envelopes, one holding NaN, one Infinity, one invalid UTF-8, one a "
               "trailing comma: each broken element is one dead letter, every other element loads")
    elements = [dumps(env("jn", i)) for i in range(200)]
    elements[17] = with_raw(env("jn", 17), "v", b"NaN")
    elements[18] = with_raw(env("jn", 18), "timestamp", b"Infinity")
    elements[19] = dumps(env("jn", 19)).replace(b"fr-FR", b"fr\xff")
    for i in range(200):
        if i in (17, 18):
            x.bad("parse:invalid_json")
        elif i == 19:
            x.bad("read:invalid_utf8")
        else:
            x.good(f"jn-{i}")
    body = b"[\n" + b",\n".join(elements) + b",\n]\n"
    return body, x


@case("ndjson_array_bad_element.ndjson")
def ndjson_array_bad_element() -> tuple[bytes, Expect]:
    x = Expect("NDJSON lines holding arrays with a broken element (NaN, a bare word): the other elements load")
    lines = [b"[" + dumps(env("nb", 1)) + b",NaN," + dumps(env("nb", 2)) + b"]",
             b"[" + dumps(env("nb", 3)) + b", undefined ]", b"[1,2"]
    x.good("nb-1")
    x.bad("parse:invalid_json")
    x.good("nb-2")
    x.good("nb-3")
    x.bad("parse:invalid_json")
    x.bad("parse:not_an_object")
    x.bad("parse:not_an_object")
    return ndjson(lines), x


@case("json_array_unterminated.json")
def json_array_unterminated() -> tuple[bytes, Expect]:
    x = Expect("a .json array with no closing bracket, cut inside its third element: the two complete "
               "elements load, the cut one is parse:invalid_json saying the array was cut off")
    body = b"[" + dumps(env("ju", 1)) + b",\n" + dumps(env("ju", 2)) + b',\n{"key":"' + KEY.encode()
    x.good("ju-1")
    x.good("ju-2")
    x.bad("parse:invalid_json")
    return body, x
