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
