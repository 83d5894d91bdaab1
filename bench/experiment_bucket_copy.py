"""Experiment: the project's dry run with each dedupe bucket copied (``take``) instead of sliced.

    .venv/bin/python bench/experiment_bucket_copy.py [--events 1000000] [--max-rss-gib 16]

``transforms.dedupe.split_into_buckets`` cuts a batch into buckets with ``Table.slice``; a slice
pickles the buffers of the whole table it was cut from, so when the buckets go through Beam's
GroupByKey as Arrow tables (``DedupeEvents`` without a shuffle folder: the code up to commit
f3b803f) every one of the N buckets of a batch carries the whole batch (N = --buckets = 8: eight
times the data, encoded and decoded twice by the runner's GroupingBuffer; 21.5 GB of RSS at 1M
events). Arrow IPC files (the shuffle through files being written in the work tree) write only a
slice's rows, so there the copy changes little. This script leaves the project's code alone:
it runs the shipped dry run and the same with the function replaced (through a ``sitecustomize``
module on PYTHONPATH, so Beam's worker processes get it too), in one process and on 2 worker
processes, side by side, and prints the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def split_into_buckets(table, buckets: int):
    """``transforms.dedupe.split_into_buckets`` with ``take`` per bucket: each piece owns its buffers."""
    import numpy as np
    import pyarrow as pa

    from transforms import dedupe

    if table.num_rows == 0:
        return []
    numbers = dedupe.bucket_of(table.column("eventId"), buckets)
    order = np.argsort(numbers, kind="stable")
    sorted_numbers = numbers[order]
    starts = np.flatnonzero(np.diff(sorted_numbers, prepend=-1))
    ends = np.append(starts[1:], len(sorted_numbers))
    return [(int(sorted_numbers[s]), table.take(pa.array(order[s:e]))) for s, e in zip(starts, ends)]


def patch() -> None:
    from transforms import dedupe

    dedupe.split_into_buckets = split_into_buckets


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    import run_bench as rb
    from workload import events_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-rss-gib", type=float, default=16.0)
    args = ap.parse_args(argv)
    rb.MEMORY_LIMIT = int(args.max_rss_gib * (1 << 30))
    rb.RUNS.mkdir(parents=True, exist_ok=True)
    source = str(events_file(args.events, args.seed))
    site = Path(tempfile.mkdtemp(prefix="bucket-copy-"))
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.path[:0] = [{str(rb.ROOT)!r}, {str(BENCH)!r}]\n"
        "import experiment_bucket_copy\nexperiment_bucket_copy.patch()\n")
    plain_env = os.environ.get("PYTHONPATH")
    rows = []
    try:
        for label, patched, extra in (("shipped, 1 process", False, rb.ONE_PROCESS),
                                      ("bucket copy, 1 process", True, rb.ONE_PROCESS),
                                      ("shipped, 2 workers", False, rb.TWO_WORKERS),
                                      ("bucket copy, 2 workers", True, rb.TWO_WORKERS)):
            if patched:
                os.environ["PYTHONPATH"] = str(site)
            elif plain_env is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = plain_env
            run = rb.measure(label, [rb.PYTHON, "-m", "pipeline", "--input", source, "--dry_run", *extra],
                             "bucket-copy-" + label.replace(" ", "").replace(",", "-"))
            rows.append(run)
            status = run.killed or f"exit {run.code}"
            print(f"  {label:24} {run.wall:7.1f} s  CPU {run.cpu:6.1f} s  peak RSS max "
                  f"{run.peak_max / rb.MIB:7,.0f} MiB  tree {run.peak_sum / rb.MIB:7,.0f} MiB  {status}", flush=True)
    finally:
        shutil.rmtree(site, ignore_errors=True)
    base = rows[0]
    print(f"\nratios to the shipped dry run ({base.wall:.1f} s, {base.peak_sum / rb.MIB:,.0f} MiB):")
    for run in rows[1:]:
        print(f"  {run.name:24} wall {run.wall / base.wall:.2f}×, peak RSS tree {run.peak_sum / base.peak_sum:.2f}×"
              + (f"  ({run.killed})" if run.killed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
