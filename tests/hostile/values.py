"""Hostile cases about what strings and labels hold: odd label keys and values, SQL and HTML, control
characters, huge numbers, credentials in URLs."""

from __future__ import annotations

from tests.hostile.kit import Expect, case, dumps, env, ndjson, with_raw

SQL_HTML = [
    "'; DROP TABLE events; --",
    '" OR 1=1; --',
    "` UNION SELECT * FROM `local-project.x.y` --",
    "@lo @hi $1 :name %(run)s",
    '<script>alert("x")</script>',
    "</td><img src=x onerror=alert(1)>",
    "&lt;b&gt; &amp; &apos;",
    "{{7*7}} ${7*7} %s %n",
    "Robert'); DELETE FROM events WHERE ('1'='1",
    "\\' \\\" \\\\ \\n",
    "/* comment */ -- line\nSELECT 1",
    "NULL",
]
"""SQL- and HTML-looking strings (no `?` or `#`: a URL keeps everything before those)."""

CONTROL_STRINGS = ["\x00", "a\x00b", "\x1f\x7f", "\u2028\u2029", "\u202eRTL", "tab\there", "e\u0301 ü 日本 🙂"]


@case("labels_odd.ndjson")
def labels_odd() -> tuple[bytes, Expect]:
    x = Expect("labels with odd keys (empty, blank, unicode, dots, `$`, newlines, 5000 characters, NUL) and "
               "odd values: blank keys dropped and flagged, the rest kept verbatim, sorted by key; label "
               "problems flag the row, never reject it")
    long_key = "k" * 5000
    data = [
        {"": "empty", " ": "space", "\t": "tab", "ok": "1"},
        {"é": 1, "日本語": True, "🙂": None, "a.b": 3.5, "a.b.c": [1, {"b": 2, "a": 1}], "$x": {"y": "z"},
         "key with spaces": "v", "UPPER": "u", "new\nline": "nl"},
        {long_key: "long key", "v": "x" * 5000},
        {"ids": "a;b|c,d", "transId": 12, "value": "12.345", "id": "android"},
        {"value": "abc"},
        {"value": 1e30},
        {"transId": {"x": 1}},
        {"ids": [1, None, {"x": 1}, "a"]},
        {"\u0000": "nul key", "a\u0000b": "\u0000"},
    ]
    flags = [["labels:blank_key"], [], [], [], ["value:not_a_number"], ["value:out_of_range"],
             ["transId:invalid"], ["ids:invalid"], []]
    lines = []
    for i, (d, f) in enumerate(zip(data, flags), start=1):
        lines.append(dumps(env("lo", i, data=d)))
        x.good(f"lo-{i}", *f)
    x.verbatim["lo-1"] = {"labels": [{"key": "ok", "value": "1"}]}
    x.verbatim["lo-2"] = {"labels": sorted(
        [{"key": "é", "value": "1"}, {"key": "日本語", "value": "true"}, {"key": "🙂", "value": None},
         {"key": "a.b", "value": "3.5"}, {"key": "a.b.c", "value": '[1,{"a":1,"b":2}]'},
         {"key": "$x", "value": '{"y":"z"}'}, {"key": "key with spaces", "value": "v"},
         {"key": "UPPER", "value": "u"}, {"key": "new\nline", "value": "nl"}], key=lambda kv: kv["key"])}
    x.verbatim["lo-3"] = {"labels": [{"key": long_key, "value": "long key"}, {"key": "v", "value": "x" * 5000}]}
    x.verbatim["lo-4"] = {"ids": ["a", "b", "c", "d"], "transId": "12", "value": "12.35",
                          "labels": [{"key": "id", "value": "android"}]}
    x.verbatim["lo-8"] = {"ids": ["1", "a"]}
    x.verbatim["lo-9"] = {"labels": [{"key": "\u0000", "value": "nul key"}, {"key": "a\u0000b", "value": "\u0000"}]}
    return ndjson(lines), x


