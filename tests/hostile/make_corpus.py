"""The hostile corpus: one small export file per hostile case, each with the outcome it must have.

    python tests/hostile/make_corpus.py OUT_DIR     # writes the files and OUT_DIR/manifest.json

Deterministic (no clock, no randomness). Every case declares, for an import of its file alone with
``--max_line_bytes 16384`` (``MAX_LINE_BYTES``) and the default options otherwise:
``read``, ``loaded``, ``duplicate_exact``, ``duplicate_conflicting``, ``dead_lettered``,
``dead_letter_reasons`` (records per reason code), ``blank_lines``, ``label_issues``,
``file_errors`` (whether the file must be reported as not read to its end) and ``exit_code``;
``event_ids`` (the eventIds it loads), and for some cases ``timestamps`` (eventId → event time in
epoch microseconds) and ``verbatim`` (eventId → column → the exact value the events table must hold).

The outcomes are written from the protocol (``../shared/protocol/PROTOCOL.md``) and the README's
rules, by hand, not from the importer's schema: a change of behaviour shows up as a failing case.
EventIds are unique across the corpus, so the whole corpus can be imported in one run.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

KEY = "61a095fdd8d2e20011544831"
BASE_MS = 1_763_000_000_000  # 2025-11-13T02:13:20Z
MAX_LINE_BYTES = 16_384
ABSENT = ...
BOM = b"\xef\xbb\xbf"

# The envelope as the protocol defines it: wire types accepted, and whether the field is required.
STRING, NUMBER, BOOLEAN, NULL, OBJECT, ARRAY = "string", "number", "boolean", "null", "object", "array"
FIELDS = {  # field: (accepted wire types, required)
    "key": ({STRING}, True), "tmpId": ({STRING}, True), "eventId": ({STRING}, True),
    "name": ({STRING}, True), "url": ({STRING}, True), "ua": ({STRING, NULL}, False),
    "data": ({OBJECT, NULL}, False), "clientId": ({STRING, NULL}, False), "v": ({NUMBER}, True),
    "b": ({STRING, NULL}, False), "id": ({STRING, NULL}, False), "timestamp": ({NUMBER, NULL}, False),
}
SAMPLE_OF_TYPE = {STRING: "1", NUMBER: 1, BOOLEAN: True, NULL: None, OBJECT: {"x": 1}, ARRAY: [1]}

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


def env(tag: str, i: int, **overrides) -> dict:
    """A valid envelope, unique by (tag, i); ``field=ABSENT`` leaves a field out."""
    e = {"key": KEY, "tmpId": f"tmp-{tag}-{i}", "eventId": f"{tag}-{i}", "name": "page_view",
         "url": f"https://shop.example.com/{tag}/{i}", "ua": "Mozilla/5.0", "data": {"locale": "fr-FR"},
         "clientId": None, "v": 1, "timestamp": BASE_MS + i * 1_001}
    e.update(overrides)
    return {k: v for k, v in e.items() if v is not ABSENT}


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


def with_raw(e: dict, name: str, raw_json: bytes) -> bytes:
    """The envelope's line with ``name`` set to a raw JSON text (for what orjson cannot write)."""
    e = {**e, name: "\u0000PLACEHOLDER"}
    return dumps(e).replace(b'"\\u0000PLACEHOLDER"', raw_json)


@dataclass
class Expect:
    """What an import of one file must report (and load)."""

    about: str
    read: int = 0
    loaded: int = 0
    duplicate_exact: int = 0
    duplicate_conflicting: int = 0
    dead_lettered: int = 0
    blank_lines: int = 0
    dead_letter_reasons: Counter = field(default_factory=Counter)
    label_issues: Counter = field(default_factory=Counter)
    file_errors: bool = False
    exit_code: int = 0
    event_ids: list[str] = field(default_factory=list)
    timestamps: dict[str, int] = field(default_factory=dict)
    verbatim: dict[str, dict] = field(default_factory=dict)

    def good(self, event_id: str, *flags: str) -> None:
        self.read += 1
        self.loaded += 1
        self.event_ids.append(event_id)
        self.label_issues.update(set(flags))

    def bad(self, *codes: str) -> None:
        """One record dead-lettered with these reason codes."""
        self.read += 1
        self.dead_lettered += 1
        self.dead_letter_reasons.update(set(codes))

    def exact(self, n: int = 1) -> None:
        self.read += n
        self.duplicate_exact += n

    def conflicting(self, n: int = 1) -> None:
        self.read += n
        self.duplicate_conflicting += n

    def as_dict(self) -> dict:
        return {
            "about": self.about, "read": self.read, "loaded": self.loaded,
            "duplicate_exact": self.duplicate_exact, "duplicate_conflicting": self.duplicate_conflicting,
            "dead_lettered": self.dead_lettered, "blank_lines": self.blank_lines,
            "dead_letter_reasons": dict(sorted(self.dead_letter_reasons.items())),
            "label_issues": dict(sorted(self.label_issues.items())),
            "file_errors": self.file_errors,
            # a file whose every record is rejected makes the run exit 4 (pipeline.launcher.unusable_files)
            "exit_code": 4 if self.read and self.dead_lettered == self.read else self.exit_code,
            "event_ids": sorted(self.event_ids), "timestamps": self.timestamps, "verbatim": self.verbatim,
        }


