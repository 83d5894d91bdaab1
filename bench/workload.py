"""The benchmark workload: a synthetic export cached under bench/data/, keyed by line count and seed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def events_file(n: int, seed: int = 42) -> Path:
    """``bench/data/events-N-sSEED.ndjson``, generated (deterministically) if missing."""
    path = DATA / f"events-{n}-s{seed}.ndjson"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        print(f"generating {n:,} lines (seed {seed}) -> {path}", file=sys.stderr)
        subprocess.run([PYTHON, str(BENCH / "generate_events.py"), "--events", str(n), "--seed", str(seed),
                        "--out", str(partial)], check=True)
        partial.rename(path)  # a half-written file never looks like a cached one
    return path


def yardstick_main(run, description: str, input_help: str, argv: list[str] | None = None) -> int:
    """The command line the two yardsticks share (``reference_import.py``, ``polars_import.py``): the
    dry run's options, ``run(args)`` → its counts, printed (``--json``: as one object); exit 1 unless
    they balance."""
    import argparse
    import time

    import orjson

    t0 = time.perf_counter()
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--input", required=True, help=input_help)
    ap.add_argument("--output", help="Parquet file for the unique rows (default: write nothing)")
    ap.add_argument("--datasource_id", default=None)
    ap.add_argument("--run_id", default=None)
    ap.add_argument("--timestamp_unit", default="auto", choices=("auto", "s", "ms", "us"))
    ap.add_argument("--min_event_time", default="2000-01-01T00:00:00Z")
    ap.add_argument("--max_event_time", default=None, help="default: now + 1 day, as the pipeline")
    ap.add_argument("--max_line_bytes", type=int, default=1 << 20)
    ap.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    args = ap.parse_args(argv)
    result = run(args)
    result["process_seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for k, v in result.items():
            print(f"{k:24} {v}")
    return 0 if result["balanced"] else 1
