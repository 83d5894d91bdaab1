"""Hostile cases about the envelope's fields: wrong types, missing fields, ids and lengths, versions,
timestamps, empty optionals, values BigQuery would refuse, duplicates."""

from __future__ import annotations

from tests.hostile.kit import ABSENT, FIELDS, KEY, SAMPLE_OF_TYPE, Expect, case, dumps, env, ndjson, with_raw


@case("wrong_types.ndjson")
def wrong_types() -> tuple[bytes, Expect]:
    x = Expect("every envelope field with every wire type the protocol does not accept for it, one line "
               "each: one dead letter `<field>:type` per line, and only that reason")
    lines = []
    n = 0
    for name, (accepted, _required) in FIELDS.items():
        for wire, sample in SAMPLE_OF_TYPE.items():
            if wire in accepted:
                continue
            n += 1
            lines.append(dumps(env("wt", n, **{name: sample})))
            x.bad(f"{name}:type")
    return ndjson(lines), x


@case("missing_fields.ndjson")
def missing_fields() -> tuple[bytes, Expect]:
    x = Expect("each required field absent (`<field>:missing`); every optional field absent (loaded); no "
               "timestamp (timestamp:missing under the default reject policy); `{}` and an id alone")
    lines = []
    for i, (name, (_, required)) in enumerate(FIELDS.items(), start=1):
        if required:
            lines.append(dumps(env("mf", i, **{name: ABSENT})))
            x.bad(f"{name}:missing")
    lines.append(dumps(env("mf", 50, ua=ABSENT, data=ABSENT, clientId=ABSENT, b=ABSENT, id=ABSENT)))
    x.good("mf-50")
    lines.append(dumps(env("mf", 51, timestamp=ABSENT)))
    x.bad("timestamp:missing")
    lines.append(dumps(env("mf", 52, timestamp=None)))
    x.bad("timestamp:missing")
    lines.append(b"{}")
    x.bad("key:missing", "tmpId:missing", "eventId:missing", "name:missing", "url:missing", "v:missing")
    lines.append(b'{"eventId":"mf-53"}')
    x.bad("key:missing", "tmpId:missing", "name:missing", "url:missing", "v:missing")
    return ndjson(lines), x


@case("ids_and_lengths.ndjson")
def ids_and_lengths() -> tuple[bytes, Expect]:
    x = Expect("empty, over-long and odd ids, names and keys: `<field>:empty` / `:too_long` / `key:pattern`; "
               "limits are in characters (256 two-byte characters pass); a record breaking three rules "
               "gets three reasons")
    rows = [
        (dict(eventId=""), ["eventId:empty"]),
        (dict(tmpId=""), ["tmpId:empty"]),
        (dict(name=""), ["name:empty"]),
        (dict(eventId="e" * 257), ["eventId:too_long"]),
        (dict(tmpId="t" * 257), ["tmpId:too_long"]),
        (dict(name="n" * 129), ["name:too_long"]),
        (dict(key=KEY.upper()), ["key:pattern"]),
        (dict(key=KEY[:-1]), ["key:pattern"]),
        (dict(key=KEY + "\n"), ["key:pattern"]),
        (dict(key=""), ["key:pattern"]),
        (dict(key=" " + KEY), ["key:pattern"]),
        (dict(eventId="", key="zz", v=2), ["eventId:empty", "key:pattern", "v:unsupported"]),
    ]
    lines = []
    for i, (overrides, codes) in enumerate(rows, start=1):
        lines.append(dumps(env("il", i, **overrides)))
        x.bad(*codes)
    lines.append(dumps(env("il", 50, eventId=" ")))  # whitespace alone is no id
    x.bad("eventId:blank")
    accepted = {
        "il-256-" + "e" * 249: dict(),
        "\u00e9" * 256: dict(),
        " il-spaced ": dict(),  # spaces around an id are kept: only whitespace alone is refused
        "il-name128": dict(name="n" * 128),
        "il-tmp256": dict(tmpId="t" * 256),
        "il-empty-url": dict(url=""),
    }
    for i, (event_id, overrides) in enumerate(accepted.items(), start=100):
        lines.append(dumps(env("il", i, eventId=event_id, **overrides)))
        x.good(event_id)
    return ndjson(lines), x


@case("version.ndjson")
def version() -> tuple[bytes, Expect]:
    x = Expect("`v` other than 1: v:unsupported; not a number: v:type; 1.0 is 1")
    cases = [(b"2", "v:unsupported"), (b"0", "v:unsupported"), (b"-1", "v:unsupported"), (b"1.5", "v:unsupported"),
             (b"1.0000000000000002", "v:unsupported"), (b"1180591620717411303424", "v:unsupported"),
             (b'"1"', "v:type"), (b"true", "v:type"), (b"null", "v:type"), (b"[1]", "v:type"),
             (b"1.0", None), (b"1e0", None), (b"1e400", "parse:invalid_json")]
    lines = []
    for i, (raw, code) in enumerate(cases, start=1):
        lines.append(with_raw(env("vv", i), "v", raw))
        if code:
            x.bad(code)
        else:
            x.good(f"vv-{i}")
    return ndjson(lines), x


