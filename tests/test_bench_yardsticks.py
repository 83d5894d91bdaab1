"""The benchmark's yardsticks (bench/polars_import.py, bench/reference_import.py) do the pipeline's work.

Both are compared with the pipeline itself by ``bench/check_same_rows.py`` (200k and 1M events); these
tests keep them honest between benchmark runs, in process and in seconds: their URL fast paths against
``transforms.stages.urls.normalize_url``, and the two of them against each other on a generated export (same
rows, same counts, every reason).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import check_same_rows  # noqa: E402
import polars_import  # noqa: E402
import reference_import  # noqa: E402
from generate_events import write_file  # noqa: E402


@pytest.mark.parametrize("polars", [True, False], ids=["polars", "reference"])
def test_url_fast_path_is_normalize_url(polars: bool, capsys) -> None:
    seen = pa.table({"url": pa.array(["https://Shop.Example.COM:443/a?b", "app://u:p@host/x", "unknown"])})
    assert check_same_rows.check_urls(seen, n_random=5_000, polars=polars) == 0, capsys.readouterr().out


def _run(module, source: Path, out: Path) -> dict:
    args = argparse.Namespace(input=str(source), output=str(out), datasource_id=None, run_id="t",
                              timestamp_unit="auto", min_event_time="2000-01-01T00:00:00Z",
                              max_event_time="2030-01-01T00:00:00Z", max_line_bytes=1 << 20)
    return module.run(args)


def test_polars_yardstick_matches_the_reference(tmp_path: Path, capsys) -> None:
    source = tmp_path / "events.ndjson"
    write_file(source, 6_000, seed=5, broken_rate=0.05, dup_rate=0.1, conflict_rate=0.01)
    mine = _run(polars_import, source, tmp_path / "polars.parquet")
    ref = _run(reference_import, source, tmp_path / "reference.parquet")
    assert mine["balanced"]
    assert mine["dead_lettered"] > 0 and mine["duplicate_exact"] > 0  # the export exercises both
    for key in check_same_rows.COUNT_KEYS:
        assert mine[key] == ref[key], key
    rows, other = pq.read_table(tmp_path / "polars.parquet"), pq.read_table(tmp_path / "reference.parquet")
    assert check_same_rows.compare(rows, other) == 0, capsys.readouterr().out
