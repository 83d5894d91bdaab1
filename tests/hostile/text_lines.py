"""Hostile cases about bytes and lines: broken JSON, invalid UTF-8, BOMs, line ends, blank lines, lines
over the limit, deep nesting, JSON that is not an object, a UTF-16 export."""

from __future__ import annotations

from tests.hostile.kit import BOM, KEY, MAX_LINE_BYTES, Expect, case, dumps, env, ndjson, with_raw


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]", leaf: bytes = b"") -> bytes:
    return opener * depth + leaf + closer * depth


@case("malformed_json.ndjson")
def malformed_json() -> tuple[bytes, Expect]:
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
def truncated_json() -> tuple[bytes, Expect]:
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
def invalid_utf8() -> tuple[bytes, Expect]:
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
def bom() -> tuple[bytes, Expect]:
    x = Expect("a UTF-8 BOM at the start of the file and at the start of a later line: tolerated; a BOM "
               "before broken JSON is still broken JSON; a line holding only a BOM is not blank")
    lines = [BOM + dumps(env("bo", 1)), BOM + dumps(env("bo", 2)), dumps(env("bo", 3)), BOM + b"{broken", BOM]
    for i in (1, 2, 3):
        x.good(f"bo-{i}")
    x.bad("parse:invalid_json")
    x.bad("parse:invalid_json")
    return ndjson(lines), x


@case("crlf.ndjson")
def crlf() -> tuple[bytes, Expect]:
    x = Expect("CRLF line ends, a CR-only blank line, a doubled CR, a last line with CR and no LF: all loaded")
    body = (dumps(env("cr", 1)) + b"\r\n" + dumps(env("cr", 2)) + b"\r\n" + b"\r\n"
            + dumps(env("cr", 3)) + b"\r\r\n" + dumps(env("cr", 4)) + b"\r")
    for i in (1, 2, 3, 4):
        x.good(f"cr-{i}")
    x.blank_lines = 1
    return body, x


@case("cr_only.ndjson")
def cr_only() -> tuple[bytes, Expect]:
    x = Expect("old-Mac CR-only line ends: the file is one line holding three envelopes, one dead letter "
               "(parse:invalid_json) whose raw payload keeps all three for a replay")
    body = b"\r".join(dumps(env("co", i)) for i in (1, 2, 3))
    x.bad("parse:invalid_json")
    return body, x


@case("blank_lines.ndjson")
def blank_lines() -> tuple[bytes, Expect]:
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
def whitespace_around() -> tuple[bytes, Expect]:
    x = Expect("JSON whitespace around an envelope is fine; a form feed before one is not JSON")
    lines = [b"   " + dumps(env("wa", 1)) + b"\t ", b"\t" + dumps([env("wa", 2)]) + b"  ",
             b"\x0c" + dumps(env("wa", 3))]
    x.good("wa-1")
    x.good("wa-2")
    x.bad("parse:invalid_json")
    return ndjson(lines), x


@case("only_blank_lines.ndjson")
def only_blank_lines() -> tuple[bytes, Expect]:
    x = Expect("a file of blank lines only")
    x.blank_lines = 4
    return b"\n\n \n\r\n", x


@case("huge_lines.ndjson")
def huge_lines() -> tuple[bytes, Expect]:
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


@case("deep_nesting_5000.ndjson")
def deep_nesting_5000() -> tuple[bytes, Expect]:
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
def deep_nesting_1000() -> tuple[bytes, Expect]:
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


@case("scalars.ndjson")
def scalars() -> tuple[bytes, Expect]:
    x = Expect("lines that are JSON but not objects: parse:not_an_object")
    lines = [b"1", b'"string"', b"true", b"null", b"-0", b"1e5", dumps(env("sc", 1))]
    for _ in range(6):
        x.bad("parse:not_an_object")
    x.good("sc-1")
    return ndjson(lines), x


@case("duplicate_keys.ndjson")
def duplicate_keys() -> tuple[bytes, Expect]:
    x = Expect("an object with the same key twice: the parser keeps the last value (eventId dk-b)")
    line = dumps(env("dk", 1, eventId="dk-a"))[:-1] + b',"eventId":"dk-b"}'
    x.good("dk-b")
    return ndjson([line]), x


@case("long_lines_kept_whole.ndjson")
def long_lines_kept_whole() -> tuple[bytes, Expect]:
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
def utf16_export() -> tuple[bytes, Expect]:
    x = Expect("an export saved as UTF-16 (Windows tools): one file problem saying what it is and how to "
               "convert it, not a dead letter per line; exit 4 (no usable record)", file_errors=True, exit_code=4)
    text = ndjson([dumps(env("u16", i)) for i in range(3)]).decode()
    return "\ufeff".encode("utf-16-le") + text.encode("utf-16-le"), x
