"""The benchmark: the project's import against a polars script, a no-framework reference, per-element Beam.

    ./run.sh bench [--events 1000000] [--seed 42] [--scale] [--repeat N] [--skip-baseline]
                   [--skip-one-process] [--skip-reference] [--skip-polars] [--bigquery] [--max-rss-gib 16]
                   [--rss-events 5000000] [--targets]

Each contender runs as its own process, timed from process start to exit, one after the other in
this one invocation (interleaved when repeated, the best run kept), so a neighbour's load hits them
alike; compare the ratios, not the seconds. Contenders:

* polars          bench/polars_import.py: the same work in polars expressions on all cores, same rows
                  (bench/check_same_rows.py --polars): the yardstick of issue #18, run first
* reference       bench/reference_import.py: one process, no framework, same rows (bench/check_same_rows.py)
* pipeline        python -m pipeline --input FILE --dry_run   (the whole command, as shipped)
* pipeline 1 p.   the same with --direct_num_workers=1 --direct_running_mode=in_memory (one process;
                  the launcher's default is 2 worker processes since commit 8761a62, before it was this)
* per-element     bench/per_element_beam.py on the same runner settings (FnApiRunner, 2 worker processes)
* pipeline → BQ   (--bigquery) the import into a local BigQuery emulator this script starts and stops

Memory: every 0.2 s the process tree (the command and all its descendants) is read from /proc; "peak
RSS max" is the largest single process (also checked against the kernel's ru_maxrss at exit), "peak
RSS tree" the largest sum over the tree at one sample. CPU is user + system of the whole tree. A run
whose tree passes --max-rss-gib is stopped (its own processes, by PID) before the kernel's OOM killer
picks a victim on this shared machine; the table says so.

``--targets`` is the set of issue #18 in one invocation: polars, the dry run and the import into the
emulator at --events, then polars and the dry run at twice --events, then the dry run once at
--rss-events (5M) for its peak RSS; the end of the output checks each target (ratios of this run).
The workload is generated once per (events, seed) under bench/data/. Logs and reports of the last
run are kept in bench/data/last-run/. The contenders run from a copy of the project's code taken at
the start (its HEAD and fingerprint are printed), so edits to the work tree during a run do not mix
two versions in one table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_measure  # noqa: E402
from run_measure import MIB, Run, log_marks  # noqa: E402
from run_report import details, table, targets  # noqa: E402
from workload import DATA, PYTHON, ROOT, events_file  # noqa: E402

RUNS = DATA / "last-run"
CODE = ROOT  # where the contenders run from: a snapshot of the project's code, see snapshot_code()


# ---------------------------------------------------------------------------------------------- code snapshot
def snapshot_code() -> tuple[Path, str]:
    """Copy pipeline/, transforms/, schemas/, the top-level modules and bench/*.py to a temporary
    folder the contenders run from, so every run of one invocation measures the same code even if
    the work tree is edited meanwhile. Returns (folder, HEAD commit and a fingerprint of the code)."""
    snap = Path(tempfile.mkdtemp(prefix="bench-code-"))
    for name in ("pipeline", "transforms", "schemas"):
        shutil.copytree(ROOT / name, snap / name, ignore=shutil.ignore_patterns("__pycache__"))
    (snap / "bench").mkdir()
    for f in [*ROOT.glob("*.py"), *(ROOT / "bench").glob("*.py")]:  # top-level modules too (rlvt_own_packages)
        shutil.copy2(f, snap / f.relative_to(ROOT))
    digest = hashlib.sha256()
    for f in sorted(snap.rglob("*.py")):
        digest.update(str(f.relative_to(snap)).encode() + b"\0" + f.read_bytes())
    head = "?"
    try:  # read, never run, git: the ref the work tree is on
        ref = (ROOT / ".git" / "HEAD").read_text().strip()
        head = ref[:12]
        if ref.startswith("ref: "):
            path = ROOT / ".git" / ref[5:]
            head = path.read_text().strip()[:12] if path.exists() else ref[5:]
    except OSError:
        pass
    return snap, f"HEAD {head}, code fingerprint {digest.hexdigest()[:12]} (pipeline/ transforms/ schemas/ bench/)"


# ---------------------------------------------------------------------------------------------- measuring
MEMORY_LIMIT = 16 << 30  # bytes over the process tree; set by --max-rss-gib


def measure(name: str, cmd: list[str], tag: str, **watch) -> Run:
    """``run_measure.measure`` of one contender: run from the code snapshot, its output kept in RUNS."""
    return run_measure.measure(name, cmd, CODE, RUNS / f"{tag}.out", RUNS / f"{tag}.err", MEMORY_LIMIT, **watch)


# ---------------------------------------------------------------------------------------------- contenders
def run_reference(source: Path, tag: str) -> Run:
    out = RUNS / f"{tag}.parquet"
    run = measure("reference (1 process)", [PYTHON, "bench/reference_import.py", "--input", str(source),
                                            "--output", str(out), "--json"], tag)
    if run.code == 0:
        run.info = orjson.loads(run.stdout.read_bytes().splitlines()[-1])
        run.info["loaded_rows"] = run.info["loaded"]
    out.unlink(missing_ok=True)
    return run


def run_polars(source: Path, tag: str) -> Run:
    out = RUNS / f"{tag}.parquet"
    run = measure("polars", [PYTHON, "bench/polars_import.py", "--input", str(source), "--output", str(out),
                             "--json"], tag)
    if run.code == 0:
        run.info = orjson.loads(run.stdout.read_bytes().splitlines()[-1])
        run.info["loaded_rows"] = run.info["loaded"]
    out.unlink(missing_ok=True)
    return run


TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
ONE_PROCESS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def run_pipeline(source: Path, tag: str, extra: list[str] = (), name: str = "pipeline --dry_run") -> Run:
    report = RUNS / f"{tag}-report.json"
    run = measure(name, [PYTHON, "-m", "pipeline", "--input", str(source), "--dry_run",
                         "--report_path", str(report), *extra], tag)
    if report.exists():
        run.info = orjson.loads(report.read_bytes())
        run.info["loaded_rows"] = run.info["total"]["loaded"]
        run.marks = log_marks(run.stderr, run.started_at, {"graph": r"INFO importer: import "})
    return run


def run_baseline(source: Path, tag: str) -> Run:
    out = RUNS / f"{tag}-rows"
    shutil.rmtree(out, ignore_errors=True)
    run = measure("per-element Beam", [PYTHON, "bench/per_element_beam.py", "--input", str(source),
                                       "--output", str(out)], tag)
    if run.code == 0:
        run.info = orjson.loads(run.stdout.read_bytes().splitlines()[-1])
        run.info["loaded_rows"] = sum(p.read_bytes().count(b"\n") for p in out.glob("rows*"))
    shutil.rmtree(out, ignore_errors=True)
    return run


class Emulator:
    """The local BigQuery emulator, started for the benchmark on its own ports and data folder."""

    def __init__(self, port: int, grpc_port: int) -> None:
        self.port = port
        self.data = Path(f"/tmp/bench-bq-{os.getpid()}")
        self.env = {**os.environ, "BQ_EMULATOR_PORT": str(port), "BQ_EMULATOR_GRPC_PORT": str(grpc_port),
                    "BQ_EMULATOR_DATA_DIR": str(self.data)}
        self.log = ROOT / ".emulators" / f"bigquery-{port}.log"
        self.pid: int | None = None

    def __enter__(self) -> Emulator:
        subprocess.run(["scripts/bigquery_emulator.sh", "start"], cwd=ROOT, env=self.env, check=True,
                       stdout=sys.stderr)
        self.pid = int((ROOT / ".emulators" / f"bigquery-{self.port}.pid").read_text())
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["scripts/bigquery_emulator.sh", "stop"], cwd=ROOT, env=self.env, stdout=sys.stderr)
        shutil.rmtree(self.data, ignore_errors=True)


EMULATOR_MARKS = {  # the emulator's log lines, timestamped as they appear (0.2 s resolution)
    # the rows' load: its upload, or (--emulator_load=local_files) the run's first jobs.insert
    "load_start": (r"POST /upload/bigquery/v2/projects/[^/]+/jobs\?uploadType=resumable"
                   r"|POST /bigquery/v2/projects/[^/]+/jobs\?"),
    "staging_dropped": r"DELETE /bigquery/v2/projects/[^ ]+__staging_",
}


def run_bigquery(source: Path, tag: str, emulator: Emulator) -> Run:
    report = RUNS / f"{tag}-report.json"
    table = f"local-project.bench.events_{tag.replace('-', '_')}_{int(time.time())}"
    run = measure("pipeline → BigQuery", [
        PYTHON, "-m", "pipeline", "--input", str(source), "--output_table", table,
        "--bigquery_endpoint", f"http://127.0.0.1:{emulator.port}", "--emulator_load", "local_files",
        "--report_path", str(report),
    ], tag, watch_pid=emulator.pid, watch_log=emulator.log, log_marks=EMULATOR_MARKS)
    if report.exists():
        run.info = orjson.loads(report.read_bytes())
        run.info["loaded_rows"] = run.info["total"]["loaded"]
    run.marks.update(log_marks(run.stderr, run.started_at, {
        "graph": r"INFO importer: import ", "merged": r"merged into ", "appended": r"appended \d+ row",
    }))
    return run


# ---------------------------------------------------------------------------------------------- runs
def bench(n: int, args: argparse.Namespace, emulator: Emulator | None, only: set[str] | None = None,
          repeat: int | None = None) -> list[Run]:
    """Run the contenders on ``n`` lines (``only``: just those keys), interleaved ``repeat`` times."""
    source = events_file(n, args.seed)
    size = source.stat().st_size
    repeat = args.repeat if repeat is None else repeat
    print(f"\n== {n:,} lines ({size / MIB:,.0f} MiB, {source.name}), repeat {repeat} ==", flush=True)
    contenders = [] if args.skip_polars else [("polars", run_polars)]
    if not args.skip_reference:
        contenders.append(("ref", run_reference))
    contenders.append(("pipeline", run_pipeline))
    if not args.skip_one_process:  # the runner's other local mode, to see what the 2 worker processes bring
        contenders.append(("pipeline1p", lambda s, t: run_pipeline(s, t, ONE_PROCESS, "pipeline --dry_run 1 process")))
    if not args.skip_baseline:
        contenders.append(("baseline", run_baseline))
    if emulator is not None:
        contenders.append(("bigquery", lambda s, t: run_bigquery(s, t, emulator)))
    if only is not None:
        contenders = [c for c in contenders if c[0] in only]
    best: dict[str, Run] = {}
    walls: dict[str, list[float]] = {}
    for k in range(repeat):
        for key, fn in contenders:
            run = fn(source, f"{key}-{n}-{k}")
            run.info["events"] = n
            run.info["key"] = key
            print(f"  {run.name:30} run {k + 1}: {run.wall:6.2f} s, exit {run.code}", flush=True)
            walls.setdefault(run.name, []).append(run.wall)
            if run.name not in best or (run.code == 0 and run.wall < best[run.name].wall):
                best[run.name] = run
    rows = list(best.values())
    for r in rows:
        r.info["walls"] = walls[r.name]
    print()
    print(table(rows, n, walls))
    print(details(rows))
    loaded = {r.info.get("loaded_rows") for r in rows if "loaded_rows" in r.info}
    if len(loaded) > 1:
        print(f"NOTE: the contenders loaded different row counts: {sorted(x for x in loaded if x is not None)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="lines in the synthetic export (default 1M)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scale", action="store_true", help="also run at twice --events and print the ratios")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each contender (the best is kept)")
    ap.add_argument("--skip-baseline", action="store_true", help="leave out the per-element Beam baseline")
    ap.add_argument("--skip-reference", action="store_true",
                    help="leave out the reference (it holds everything in memory: ≈3.7 GB per 1M events)")
    ap.add_argument("--skip-one-process", action="store_true",
                    help="leave out the dry run with --direct_num_workers=1 --direct_running_mode=in_memory")
    ap.add_argument("--skip-polars", action="store_true", help="leave out the polars yardstick")
    ap.add_argument("--bigquery", action="store_true", help="also import into a local BigQuery emulator")
    ap.add_argument("--targets", action=argparse.BooleanOptionalAction, default=True,
                    help="issue #18's set (default): polars, reference, dry run and the import into the emulator "
                    "at --events; polars and dry run at twice --events; the dry run at --rss-events; then the "
                    "targets checked. --no-targets: only the contenders at --events (and --scale)")
    ap.add_argument("--rss-events", type=int, default=5_000_000,
                    help="with --targets: lines of the run whose largest process is measured (0: none)")
    ap.add_argument("--max-rss-gib", type=float, default=16.0,
                    help="stop a contender whose process tree grows past this (default 16 on this 24 GiB machine)")
    ap.add_argument("--bq-port", type=int, default=9350)
    ap.add_argument("--bq-grpc-port", type=int, default=9360)
    args = ap.parse_args(argv)
    global MEMORY_LIMIT
    MEMORY_LIMIT = int(args.max_rss_gib * (1 << 30))
    shutil.rmtree(RUNS, ignore_errors=True)
    RUNS.mkdir(parents=True)
    global CODE
    CODE, code_state = snapshot_code()
    print(f"code measured: {code_state}; running from a copy in {CODE}")
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start "
          "(another workload shares the machine: read the ratios)")
    if args.targets:  # the per-element baseline and the one-process dry run are not part of the set
        args.bigquery, args.skip_baseline, args.skip_one_process = True, True, True
    emulator = Emulator(args.bq_port, args.bq_grpc_port) if args.bigquery else None
    sizes = [args.events, 2 * args.events] if args.scale else [args.events]
    results: dict[int, list[Run]] = {}
    try:
        if emulator:
            emulator.__enter__()
        for n in sizes:
            results[n] = bench(n, args, emulator)
        if args.targets:
            if 2 * args.events not in results:
                results[2 * args.events] = bench(2 * args.events, args, None, only={"polars", "pipeline"})
            if args.rss_events and args.rss_events not in results:
                results[args.rss_events] = bench(args.rss_events, args, None, only={"pipeline"}, repeat=1)
    finally:
        if emulator:
            emulator.__exit__(None, None, None)
        shutil.rmtree(CODE, ignore_errors=True)
    if args.scale:
        small, large = results[sizes[0]], {r.name: r for r in results[sizes[1]]}
        print(f"\n== scaling {sizes[1]:,} / {sizes[0]:,} lines (2.0 = linear) ==")
        for r in small:
            big = large.get(r.name)
            if big:
                print(f"  {r.name:24} wall {big.wall / r.wall:.2f}×   peak RSS tree {big.peak_sum / r.peak_sum:.2f}×"
                      f"   CPU {big.cpu / r.cpu:.2f}×")
    if args.targets:
        print(targets(results, args.events, args.rss_events))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; logs and reports in {RUNS.relative_to(ROOT)}/")
    failed = [r.name for rows in results.values() for r in rows if r.code != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