@dataclass(frozen=True)
class Case:
    name: str  # the file name
    build: Callable[[], tuple[bytes, Expect]]


CASES: list[Case] = []


def case(name: str):
    def register(fn):
        CASES.append(Case(name, fn))
        return fn
    return register


def ndjson(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


@case("malformed_json.ndjson")
def _malformed() -> tuple[bytes, Expect]:
    x = Expect("malformed JSON of every kind between two good lines: each one dead letter parse:invalid_json "
               "(a lone surrogate escape: parse:invalid_unicode)")
    broken = [b"{not json", b'{"key": }', b'{"a":1}{"b":2}', b"{'single': 'quotes'}", b'{"a":1,}', b"NaN",
              b"Infinity", b"undefined", b'{"a":"raw\ttab"}', b'{"a":1} trailing', b'{"a":"\\ud800"}',
              with_raw(env("mj", 9), "timestamp", b"1e400"), b"\x00", b'{"a":1}\x00', b'{"a":[1,2}', b"\x0c{}",
              b'{"eventId": "mj-x", "key": "' + KEY.encode() + b'"', b"]", b"[", b"}"]
    lines = [dumps(env("mj", 1))]
    x.good("mj-1")
    for raw in broken:
        lines.append(raw)
        x.bad("parse:invalid_unicode" if b"\\ud800" in raw else "parse:invalid_json")
    lines.append(dumps(env("mj", 2)))
    x.good("mj-2")
    return ndjson(lines), x


@case("truncated_json.ndjson")
def _truncated_json() -> tuple[bytes, Expect]:
    x = Expect("one good line, then envelopes cut at several points (mid-key, mid-escape, before the "
               "last brace), the last one without a newline: each parse:invalid_json")
    lines = [dumps(env("tj", 1))]
    x.good("tj-1")
    # orjson writes é as UTF-8; escape it by hand so that every cut is ASCII (a cut in a UTF-8
    # sequence would be read:invalid_utf8, another case)
    full = dumps(env("tj", 2, ua="caf\u00e9")).replace("caf\u00e9".encode(), b"caf\\u00e9")
    for cut in (len(full) // 4, len(full) // 2, len(full) - 1, full.index(b"\\u00e9") + 4):
        lines.append(full[:cut])
        x.bad("parse:invalid_json")
    lines.append(full[: len(full) // 3])
    x.bad("parse:invalid_json")
    return b"\n".join(lines), x  # no newline after the last, cut-off line


@case("invalid_utf8.ndjson")
def _invalid_utf8() -> tuple[bytes, Expect]:
    x = Expect("bytes that are not UTF-8 (alone, inside strings of otherwise valid envelopes, overlong, "
               "encoded surrogates, cut multi-byte, Latin-1): each read:invalid_utf8")
    good = dumps(env("iu", 1))
    lines = [good]
    x.good("iu-1")
    bad = [b"\xff", b"\xfe\xff", good.replace(b"Mozilla/5.0", b"Mozilla\xff5.0").replace(b"iu-1", b"iu-2"),
           good.replace(b"fr-FR", b"\xc0\xaf").replace(b"iu-1", b"iu-3"),
           good.replace(b"fr-FR", b"\xed\xa0\x80").replace(b"iu-1", b"iu-4"),
           good.replace(b"fr-FR", b"fr\xe2\x82").replace(b"iu-1", b"iu-5"),
           good.replace(b"fr-FR", b"caf\xe9").replace(b"iu-1", b"iu-6"), b"{\xff"]
    for raw in bad:
        lines.append(raw)
        x.bad("read:invalid_utf8")
    return ndjson(lines), x


@case("bom.ndjson")
def _bom() -> tuple[bytes, Expect]:
    x = Expect("a UTF-8 BOM at the start of the file and at the start of a later line: tolerated; a BOM "
               "before broken JSON is still broken JSON; a line holding only a BOM is not blank")
    lines = [BOM + dumps(env("bo", 1)), BOM + dumps(env("bo", 2)), dumps(env("bo", 3)), BOM + b"{broken", BOM]
    for i in (1, 2, 3):
        x.good(f"bo-{i}")
    x.bad("parse:invalid_json")
    x.bad("parse:invalid_json")
    return ndjson(lines), x


@case("crlf.ndjson")
def _crlf() -> tuple[bytes, Expect]:
    x = Expect("CRLF line ends, a CR-only blank line, a doubled CR, a last line with CR and no LF: all loaded")
    body = (dumps(env("cr", 1)) + b"\r\n" + dumps(env("cr", 2)) + b"\r\n" + b"\r\n"
            + dumps(env("cr", 3)) + b"\r\r\n" + dumps(env("cr", 4)) + b"\r")
    for i in (1, 2, 3, 4):
        x.good(f"cr-{i}")
    x.blank_lines = 1
    return body, x


@case("cr_only.ndjson")
def _cr_only() -> tuple[bytes, Expect]:
    x = Expect("old-Mac CR-only line ends: the file is one line holding three envelopes, one dead letter "
               "(parse:invalid_json) whose raw payload keeps all three for a replay")
    body = b"\r".join(dumps(env("co", i)) for i in (1, 2, 3))
    x.bad("parse:invalid_json")
    return body, x


@case("blank_lines.ndjson")
def _blank_lines() -> tuple[bytes, Expect]:
    x = Expect("empty and whitespace-only lines (space, tab, VT, FF, CR) everywhere: counted apart, not "
               "records; a no-break-space line is not JSON whitespace: a dead letter")
    lines = [b"", b"", dumps(env("bl", 1)), b"   ", b"\t", b"\x0b", b"\x0c", dumps(env("bl", 2)), b"", b" \r",
             b"\xc2\xa0", b"", b""]
    x.good("bl-1")
    x.good("bl-2")
    x.bad("parse:invalid_json")
    x.blank_lines = 10
    return ndjson(lines), x


@case("whitespace_around.ndjson")
def _whitespace_around() -> tuple[bytes, Expect]:
    x = Expect("JSON whitespace around an envelope is fine; a form feed before one is not JSON")
    lines = [b"   " + dumps(env("wa", 1)) + b"\t ", b"\t" + dumps([env("wa", 2)]) + b"  ",
             b"\x0c" + dumps(env("wa", 3))]
    x.good("wa-1")
    x.good("wa-2")
    x.bad("parse:invalid_json")
    return ndjson(lines), x


def _truncated_gzip_expect(name: str, cut: bytes, lines_total: int) -> Expect:
    x = Expect(f"{name}: gzip of {lines_total} valid lines cut in the middle: the lines before the break "
               f"are accounted for, the file is reported, exit 1", file_errors=True, exit_code=1)
    decoded = zlib.decompressobj(wbits=31).decompress(cut)
    *complete, partial = decoded.split(b"\n")
    for raw in complete:
        x.good(orjson.loads(raw)["eventId"])
    if partial:
        try:
            x.good(orjson.loads(partial)["eventId"])
        except orjson.JSONDecodeError:
            x.bad("parse:invalid_json")
    return x


@case("truncated.ndjson.gz")
def _truncated_gz() -> tuple[bytes, Expect]:
    lines = [dumps(env("tg", i)) for i in range(300)]
    data = gzip.compress(ndjson(lines), mtime=0)
    cut = data[: len(data) // 2]
    return cut, _truncated_gzip_expect("truncated.ndjson.gz", cut, 300)


@case("gzip_header_only.ndjson.gz")
def _gzip_header_only() -> tuple[bytes, Expect]:
    x = Expect("only the first 10 bytes of a gzip file: nothing read, the file is reported, exit 1",
               file_errors=True, exit_code=1)
    return gzip.compress(ndjson([dumps(env("gh", 1))]), mtime=0)[:10], x


@case("gzip_trailing_garbage.ndjson.gz")
def _gzip_trailing_garbage() -> tuple[bytes, Expect]:
    x = Expect("a complete gzip member followed by bytes that are not gzip: every line is read, the file "
               "is reported (something follows that could not be read), exit 1", file_errors=True, exit_code=1)
    data = gzip.compress(ndjson([dumps(env("gt", i)) for i in range(3)]), mtime=0)
    for i in range(3):
        x.good(f"gt-{i}")
    return data + b"this is not gzip", x


@case("zero_bytes.ndjson")
def _zero() -> tuple[bytes, Expect]:
    return b"", Expect("an empty file: nothing read, nothing wrong")


@case("zero_bytes.ndjson.gz")
def _zero_gz() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .gz file (not even a gzip header): read as empty")


@case("zero_bytes.json")
def _zero_json() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .json file: nothing read")


@case("zero_bytes.csv")
def _zero_csv() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .csv file (no header): nothing read")


@case("only_blank_lines.ndjson")
def _only_blank() -> tuple[bytes, Expect]:
    x = Expect("a file of blank lines only")
    x.blank_lines = 4
    return b"\n\n \n\r\n", x


@case("huge_lines.ndjson")
def _huge_lines() -> tuple[bytes, Expect]:
    x = Expect(f"lines above --max_line_bytes ({MAX_LINE_BYTES}): read:line_too_long (payload cut, the "
               f"read goes on); a line of exactly the limit is loaded")
    def sized(i: int, size: int) -> bytes:
        base = dumps(env("hl", i, ua=""))
        return dumps(env("hl", i, ua="A" * (size - len(base))))
    exact = sized(2, MAX_LINE_BYTES)
    assert len(exact) == MAX_LINE_BYTES
    lines = [dumps(env("hl", 1)), exact, sized(3, MAX_LINE_BYTES + 1), sized(4, 20_000), dumps(env("hl", 5)),
             b"x" * 17_000]
    x.good("hl-1")
    x.good("hl-2")
    x.bad("read:line_too_long")
    x.bad("read:line_too_long")
    x.good("hl-5")
    x.bad("read:line_too_long")
    return b"\n".join(lines), x  # the last, over-long line has no newline


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]", leaf: bytes = b"") -> bytes:
    return opener * depth + leaf + closer * depth


@case("deep_nesting_5000.ndjson")
def _deep_5000() -> tuple[bytes, Expect]:
    x = Expect("data nested 5000 (arrays) and 2500 (objects) levels deep: beyond the JSON parser's limit, "
               "parse:invalid_json, no crash")
    lines = [with_raw(env("dn", 1), "data", b'{"a":' + nested(5000) + b"}"),
             with_raw(env("dn", 2), "data", nested(2500, b'{"a":', b"}", b"1")),
             dumps(env("dn", 3))]
    x.bad("parse:invalid_json")
    x.bad("parse:invalid_json")
    x.good("dn-3")
    return ndjson(lines), x


@case("deep_nesting_1000.ndjson")
def _deep_1000() -> tuple[bytes, Expect]:
    x = Expect("nesting the parser accepts but a JSON writer may refuse (300 to 1000 levels): a deep free "
               "label is kept as compact JSON text, a deep array element is a record, a deep wrong-typed "
               "field is a dead letter with its reason, deep ids are flagged; no crash")
    verbatim_label = nested(1000).decode()
    lines = [
        with_raw(env("dd", 1), "data", b'{"deep":' + nested(1000) + b"}"),
        b"[" + with_raw(env("dd", 2), "data", b'{"deep":' + nested(600, b'{"a":', b"}", b"1") + b"}") + b"]",
        with_raw(env("dd", 3), "key", nested(1000)),
        with_raw(env("dd", 4), "data", b'{"ids":' + nested(300) + b"}"),
        with_raw(env("dd", 5), "data", nested(300, b'{"a":', b"}", b"null")),
    ]
    x.good("dd-1")
    x.good("dd-2")
    x.bad("key:type")
    x.good("dd-4", "ids:invalid")
    x.good("dd-5")
    x.verbatim["dd-1"] = {"labels": [{"key": "deep", "value": verbatim_label}]}
    return ndjson(lines), x


@case("arrays_mixed.ndjson")
def _arrays_mixed() -> tuple[bytes, Expect]:
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


@case("wrong_types.ndjson")
def _wrong_types() -> tuple[bytes, Expect]:
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
def _missing_fields() -> tuple[bytes, Expect]:
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
def _ids_and_lengths() -> tuple[bytes, Expect]:
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
def _version() -> tuple[bytes, Expect]:
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
def _timestamps() -> tuple[bytes, Expect]:
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


@case("labels_odd.ndjson")
def _labels_odd() -> tuple[bytes, Expect]:
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
def _sql_html() -> tuple[bytes, Expect]:
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
def _controls() -> tuple[bytes, Expect]:
    x = Expect("control characters (NUL, US, DEL), line/paragraph separators, bidi override, combining "
               "marks and emoji in string fields: loaded and stored verbatim")
    lines = []
    for i, s in enumerate(CONTROL_STRINGS, start=1):
        e = env("cc", i, ua=s, clientId=s, b=s, data={"label": s})
        lines.append(dumps(e))
        x.good(f"cc-{i}")
        x.verbatim[f"cc-{i}"] = {"ua": s, "clientId": s, "b": s, "labels": [{"key": "label", "value": s}]}
    return ndjson(lines), x


@case("scalars.ndjson")
def _scalars() -> tuple[bytes, Expect]:
    x = Expect("lines that are JSON but not objects: parse:not_an_object")
    lines = [b"1", b'"string"', b"true", b"null", b"-0", b"1e5", dumps(env("sc", 1))]
    for _ in range(6):
        x.bad("parse:not_an_object")
    x.good("sc-1")
    return ndjson(lines), x


@case("duplicate_keys.ndjson")
def _duplicate_keys() -> tuple[bytes, Expect]:
    x = Expect("an object with the same key twice: the parser keeps the last value (eventId dk-b)")
    line = dumps(env("dk", 1, eventId="dk-a"))[:-1] + b',"eventId":"dk-b"}'
    x.good("dk-b")
    return ndjson([line]), x


@case("duplicates.ndjson")
def _duplicates() -> tuple[bytes, Expect]:
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


@case("big_numbers_in_labels.ndjson")
def _big_numbers() -> tuple[bytes, Expect]:
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


@case("json_array_mixed.json")
def _json_array_mixed() -> tuple[bytes, Expect]:
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
def _json_empty_array() -> tuple[bytes, Expect]:
    x = Expect("a .json document holding []: one dead letter parse:empty_array")
    x.bad("parse:empty_array")
    return b"[]\n", x


@case("json_array_truncated.json")
def _json_array_truncated() -> tuple[bytes, Expect]:
    x = Expect("a pretty-printed .json array cut in its second envelope: read element by element, the "
               "first loads, the cut one is one dead letter parse:invalid_json (the file is not reported "
               "as broken: nothing says it was)")
    full = orjson.dumps([env("jt", 1), env("jt", 2), env("jt", 3)], option=orjson.OPT_INDENT_2)
    cut = full[: full.index(b'"jt-2"') + 3]
    x.good("jt-1")
    x.bad("parse:invalid_json")
    return cut, x


@case("json_array_one_nan.json")
def _json_array_one_nan() -> tuple[bytes, Expect]:
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
def _ndjson_array_bad_element() -> tuple[bytes, Expect]:
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


@case("userinfo_urls.ndjson")
def _userinfo_urls() -> tuple[bytes, Expect]:
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


@case("empty_optionals.ndjson")
def _empty_optionals() -> tuple[bytes, Expect]:
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


@case("csv_huge_cell.csv")
def _csv_huge_cell() -> tuple[bytes, Expect]:
    x = Expect("CSV cells longer than the csv module's 131,072 characters and than --max_line_bytes: the row "
               "is read:line_too_long, the rows after it load; an unclosed quote swallows the rest up to the "
               "limit, one dead letter")
    header = "key,tmpId,eventId,name,url,v,timestamp,data"
    def row(i: int, data: str = "") -> str:
        return f"{KEY},tmp-ch-{i},ch-{i},page_view,https://shop.example.com/ch/{i},1,{BASE_MS},{data}"
    rows = [row(1), row(2, '"{""a"":""' + "x" * 200_000 + '""}"'), row(3, '"{""a"":""' + "y" * 10_000 + '""}"'),
            row(4), row(5, '"' + "z" * 140_000 + '"'), row(6)]
    x.good("ch-1")
    x.bad("read:line_too_long")
    x.good("ch-3")
    x.good("ch-4")
    x.bad("read:line_too_long")
    x.good("ch-6")
    return ("\n".join([header, *rows]) + "\n").encode(), x


@case("export[1] (copy).ndjson")
def _glob_name() -> tuple[bytes, Expect]:
    x = Expect("a file name with glob characters, given by name: read as that file")
    x.good("gn-1")
    return ndjson([dumps(env("gn", 1))]), x


@case("zero_bytes.ndjson.bz2")
def _zero_bz2() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .bz2 file: read as empty, like an empty .gz")


@case("zero_bytes.parquet")
def _zero_parquet() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .parquet file: nothing read, like an empty .csv")


@case("parquet_typed_columns.parquet")
def _parquet_typed() -> tuple[bytes, Expect]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = Expect("Parquet columns of other physical types: `data` as list<int64> (data:type for that row), "
               "TIMESTAMP in nanoseconds (pandas' default; exact to the µs), `key` as binary, `v` as int8")
    n = 3
    table = pa.table({
        "key": pa.array([KEY.encode()] * n, pa.binary()), "tmpId": [f"tmp-pt-{i}" for i in range(n)],
        "eventId": [f"pt-{i}" for i in range(n)], "name": ["page_view"] * n,
        "url": [f"https://shop.example.com/pt/{i}" for i in range(n)], "v": pa.array([1] * n, pa.int8()),
        "timestamp": pa.array([(BASE_MS * 1000 + 123) * 1000 + 999] * n, pa.int64()).cast(pa.timestamp("ns")),
        "data": pa.array([None, [1, 2], []], pa.list_(pa.int64())),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink)
    x.good("pt-0")
    x.bad("data:type")
    x.bad("data:type")
    x.timestamps["pt-0"] = BASE_MS * 1000 + 123
    return sink.getvalue(), x


@case("hostile.csv")
def _csv() -> tuple[bytes, Expect]:
    x = Expect("CSV rows with too many and too few cells (parse:invalid_csv), `data` that is not JSON "
               "(data:type), a timestamp that is not a number (timestamp:type), v as 1.0, a quoted cell "
               "with a newline and SQL in it, a blank row")
    header = "key,tmpId,eventId,name,url,ua,data,clientId,v,timestamp,b,id"
    def row(i: int, ua: str = "Mozilla", data: str = '"{""a"":""1""}"', v: str = "1",
            ts: str = str(BASE_MS)) -> str:
        return f"{KEY},tmp-cv-{i},cv-{i},page_view,https://shop.example.com/cv/{i},{ua},{data},,{v},{ts},,"
    rows = [row(1), row(2) + ",extra", row(3).rsplit(",", 3)[0], row(4, data="{broken"), row(5, ts="abc"),
            row(6, v="1.0"), row(7, ua="\"multi\nline '; DROP TABLE x; --\""), ",,,,,,,,,,,"]
    x.good("cv-1")
    x.bad("parse:invalid_csv")
    x.bad("parse:invalid_csv")
    x.bad("data:type")
    x.bad("timestamp:type")
    x.good("cv-6")
    x.good("cv-7")
    x.blank_lines = 1
    x.verbatim["cv-7"] = {"ua": "multi\nline '; DROP TABLE x; --"}
    return ("\r\n".join([header, *rows]) + "\r\n").encode(), x


@case("parquet_map_int_keys.parquet")
def _parquet_map() -> tuple[bytes, Expect]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = Expect("a Parquet file whose `data` is a MAP with integer keys: label keys become their text")
    envs = [env("pm", 1), env("pm", 2)]
    columns = {k: [e[k] for e in envs] for k in envs[0] if k not in ("data", "clientId")}
    table = pa.table({**columns, "data": pa.array([[(1, "a"), (2, "b")], []],
                                                  pa.map_(pa.int64(), pa.string()))})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    x.good("pm-1")
    x.good("pm-2")
    x.verbatim["pm-1"] = {"labels": [{"key": "1", "value": "a"}, {"key": "2", "value": "b"}]}
    return sink.getvalue(), x


@case("bigquery_refusals.ndjson")
def _bigquery_refusals() -> tuple[bytes, Expect]:
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


@case("parquet_non_finite.parquet")
def _parquet_non_finite() -> tuple[bytes, Expect]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = Expect("Parquet float timestamps NaN, +Infinity, -Infinity (which JSON cannot hold): "
               "timestamp:not_finite each (NaN used to read as a missing timestamp); the finite one loads")
    ids = ["nf-1", "nf-2", "nf-3", "nf-4"]
    table = pa.table({"key": [KEY] * 4, "tmpId": ids, "eventId": ids, "name": ["page_view"] * 4,
                      "url": [f"https://shop.example.com/nf/{i}" for i in ids], "v": [1.0] * 4,
                      "timestamp": [float("nan"), float("inf"), float("-inf"), float(BASE_MS)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    for _ in range(3):
        x.bad("timestamp:not_finite")
    x.good("nf-4")
    return sink.getvalue(), x


@case("json_array_unterminated.json")
def _json_array_unterminated() -> tuple[bytes, Expect]:
    x = Expect("a .json array with no closing bracket, cut inside its third element: the two complete "
               "elements load, the cut one is parse:invalid_json saying the array was cut off")
    body = b"[" + dumps(env("ju", 1)) + b",\n" + dumps(env("ju", 2)) + b',\n{"key":"' + KEY.encode()
    x.good("ju-1")
    x.good("ju-2")
    x.bad("parse:invalid_json")
    return body, x


@case("long_lines_kept_whole.ndjson")
def _long_lines_kept_whole() -> tuple[bytes, Expect]:
    x = Expect("lines over --max_line_bytes (an envelope three times the limit, one with invalid UTF-8, one "
               "array of envelopes): each is one read:line_too_long whose payload is stored whole beside the "
               "dead letters (raw_payload_uri), so a replay with a larger limit can load it")
    big = dumps(env("lk", 1, data={"blob": "y" * (3 * MAX_LINE_BYTES)}))
    bad_utf8 = dumps(env("lk", 2, data={"blob": "z" * MAX_LINE_BYTES})).replace(b"zzz", b"z\xffz", 1)
    array = b"[" + b",".join(dumps(env("lk", i)) for i in range(3, 300)) + b"]"
    assert len(array) > MAX_LINE_BYTES
    for _ in range(3):
        x.bad("read:line_too_long")
    x.good("lk-300")
    return ndjson([big, bad_utf8, array, dumps(env("lk", 300))]), x


@case("utf16_export.ndjson")
def _utf16_export() -> tuple[bytes, Expect]:
    x = Expect("an export saved as UTF-16 (Windows tools): one file problem saying what it is and how to "
               "convert it, not a dead letter per line; exit 4 (no usable record)", file_errors=True, exit_code=4)
    text = ndjson([dumps(env("u16", i)) for i in range(3)]).decode()
    return "\ufeff".encode("utf-16-le") + text.encode("utf-16-le"), x


@case("gzip_without_extension.ndjson")
def _gzip_without_extension() -> tuple[bytes, Expect]:
    x = Expect("a gzip file named .ndjson: one file problem that says to name it .gz, not a dead letter per "
               "line of compressed bytes; exit 4", file_errors=True, exit_code=4)
    return gzip.compress(ndjson([dumps(env("gz", i)) for i in range(3)]), mtime=0), x


@case("csv_duplicate_header.csv")
def _csv_duplicate_header() -> tuple[bytes, Expect]:
    x = Expect("a CSV header naming eventId twice: which column is the id? The file is reported, not read by "
               "a silent guess; exit 1", file_errors=True, exit_code=1)
    return (f"key,tmpId,eventId,eventId,name,url,v,timestamp\n{KEY},t,dh-1,dh-2,page_view,https://x/,1,"
            f"{BASE_MS}\n").encode(), x


def build_corpus(folder: Path) -> dict[str, dict]:
    """Write every case's file into ``folder`` and ``manifest.json``; returns {file name: expected}."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for c in CASES:
        data, expect = c.build()
        (folder / c.name).write_bytes(data)
        manifest[c.name] = expect.as_dict()
    (folder / "manifest.json").write_bytes(orjson.dumps(
        {"max_line_bytes": MAX_LINE_BYTES, "cases": manifest}, option=orjson.OPT_INDENT_2))
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile/make_corpus.py OUT_DIR")
    built = build_corpus(Path(sys.argv[1]))
    print(f"{len(built)} files, {sum(e['read'] for e in built.values())} records in {sys.argv[1]}")
