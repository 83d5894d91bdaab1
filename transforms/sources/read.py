"""Read stage: one read task into batches of lines (NDJSON) or records (JSON array, CSV, Parquet, a
replay file): ``read_task`` picks the reader (``read_json``, ``read_csv``, ``read_parquet``,
``read_replay``, ``read_ndjson``).

Everything the reader meets is accounted for: each record is counted as read, blank lines are
counted apart, an over-long line is dead-lettered here, and a file that breaks mid-way (a truncated
gzip, a corrupt Parquet footer) is reported as a file error after the records read before the break.
"""

from __future__ import annotations

from collections.abc import Iterator

from transforms.core import progress
from transforms.core.records import ImportContext, LineBatch, RecordBatch
from transforms.core.settings import ReadLimits
from transforms.sources.files import REPLAY_FORMAT, ReadTask, open_source
from transforms.sources.read_csv import read_csv
from transforms.sources.read_json import read_json_document, wrong_kind
from transforms.sources.read_ndjson import read_ndjson
from transforms.sources.read_parquet import read_parquet
from transforms.sources.read_replay import read_replay
from transforms.sources.read_types import BLOCK, READ_ERRORS, FileError


def count_newlines(task: ReadTask) -> int:
    """Newlines in the task's byte range (to number the lines of the ranges after it)."""
    with open_source(task.uri, "none") as f:
        f.seek(task.start)
        remaining = (task.end if task.end is not None else task.size) - task.start
        total = 0
        while remaining > 0:
            block = f.read(min(BLOCK, remaining))
            if not block:
                break
            total += block.count(b"\n")
            remaining -= len(block)
        return total


def read_task(task: ReadTask, ctx: ImportContext, limits: ReadLimits, first_line: int = 1) -> Iterator:
    """Everything one task yields: LineBatch / RecordBatch, dead-letter dicts, Count, FileError."""
    readers = {
        "ndjson": lambda: read_ndjson(task, ctx, limits, first_line),
        "json": lambda: read_json_document(task, ctx, limits),
        "csv": lambda: read_csv(task, ctx, limits),
        "parquet": lambda: read_parquet(task, ctx, limits),
        REPLAY_FORMAT: lambda: read_replay(task, ctx, limits),
    }
    ticker = progress.ReadTicker(task.uri, task.split_index, task.start,
                                 task.size if task.end is None else min(task.end, task.size))
    try:
        problem = wrong_kind(task) if task.format in ("ndjson", "json") and task.compression == "none" else None
        if problem:  # a file problem, said once (by the task of the file's start), not a dead letter per line
            if task.start == 0:
                yield FileError(task.uri, problem)
            ticker.done()
            return
        for item in readers[task.format]():
            if isinstance(item, (LineBatch, RecordBatch)):
                ticker.tick(len(item.lines) if isinstance(item, LineBatch) else len(item))
            yield item
    except READ_ERRORS as err:
        yield FileError(task.uri, f"{type(err).__name__}: {err}")
    ticker.done()