@case("sql_html_strings.ndjson")
def sql_html_strings() -> tuple[bytes, Expect]:
    x = Expect("SQL- and HTML-looking strings in every string field, label keys and values, ids and "
               "transId: loaded, and stored verbatim")
    lines = []
    for i, p in enumerate(SQL_HTML, start=1):
        event_id = f"sq-{i}-{p}"
        e = env("sq", i, eventId=event_id, tmpId=p, name=p, url="https://shop.example.com/" + p, ua=p,
                clientId=p, b=p, id=p, data={"label": p, p: "as key", "ids": [p], "transId": p})
        lines.append(dumps(e))
        x.good(event_id)
        x.verbatim[event_id] = {
            # URL parsers (WHATWG, Python's urlsplit) delete tabs and line breaks from URLs
            "tmpId": p, "name": p, "url": "https://shop.example.com/" + p.replace("\n", ""), "ua": p, "clientId": p,
            "b": p, "id": p, "ids": [p], "transId": p,
            "labels": sorted([{"key": "label", "value": p}, {"key": p, "value": "as key"}], key=lambda kv: kv["key"]),
        }
    return ndjson(lines), x


@case("control_characters.ndjson")
def control_characters() -> tuple[bytes, Expect]:
    x = Expect("control characters (NUL, US, DEL), line/paragraph separators, bidi override, combining "
               "marks and emoji in string fields: loaded and stored verbatim")
    lines = []
    for i, s in enumerate(CONTROL_STRINGS, start=1):
        e = env("cc", i, ua=s, clientId=s, b=s, data={"label": s})
        lines.append(dumps(e))
        x.good(f"cc-{i}")
        x.verbatim[f"cc-{i}"] = {"ua": s, "clientId": s, "b": s, "labels": [{"key": "label", "value": s}]}
    return ndjson(lines), x


@case("big_numbers_in_labels.ndjson")
def big_numbers_in_labels() -> tuple[bytes, Expect]:
    x = Expect("huge and tiny numbers as labels and values: rows kept; a value that does not fit NUMERIC "
               "is nulled and flagged")
    lines = [
        with_raw(env("bn", 1), "data", b'{"n":1180591620717411303424,"f":1e308,"neg":-0.0,"tiny":5e-324}'),
        with_raw(env("bn", 2), "data", b'{"value":99999999999999999999999999999}'),
        with_raw(env("bn", 3), "data", b'{"value":9007199254740993}'),
        with_raw(env("bn", 4), "data", b'{"value":-0.004999}'),
    ]
    x.good("bn-1")
    x.good("bn-2", "value:out_of_range")
    x.good("bn-3")
    x.good("bn-4")
    x.verbatim["bn-3"] = {"value": "9007199254740993.00"}
    x.verbatim["bn-4"] = {"value": "0.00"}
    return ndjson(lines), x


@case("userinfo_urls.ndjson")
def userinfo_urls() -> tuple[bytes, Expect]:
    x = Expect("credentials in every URL shape (bad port, malformed IPv6, `//`, app deep link, special scheme "
               "without slashes, control character first): never stored; hosts mapped by UTS #46")
    urls = [("https://jane:s3cret@host:abc/x", "https://host:abc/x"),
            ("https://jane:s3cret@host:99999/x", "https://host:99999/x"),
            ("http://jane:s3cret@[::1/x", "http://[::1/x"),
            ("//jane:s3cret@host/x", "//host/x"),
            ("app://jane:s3cret@catalogue/p/1", "app://catalogue/p/1"),
            ("https:jane:s3cret@host/x", "https:host/x"),
            ("\u0001app://jane:s3cret@host/x", "app://host/x"),
            ("https://faß.de/x", "https://xn--fa-hia.de/x")]
    lines = []
    for i, (url, want) in enumerate(urls, start=1):
        lines.append(dumps(env("ui", i, url=url)))
        x.good(f"ui-{i}")
        x.verbatim[f"ui-{i}"] = {"url": want}
    return ndjson(lines), x
