"""What every hostile case is built from: valid envelopes (``env``), raw JSON where orjson cannot write it
(``with_raw``), the outcome a file must have (``Expect``), and ``case``, which names a case by its file.

The outcomes are written from the protocol (``../shared/protocol/PROTOCOL.md``) and the importer's
rules (docs/design.md), by hand, not from the importer's schema: a change of behaviour shows up as a failing case."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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


def case(name: str) -> Callable[[Callable[[], tuple[bytes, Expect]]], Case]:
    """``@case("file name")`` over a function that returns the file's bytes and its ``Expect``: the case."""
    def named(build: Callable[[], tuple[bytes, Expect]]) -> Case:
        return Case(name, build)
    return named


def ndjson(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"

