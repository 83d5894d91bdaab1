"""What the two yardsticks share (``reference_import.py``, ``polars_import.py``): their command line, the
start and clock of a run, the regexes of their URL fast path and the counts they print.

Only the frame is shared: each does the work its own way (Python and pyarrow, or polars expressions).
Imported with the project's root on ``sys.path`` (the yardsticks put it there).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from transforms.core.settings import parse_instant, to_micros

DAY_MICROS = 86_400_000_000
TIME_CODES = {1: "timestamp:missing", 2: "timestamp:not_finite", 3: "timestamp:out_of_range"}
"""The status codes of ``transforms.core.timestamps.convert_epochs`` as reason codes."""

# The usual URL shapes, done without Python per value (``normalize_url`` does the rest): a web URL with an
# ASCII host, another scheme (a deep link) without user info, and no scheme at all.
URL_PATH = r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/]"
WEB_URL = (rf"^(?P<scheme>[A-Za-z]+)://(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*)(?P<port>:[1-9][0-9]{{0,3}})?"
           rf"(?P<path>/{URL_PATH}*)?$")
OTHER_URL = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?P<rest>[!-Z\^-~]*)$"  # printable ASCII but space, [ \ ]
NO_SCHEME = r"^[!-9;-~]*$"  # printable ASCII without ':' and space: urlsplit finds no scheme


@dataclass(frozen=True)
class RunStart:
    """When a run started and what follows from it, as the pipeline sets them."""

    started: datetime
    micros: int
    max_micros: int  # --max_event_time, by default one day after the start
    run_id: str


def run_start(args: argparse.Namespace, name: str) -> RunStart:
    started = datetime.now(UTC)
    micros = to_micros(started)
    max_micros = parse_instant(args.max_event_time) if args.max_event_time else micros + DAY_MICROS
    return RunStart(started, micros, max_micros, args.run_id or f"{name}-{started:%Y%m%dT%H%M%SZ}")


class Stopwatch:
    """Seconds per stage: ``lap(stage)`` ends the stage begun at the previous lap (or at creation)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._clock, 3)
        self._clock = now


def counts(read: int, loaded: int, exact: int, conflicting: int, dead: int, blank: int, reasons: dict,
           issues: dict, watch: Stopwatch, **more) -> dict:
    """What a yardstick prints: the pipeline report's totals, its reasons and label issues, ``more``,
    and the seconds per stage."""
    return {
        "read": read,
        "loaded": loaded,
        "duplicate_exact": exact,
        "duplicate_conflicting": conflicting,
        "dead_lettered": dead,
        "blank_lines": blank,
        "balanced": read == loaded + exact + conflicting + dead,
        "dead_letter_reasons": dict(sorted(reasons.items())),
        "label_issues": dict(sorted(issues.items())),
        **more,
        "stage_seconds": watch.seconds,
        "work_seconds": round(sum(watch.seconds.values()), 3),
    }


def yardstick_main(run, description: str, input_help: str, argv: list[str] | None = None) -> int:
    """The command line of both: the dry run's options, ``run(args)`` → its counts, printed (``--json``: as
    one object); exit 1 unless they balance."""
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
