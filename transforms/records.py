"""What flows between the stages: batches of records from one source, dead letters, run context."""

from __future__ import annotations

import base64
import gc
import marshal
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson

PROCESSOR = "rlvt-bigquery-importer/0.1.0"


@contextmanager
def cyclic_gc_paused():
    """Pause Python's cyclic garbage collector while a stage works on a batch.

    A batch is tens of thousands of fresh dicts and lists (JSON records, labels): they trigger the
    collector over and over, and each full collection walks every live record: a 5× slowdown of the
    label loop, measured. The records hold no reference cycles (reference counting frees them), and
    the collector resumes between batches."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class ImportContext:
    """Facts of one import run that every stage stamps on its output."""

    run_id: str
    started_micros: int
    datasource_id: str | None = None
    processor: str = PROCESSOR


@dataclass
class LineBatch:
    """Undecoded lines of one line-oriented source (NDJSON), blank lines already counted out."""

    source_uri: str
    lines: list[bytes]
    line_numbers: list[int]


class _Marshalled(bytes):
    """Records of a ``RecordBatch`` in marshal format, inside its pickled state."""


@dataclass
class RecordBatch:
    """Parsed JSON values of one source, each with its raw bytes and origin."""

    source_uri: str
    records: list = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    line_numbers: list[int | None] = field(default_factory=list)
    indexes: list[int | None] = field(default_factory=list)
    frame: object = None
    """After validation: the polars wire frame of these records (typed envelope columns), so later
    stages take whole columns instead of walking the records again."""

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict:
        # Beam pickles batches (at least to estimate their size); pickle recurses per nesting level and
        # fails near 450 levels, while the JSON parser accepts 1024: the records travel as marshal
        # (2000 levels, every JSON value), unless a reader put in a value marshal does not take
        state = dict(self.__dict__)
        try:
            state["records"] = _Marshalled(marshal.dumps(self.records))
        except ValueError:
            pass
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state.get("records"), _Marshalled):
            state = {**state, "records": marshal.loads(state["records"])}
        self.__dict__.update(state)

    def append(self, record: object, raw: bytes, line: int | None, index: int | None) -> None:
        self.records.append(record)
        self.raws.append(raw)
        self.line_numbers.append(line)
        self.indexes.append(index)

    def subset(self, keep: list[int]) -> RecordBatch:
        return RecordBatch(
            self.source_uri,
            [self.records[i] for i in keep],
            [self.raws[i] for i in keep],
            [self.line_numbers[i] for i in keep],
            [self.indexes[i] for i in keep],
        )


class _Token(bytes):
    """Punctuation already serialized, on the stack of ``compact_json``."""


def compact_json(value: object, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON, as ``orjson.dumps(value, default=str)`` writes it, also where orjson
    refuses: nesting deeper than its 254 levels (its parser accepts 1024, so whatever parsed must be
    writable again), integers beyond 64 bits (written as their digits) and non-string keys."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except orjson.JSONEncodeError:
        pass
    out: list[bytes] = []
    stack: list = [value]
    while stack:  # iterative: no recursion limit either
        item = stack.pop()
        if type(item) is _Token:
            out.append(item)
        elif isinstance(item, dict):
            keys = sorted(item, key=str) if sort_keys else list(item)
            todo: list = []
            for i, k in enumerate(keys):
                todo += [_Token((b"," if i else b"") + orjson.dumps(str(k)) + b":"), item[k]]
            stack += [_Token(b"}"), *reversed(todo), _Token(b"{")]
        elif isinstance(item, (list, tuple)):
            todo = []
            for i, v in enumerate(item):
                todo += [_Token(b","), v] if i else [v]
            stack += [_Token(b"]"), *reversed(todo), _Token(b"[")]
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item).encode())
        else:
            out.append(orjson.dumps(item, default=str))
    return b"".join(out)


def excerpt(value: object) -> str | None:
    """A short printable excerpt of an offending value, for a reason."""
    if value is None:
        return None
    text = value if isinstance(value, str) else compact_json(value).decode()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def reason(code: str, message: str, field_name: str | None = None, value: object = None) -> dict:
    return {"code": code, "field": field_name, "message": message, "value": excerpt(value)}


def dead_letter(
    ctx: ImportContext,
    stage: str,
    reasons: list[dict],
    raw: bytes,
    source_uri: str,
    line: int | None,
    index: int | None = None,
    *,
    truncated: bool = False,
    raw_size: int | None = None,
) -> dict:
    """One rejected record, in the shape of ``schemas.envelope.DEAD_LETTER_COLUMNS``."""
    try:
        text = raw.decode("utf-8")
        exact = not truncated
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        exact = False
    return {
        "run_id": ctx.run_id,
        "processor": ctx.processor,
        "stage": stage,
        "reasons": reasons,
        "raw_payload": text,
        "raw_payload_base64": None if exact else base64.b64encode(raw).decode("ascii"),
        "raw_bytes": raw_size if raw_size is not None else len(raw),
        "source_uri": source_uri,
        "source_line": line,
        "source_index": index,
        "source_message_id": None,
        "source_attributes": None,
        "rejected_at": ctx.started_micros,
    }
