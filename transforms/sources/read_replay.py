"""A replay file (``pipeline.replay``): dead letters' payloads read again as the lines they were."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from itertools import groupby

import orjson

from schemas.envelope import READ_REASONS
from transforms.core.payloads import MAX_STORED_BYTES, store_whole
from transforms.core.records import (
    ORIGIN_COLUMNS,
    ImportContext,
    LineBatch,
    RecordBatch,
    dead_letter,
    reason,
    stamp_origin,
)
from transforms.core.settings import ReadLimits
from transforms.sources.files import ReadTask, open_source
from transforms.sources.read_types import Count, cut_note, read_all
from transforms.stages.parse import parse_lines


def read_replay(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """A replay file (``transforms.sources.files.REPLAY_FORMAT``, written by ``pipeline.replay``): one dead
    letter per line, as a JSON object with its payload in base64 (``payload_base64``: line breaks
    inside a payload stay inside one record) and its lineage: ``source_uri``, ``source_line``,
    ``source_index`` and ``ORIGIN_COLUMNS``. Each payload is read as the line of an export it was, and
    its record (row or dead letter again) keeps that lineage: the batches are the original file's, with
    its line numbers. A line that is bare base64 (files of earlier versions) is a payload of this file."""
    with open_source(task.uri, task.compression) as f:
        content, error = read_all(f)
    entries = (_replay_entry(line, task.uri, n) for n, line in enumerate(content.split(b"\n"), 1) if line.strip())
    for (uri, origin), group in groupby(entries, key=lambda e: (e[0], e[4])):
        yield from _replayed(list(group), uri, dict(origin) or None, ctx, limits)
    if error is not None:
        raise error


def _replay_entry(line: bytes, uri: str, number: int) -> tuple:
    """(source uri, line, index, payload, origin items) of one line of a replay file."""
    if not line.lstrip().startswith(b"{"):
        return uri, number, None, base64.b64decode(line), ()
    dead = orjson.loads(line)
    origin = tuple((k, dead.get(k)) for k in ORIGIN_COLUMNS if dead.get(k) is not None)
    return (dead.get("source_uri") or uri, dead.get("source_line"), dead.get("source_index"),
            base64.b64decode(dead["payload_base64"]), origin)


def _replayed(entries: list[tuple], uri: str, origin: dict | None, ctx: ImportContext,
              limits: ReadLimits) -> Iterator:
    """The records of one original source's replayed payloads: parsed as the lines they were, each
    keeping its line and its index in a JSON array."""
    batch = RecordBatch(uri, origin=origin)
    for _, line, index, payload, _ in entries:
        if len(payload) > limits.max_line_bytes:
            stored = None
            if limits.payload_dir and len(payload) <= MAX_STORED_BYTES:  # whole here: stored again
                stored = store_whole(limits.payload_dir, ctx.run_id, payload)
            dead = [dead_letter(
                ctx, "read", [reason("read:line_too_long", f"{READ_REASONS['read:line_too_long']} "
                                     f"({len(payload)} > {limits.max_line_bytes} bytes); {cut_note(stored)}.")],
                payload[: limits.max_line_bytes], uri, line, index, truncated=True, raw_size=len(payload))]
            if stored:
                dead[0]["raw_payload_uri"] = stored
            parsed = RecordBatch(uri)
        else:
            parsed, dead = parse_lines(LineBatch(uri, [payload], [line]), ctx)
        for d in stamp_origin(dead, origin):
            if d["source_index"] is None:
                d["source_index"] = index
            yield Count(uri, "read")
            yield d
        for record, raw, at in zip(parsed.records, parsed.raws, parsed.indexes, strict=True):
            batch.append(record, raw, line, index if at is None else at)
            if len(batch) >= limits.batch_size:
                yield batch
                batch = RecordBatch(uri, origin=origin)
    if len(batch):
        yield batch
