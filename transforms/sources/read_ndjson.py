"""NDJSON: a byte range of a file split into lines (an over-long line cut, and its payload kept whole
when it can be), then into batches of lines; blank lines counted apart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from schemas.envelope import READ_REASONS
from transforms.core.payloads import PayloadSpill, payload_path
from transforms.core.records import ImportContext, LineBatch, dead_letter, reason
from transforms.core.settings import ReadLimits
from transforms.sources.files import ReadTask, open_source
from transforms.sources.read_types import BLOCK, READ_ERRORS, Count, cut_note

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 15.0


def _skip_partial_line(f) -> int:
    """Move to the start of the next line; returns the bytes skipped (0 if at a line start)."""
    f.seek(f.tell() - 1)
    if f.read(1) == b"\n":
        return 0
    skipped = 0
    while True:
        block = f.read(1 << 16)
        if not block:
            return skipped
        pos = block.find(b"\n")
        if pos >= 0:
            f.seek(f.tell() - len(block) + pos + 1)
            return skipped + pos + 1
        skipped += len(block)


def split_lines(f, start: int, end: int | None, max_line: int,
                 spill: Callable[[int], PayloadSpill] | None = None) -> Iterator[tuple[bytes, int, str | None]]:
    """(line, full length, where it is stored whole) for each line starting before ``end``; a line longer
    than ``max_line`` is yielded cut to ``max_line`` bytes (its full length tells) and, with ``spill``
    (which opens a payload file for the line starting at a byte offset), written whole to a payload file
    as it is read, never held in memory whole. A trailing CR is dropped, and not counted: a CRLF line
    of exactly ``max_line`` bytes is as good as an LF one."""
    offset = start
    pending: list[bytes] = []
    pending_len = 0
    last = b""  # the last byte of the line so far (is it a CR?)
    writer: PayloadSpill | None = None  # the long line being read, written whole
    # read1 hands over what one underlying read decompressed, so a stream that breaks loses nothing
    # it had already decoded (a plain read(BLOCK) would raise and drop the whole block)
    read = getattr(f, "read1", f.read)
    while True:
        try:
            block = read(BLOCK)
        except READ_ERRORS:
            if pending_len:  # the cut-off last line is a record too: it will fail to parse
                yield b"".join(pending), pending_len - (last == b"\r"), writer.close() if writer else None
            raise
        if not block:
            break
        parts = block.split(b"\n")
        for part in parts[:-1]:
            length = pending_len + len(part)
            size = length - ((part[-1:] if part else last) == b"\r")  # without the CR of a CRLF
            last = b""
            stored = None
            if writer is not None:
                writer.write(part)
                stored, writer = writer.close(), None
            elif spill is not None and size > max_line:  # pending holds all of it: at most max_line + 1 bytes
                stored = _spill_whole(spill(offset), [*pending, part])
            if pending:
                line = b"".join(pending) + part[: max(0, max_line + 1 - pending_len)]
                pending, pending_len = [], 0
            else:
                line = part
            yield (line[:-1] if line.endswith(b"\r") else line), size, stored
            offset += length + 1
            if end is not None and offset >= end:
                return
        tail = parts[-1]
        last = tail[-1:] or last
        if writer is not None:
            writer.write(tail)
        elif spill is not None and pending_len + len(tail) > max_line + 1:  # pending holds all the line so far
            writer = spill(offset)
            for chunk in (*pending, tail):
                writer.write(chunk)
        if pending_len <= max_line:
            pending.append(tail[: max_line + 1 - pending_len])
        pending_len += len(tail)
    if pending_len:
        line = b"".join(pending)
        size = pending_len - (last == b"\r")
        stored = writer.close() if writer else None
        if stored is None and spill is not None and size > max_line:  # pending holds all of it
            stored = _spill_whole(spill(offset), pending)
        yield (line[:-1] if line.endswith(b"\r") else line), size, stored


def _spill_whole(writer: PayloadSpill, chunks: list[bytes]) -> str:
    for chunk in chunks:
        writer.write(chunk)
    return writer.close()


def payload_spill(uri: str, ctx: ImportContext, limits: ReadLimits) -> Callable[[int], PayloadSpill] | None:
    """Opens the payload file of the over-long line of ``uri`` starting at a byte offset (None: no
    payloads folder)."""
    if not limits.payload_dir:
        return None
    return lambda offset: PayloadSpill(payload_path(limits.payload_dir, ctx.run_id, [uri, "offset", offset]))


def read_ndjson(task: ReadTask, ctx: ImportContext, limits: ReadLimits, first_line: int) -> Iterator:
    with open_source(task.uri, task.compression) as f:
        line_no = first_line
        if task.start > 0:
            f.seek(task.start)
            if _skip_partial_line(f):
                line_no += 1
            start = f.tell()
            if task.end is not None and start >= task.end:
                return  # a line spans this whole range: the task it starts in reads it
        else:
            start = 0
        yield from line_batches(split_lines(f, start, task.end, limits.max_line_bytes,
                                              payload_spill(task.uri, ctx, limits)),
                                 task.uri, ctx, limits, line_no)


def line_batches(lines, uri: str, ctx: ImportContext, limits: ReadLimits, line_no: int) -> Iterator:
    batch = LineBatch(uri, [], [])
    blank = 0
    last_log = time.monotonic()
    try:
        for line, length, stored in lines:
            if length > limits.max_line_bytes:
                yield Count(uri, "read")
                dead = dead_letter(
                    ctx, "read",
                    [reason("read:line_too_long", f"{READ_REASONS['read:line_too_long']} "
                            f"({length} > {limits.max_line_bytes} bytes); {cut_note(stored, length)}.")],
                    line[: limits.max_line_bytes], uri, line_no, truncated=True, raw_size=length,
                )
                if stored:
                    dead["raw_payload_uri"] = stored
                yield dead
            elif not line or line.isspace():
                blank += 1
            else:
                batch.lines.append(line)
                batch.line_numbers.append(line_no)
                if len(batch.lines) >= limits.batch_size:
                    yield batch
                    batch = LineBatch(uri, [], [])
                    if time.monotonic() - last_log > PROGRESS_SECONDS:
                        last_log = time.monotonic()
                        log.info("reading %s: line %d", uri, line_no)
            line_no += 1
    except READ_ERRORS:
        # the file broke mid-way: account for what was read, then let the error go on up
        yield from _flush(batch, blank)
        raise
    yield from _flush(batch, blank)


def _flush(batch: LineBatch, blank: int) -> Iterator:
    if batch.lines:
        yield batch
    if blank:
        yield Count(batch.source_uri, "blank_lines", blank)