@case("timestamps.ndjson")
def timestamps() -> tuple[bytes, Expect]:
    x = Expect("timestamps negative, zero, before 2000, far future, as strings, floats, huge ints (1e30, "
               "2**64, 2**70, int64 bounds), booleans, objects: out_of_range / type / missing; valid "
               "seconds, milliseconds, microseconds and fractional ones keep their exact time")
    out = "timestamp:out_of_range"
    cases = [
        (b"-1", out), (b"-1763000000000", out), (b"0", out), (b"-0.0", out), (b"946684799", out),
        (b"4102444800000", out), (b"32503680000", out), (b"1e17", out), (b"1e30", out), (b"1e-300", out),
        (b"18446744073709551616", out), (b"1180591620717411303424", out), (b"9223372036854775807", out),
        (b"-9223372036854775809", out),
        (b'"1763000000000"', "timestamp:type"), (b"true", "timestamp:type"), (b'{"ms":1}', "timestamp:type"),
        (b"[1763000000000]", "timestamp:type"), (b"null", "timestamp:missing"),
        (b"946684800", 946_684_800_000_000), (b"1763000000", 1_763_000_000_000_000),
        (b"1763000000.5", 1_763_000_000_500_000), (b"1763000000123", 1_763_000_000_123_000),
        (b"1763000000123.0", 1_763_000_000_123_000), (b"1763000000123456", 1_763_000_000_123_456),
        (b"1.763000000123e12", 1_763_000_000_123_000),
    ]
    lines = []
    for i, (raw, outcome) in enumerate(cases, start=1):
        lines.append(with_raw(env("ts", i), "timestamp", raw))
        if isinstance(outcome, str):
            x.bad(outcome)
        else:
            x.good(f"ts-{i}")
            x.timestamps[f"ts-{i}"] = outcome
    return ndjson(lines), x


@case("duplicates.ndjson")
def duplicates() -> tuple[bytes, Expect]:
    x = Expect("same eventId several times: retries (exact), conflicting content (url, ua, time), copies "
               "that only differ before normalization (label order, URL query, null vs absent clientId)")
    X, Y, Z, Q, W, U, N = (env("du", i) for i in range(1, 8))
    lines = [
        dumps(X), dumps(X), dumps({**X, "url": "https://other.example/"}),
        dumps({**Y, "timestamp": Y["timestamp"] + 5}), dumps(Y),
        dumps({**Z, "data": {"a": 1, "b": 2}}), dumps({**Z, "data": {"b": 2, "a": 1}}),
        dumps({**Q, "url": Q["url"] + "?utm_source=x#top"}), dumps(Q),
        dumps([W, W]),
        dumps({**U, "ua": "A"}), dumps({**U, "ua": "B"}),
        dumps(N), dumps({k: v for k, v in N.items() if k != "clientId"}),
    ]
    for e in (X, Y, Z, Q, W, U, N):
        x.good(e["eventId"])
    x.exact(5)  # X's retry, Z, Q, W, N
    x.conflicting(3)  # X's other url, Y's later time, U's other ua
    x.timestamps[Y["eventId"]] = Y["timestamp"] * 1000  # the earliest version wins
    x.verbatim[X["eventId"]] = {"url": X["url"]}
    x.verbatim[U["eventId"]] = {"ua": "A"}
    return ndjson(lines), x


@case("empty_optionals.ndjson")
def empty_optionals() -> tuple[bytes, Expect]:
    x = Expect("empty clientId, ua, b, id and transId: stored as null; whitespace-only eventId and tmpId: "
               "dead letters `<field>:blank`")
    lines = [dumps(env("eo", 1, clientId="", ua="", b="", id="", data={"transId": ""})),
             dumps(env("eo", 2, clientId=" ", data={"transId": "T"})),
             dumps(env("eo", 3, eventId="   ")), dumps(env("eo", 4, tmpId="\t\u3000"))]
    x.good("eo-1")
    x.good("eo-2")
    x.bad("eventId:blank")
    x.bad("tmpId:blank")
    x.verbatim["eo-1"] = {"clientId": None, "ua": None, "b": None, "id": None, "transId": None}
    x.verbatim["eo-2"] = {"clientId": " ", "transId": "T"}
    return ndjson(lines), x


@case("bigquery_refusals.ndjson")
def bigquery_refusals() -> tuple[bytes, Expect]:
    x = Expect("values BigQuery (or the emulator) would refuse, each caught before the load: an eventId holding "
               "NUL (eventId:nul: the emulator's MERGE failed on it, for every later import too), a lone "
               "surrogate escape (parse:invalid_unicode), v of 2^63 (v:unsupported), a time in the year 10000 "
               "(timestamp:out_of_range); nulls inside ids dropped, a NUMERIC overflow nulled, NUL elsewhere kept")
    lines = [dumps(env("br", 1, eventId="br-1\u0000x")),
             dumps(env("br", 2))[:-1] + b',"b":"\\ud800"}',
             with_raw(env("br", 3), "v", b"9223372036854775808"),
             dumps(env("br", 4, timestamp=253_402_300_800_000)),
             dumps(env("br", 5, data={"ids": ["a", None, None]})),
             dumps(env("br", 6, data={"value": "1e30"})),
             dumps(env("br", 7, clientId="c\u0000", tmpId="t\u0000\u001f"))]
    x.bad("eventId:nul")
    x.bad("parse:invalid_unicode")
    x.bad("v:unsupported")
    x.bad("timestamp:out_of_range")
    x.good("br-5")  # null ids are no ids: dropped without a flag
    x.good("br-6", "value:out_of_range")
    x.good("br-7")
    x.verbatim["br-5"] = {"ids": ["a"]}
    x.verbatim["br-7"] = {"clientId": "c\u0000", "tmpId": "t\u0000\u001f"}
    return ndjson(lines), x
