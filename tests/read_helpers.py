"""What the read tests share: reading a whole file as the Beam read does, and what it yielded, by kind."""

from __future__ import annotations

import bz2
import gzip
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zstandard

from transforms.core.records import ImportContext, LineBatch, RecordBatch
from transforms.core.settings import ReadLimits
from transforms.sources.files import ReadTask, plan_reads
from transforms.sources.read import count_newlines, read_task
from transforms.sources.read_types import Count, FileError

CTX = ImportContext("run-read", 1_764_000_000_000_000)
COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
    ".deflate": zlib.compress,
}


@dataclass
class Outcome:
    """Everything read_task yielded, sorted by kind (order of yield kept within each kind)."""

    lines: list[tuple[int, bytes]] = field(default_factory=list)
    records: list[tuple[object, bytes, int | None, int | None]] = field(default_factory=list)
    dead: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    errors: list[FileError] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, item: object) -> None:
        if isinstance(item, LineBatch):
            assert len(item.lines) == len(item.line_numbers) > 0
            self.lines += list(zip(item.line_numbers, item.lines, strict=True))
            self.kinds.append("lines")
        elif isinstance(item, RecordBatch):
            assert len(item) > 0
            self.records += list(zip(item.records, item.raws, item.line_numbers, item.indexes, strict=True))
            self.kinds.append("records")
        elif isinstance(item, Count):
            self.counts[item.metric] += item.n
            self.kinds.append("count")
        elif isinstance(item, FileError):
            self.errors.append(item)
            self.kinds.append("error")
        else:
            assert isinstance(item, dict), item
            self.dead.append(item)
            self.kinds.append("dead")


def tasks_for(path: Path, split_bytes: int = 0, input_format: str = "auto") -> list[ReadTask]:
    return plan_reads([(str(path), path.stat().st_size)], input_format, split_bytes)


def read_path(path: Path, limits: ReadLimits = ReadLimits(), split_bytes: int = 0, input_format: str = "auto"):
    """Read every task of a file, numbering the splits' first lines as ReadSourceFn does."""
    tasks = tasks_for(path, split_bytes, input_format)
    counts = {t.split_index: count_newlines(t) for t in tasks} if len(tasks) > 1 else {}
    out = Outcome()
    for task in tasks:
        first_line = 1 + sum(counts[k] for k in range(task.split_index))
        for item in read_task(task, CTX, limits, first_line):
            out.add(item)
    return out


def numbered(lines: list[bytes], first: int = 1) -> list[tuple[int, bytes]]:
    return list(enumerate(lines, start=first))


def envelope_lines(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [orjson.dumps({"eventId": f"e{i}", "url": "https://x.example/" + "p" * rng.randint(0, 120)})
            for i in range(n)]
