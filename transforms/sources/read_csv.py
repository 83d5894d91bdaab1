"""Read stage, CSV: each row one record; a row too long or that the CSV reader refuses is a dead letter
and the file reads on; line numbers are those of a row's first line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import orjson

from schemas.envelope import PARSE_REASONS, READ_REASONS
from transforms.core.payloads import MAX_STORED_BYTES, store_whole
from transforms.core.records import ImportContext, RecordBatch, dead_letter, reason
from transforms.core.settings import ReadLimits
from transforms.sources.files import ReadTask, open_source
from transforms.sources.read_types import READ_ERRORS, Count, FileError, duplicated_fields

CSV_NUMBER_FIELDS = ("v", "timestamp")


def _csv_value(name: str, text: str) -> object:
    if name == "data":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    if name in CSV_NUMBER_FIELDS:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return text


class _PhysicalLines:
    """The text lines a ``csv.reader`` consumes, kept until the row they make is taken: a row's exact
    text (for a row the reader refuses) and the number of its first line."""

    def __init__(self, text) -> None:
        self._text = text
        self.pending: list[str] = []
        self.pending_chars = 0
        self.consumed = 0  # lines handed over before the pending ones
        self.whole: str | None = None  # the whole text of the last row taken, when it was cut

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            raise StopIteration
        self.pending.append(line)
        self.pending_chars += len(line)
        return line

    def take(self, limit: int) -> tuple[str, int, int]:
        """(the pending text cut to ``limit`` characters, its full length, its first line number)."""
        self.whole = "".join(self.pending) if self.pending_chars > limit else None  # for a row cut here
        text = self.whole[:limit] if self.whole is not None else "".join(self.pending)
        first, size = self.consumed + 1, self.pending_chars
        self.consumed += len(self.pending)
        self.pending, self.pending_chars = [], 0
        return text, size, first


def _csv_too_long(ctx: ImportContext, uri: str, lines: _PhysicalLines, text: str, size: int, line: int,
                  limits: ReadLimits) -> dict:
    stored = None
    if limits.payload_dir and lines.whole is not None and size <= MAX_STORED_BYTES:  # whole in memory: stored
        stored = store_whole(limits.payload_dir, ctx.run_id, lines.whole.encode("utf-8", "surrogateescape"))
    kept = "payload cut to the limit here, kept whole in raw_payload_uri" if stored else "payload cut to the limit"
    message = f"{READ_REASONS['read:line_too_long']} ({size} > {limits.max_line_bytes} characters); {kept}."
    dead = dead_letter(ctx, "read", [reason("read:line_too_long", message)],
                       text.encode("utf-8", "surrogateescape"), uri, line, truncated=True, raw_size=size)
    if stored:
        dead["raw_payload_uri"] = stored
    return dead


def read_csv(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """CSV with a header row named like the envelope fields; an empty cell means absent.

    Each row is a unit of its own: a row longer than --max_line_bytes (a huge cell) is a dead letter
    ``read:line_too_long``, a row the CSV reader refuses is ``parse:invalid_csv``, and the rows after
    either are read. A row's line number is that of its first line (a quoted cell may span several)."""
    # the csv module's cell limit is process-wide (131,072 characters by default): raise it to the line
    # limit, so a long cell is the row's problem, measured below, not an error that ends the file
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_line_bytes + 1))
    with open_source(task.uri, task.compression) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
        lines = _PhysicalLines(text)
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return
        twice = duplicated_fields(header)
        if twice:  # which cell is the value? the file's problem, not a guess per row
            yield FileError(task.uri, f"the CSV header names {twice} more than once: keep one column of each")
            return
        lines.take(0)
        batch = RecordBatch(task.uri)
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    raw_text, size, line = lines.take(limits.max_line_bytes)
                    yield Count(task.uri, "read")
                    if size > limits.max_line_bytes:  # a cell past the reader's limit
                        yield _csv_too_long(ctx, task.uri, lines, raw_text, size, line, limits)
                    else:
                        yield dead_letter(ctx, "parse", [reason(
                            "parse:invalid_csv", f"{PARSE_REASONS['parse:invalid_csv']} ({err}).")],
                            raw_text.encode("utf-8", "surrogateescape"), task.uri, line)
                    continue
                raw_text, size, line = lines.take(limits.max_line_bytes)
                if not any(cell.strip() for cell in row):
                    yield Count(task.uri, "blank_lines")
                    continue
                if size > limits.max_line_bytes:
                    yield Count(task.uri, "read")
                    yield _csv_too_long(ctx, task.uri, lines, raw_text, size, line, limits)
                    continue
                cells = dict(zip(header, row))
                try:
                    raw = orjson.dumps(cells)
                except orjson.JSONEncodeError:
                    yield Count(task.uri, "read")
                    yield dead_letter(ctx, "parse", [reason("read:invalid_utf8", READ_REASONS["read:invalid_utf8"])],
                                      ",".join(row).encode("utf-8", "surrogateescape"), task.uri, line)
                    continue
                if len(row) != len(header):
                    yield Count(task.uri, "read")
                    yield dead_letter(ctx, "parse", [reason(
                        "parse:invalid_csv", f"{PARSE_REASONS['parse:invalid_csv']} "
                        f"({len(row)} cells, header has {len(header)}).")], raw, task.uri, line)
                    continue
                record = {k: _csv_value(k, v) for k, v in cells.items() if v != ""}
                batch.append(record, raw, line, None)
                if len(batch) >= limits.batch_size:
                    yield batch
                    batch = RecordBatch(task.uri)
        except READ_ERRORS:
            if len(batch):
                yield batch
            raise
        if len(batch):
            yield batch
