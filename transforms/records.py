"""What flows between the stages: batches of records from one source, dead letters, run context."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import orjson

PROCESSOR = "rlvt-bigquery-importer/0.1.0"
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


@dataclass
class RecordBatch:
    """Parsed JSON values of one source, each with its raw bytes and origin."""

    source_uri: str
    records: list = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    line_numbers: list[int | None] = field(default_factory=list)
    indexes: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

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


def excerpt(value: object) -> str | None:
    """A short printable excerpt of an offending value, for a reason."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value, default=str).decode()
        except orjson.JSONEncodeError:  # an integer beyond 64 bits (a CSV cell): orjson refuses it
            text = str(value)
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
