"""Read stage on NDJSON files split into byte ranges: every line once, numbered as in the whole file."""

from __future__ import annotations

import gzip
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.read_helpers import envelope_lines, numbered, read_path, tasks_for
from transforms.core.settings import ReadLimits
from transforms.sources.read import count_newlines

# --- NDJSON split into byte ranges -------------------------------------------------------------


def _split_file(tmp_path: Path) -> tuple[Path, list[bytes]]:
    lines = envelope_lines(40) + [b"", b"   "] + envelope_lines(10, seed=9) + [b'{"long":"' + b"L" * 400 + b'"}']
    lines += envelope_lines(5, seed=3)
    path = tmp_path / "split.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


@pytest.mark.parametrize("split_bytes", [1, 7, 50, 64, 100, 333, 1000, 4096])
def test_splits_yield_every_line_once_with_unsplit_numbers(tmp_path: Path, split_bytes: int) -> None:
    path, _ = _split_file(tmp_path)
    limits = ReadLimits(max_line_bytes=300, batch_size=8)
    whole = read_path(path, limits)
    assert len(tasks_for(path)) == 1
    tasks = tasks_for(path, split_bytes)
    assert len(tasks) > 1
    split = read_path(path, limits, split_bytes)
    assert split.lines == whole.lines
    assert len(whole.lines) == 55
    assert split.counts == whole.counts == Counter({"blank_lines": 2, "read": 1})
    assert [(d["source_line"], d["raw_bytes"]) for d in split.dead] == [(53, 411)]
    assert split.errors == []


def test_split_boundaries_exactly_after_newlines(tmp_path: Path) -> None:
    lines = [b'{"n":%04d}' % i for i in range(60)]  # 10 bytes each, 11 with the newline
    path = tmp_path / "fixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    tasks = tasks_for(path, 22)
    assert [t.start % 11 for t in tasks] == [0] * len(tasks)  # every boundary right after a newline
    assert len(tasks) == 30
    assert read_path(path, split_bytes=22).lines == numbered(lines)


def test_split_plan_covers_the_file(tmp_path: Path) -> None:
    path, _ = _split_file(tmp_path)
    size = path.stat().st_size
    tasks = tasks_for(path, 100)
    assert tasks[0].start == 0 and tasks[-1].end == size
    assert all(a.end == b.start for a, b in pairwise(tasks))
    assert [t.split_index for t in tasks] == list(range(len(tasks)))
    assert {t.splits for t in tasks} == {len(tasks)}
    assert sum(count_newlines(t) for t in tasks) == path.read_bytes().count(b"\n")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.integers(0, 80), st.sampled_from([0, 1, 2])), min_size=1, max_size=40),
    st.integers(1, 120),
    st.booleans(),
)
def test_splits_match_the_whole_read_for_any_layout(lengths: list[int], split_bytes: int, final_newline: bool) -> None:
    lines = [(b"%d:" % i + b"a" * n)[:n] if n else b"" for i, n in enumerate(lengths)]
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.ndjson"
        path.write_bytes(data)
        limits = ReadLimits(max_line_bytes=60, batch_size=5)
        whole = read_path(path, limits)
        split = read_path(path, limits, split_bytes)
    assert split.lines == whole.lines
    assert split.counts == whole.counts
    assert [(d["source_line"], d["raw_bytes"]) for d in split.dead] == [(d["source_line"], d["raw_bytes"])
                                                                       for d in whole.dead]
    expected = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and len(line) <= 60]
    assert whole.lines == expected


def test_compressed_ndjson_is_never_split(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join(envelope_lines(100)) + b"\n"))
    [task] = tasks_for(path, 10)
    assert (task.start, task.end, task.splits, task.compression) == (0, None, 1, "gzip")
