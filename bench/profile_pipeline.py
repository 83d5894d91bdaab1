"""Profile the project's dry run with py-spy (worker processes included) and say where the time goes.

    .venv/bin/pip install py-spy      # once (not a project dependency)
    .venv/bin/python bench/profile_pipeline.py [--events 1000000] [--rate 100] [--raw FILE] [PIPELINE FLAGS…]

Records ``python -m pipeline --input FILE --dry_run`` with ``py-spy record --subprocesses --format raw``
(py-spy leaves idle threads out, but not all waits: samples whose innermost frame is a wait are
counted apart), then attributes every busy sample to a stage by the frames on its stack, and
prints: samples per process, time per stage, and the top functions by self time (the innermost
Python frame; C code such as orjson or pyarrow counts for the Python function that called it) and
by inclusive time. ``--raw FILE`` summarizes an existing recording instead.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import DATA, PYTHON, events_file  # noqa: E402

# A sample goes to the category of the innermost frame that matches one of these patterns (for one
# frame, the first pattern in this order), so a stage's own code wins over the Beam frames around it
# and a coder or an import inside a stage goes to serialization or start-up. Stages are matched by the
# file their code is in (transforms/sources/, transforms/stages/…); what process_batch (batch.py) and its
# DoFn do between the stages' own functions is the "batch" row.
STAGES = [
    ("start-up: imports", r"<frozen importlib\._bootstrap"),
    ("serialization: pickle / coders", r"PickleCoder|apache_beam/coders/|pickle|dill|cloudpickle"),
    ("shuffle: runner GroupingBuffer (GroupByKey)", r"GroupingBuffer"),
    ("data plane: encoded bytes between stages", r"data_plane\.py|ClosableOutputStream|_send_input_to_worker"),
    ("read", r"transforms/sources/"),
    ("parse", r"transforms/stages/parse\.py"),
    ("validate: wire frame (Python lists)", r"transforms/stages/wire\.py"),
    ("validate: pandera", r"failures_by_row|pandera/"),
    ("validate: other", r"transforms/stages/validate\.py"),
    ("normalize: labels", r"transforms/stages/labels\.py"),
    ("normalize: URLs", r"transforms/stages/urls\.py"),
    ("normalize: timestamps", r"transforms/core/timestamps\.py"),
    ("normalize: user agents", r"transforms/stages/agents\.py|ua_parser"),
    ("normalize: columns -> Arrow table", r"transforms/stages/(normalize|privacy|row_policy)\.py"),
    ("batch: parse -> validate -> normalize glue", r"transforms/stages/(batch|dofns)\.py"),
    ("dedupe: split into buckets", r"split_into_buckets|bucket_of"),
    ("dedupe: resolve buckets", r"transforms/stages/dedupe\.py|ResolveBucketFn"),
    ("dead letters / counts", r"transforms/core/(records|tagged|serialize)\.py|dead_letter_counts"),
    ("Beam: bundle / operation machinery", r"apache_beam/"),
    ("grpc / threads", r"grpc|threading"),
    ("launcher (options, plan, report)", r"pipeline/"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in STAGES]


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in COMPILED:
            if pattern.search(frame):
                return name
    return "other"


WAITING = re.compile(
    r"^(Condition\.wait|Event\.wait|_wait_once|wait|Popen\._try_wait|Popen\.wait|channel_spin|_serve|select|poll|"
    r"sleep|Queue\.get|SimpleQueue\.get|_worker|acquire|watch) \(")
"""Leaf frames of threads that wait (py-spy reports some of them as active): counted apart."""


def process_name(frames: list[str]) -> str:
    heads = [f for f in frames if f.startswith("process ")]
    cmd = heads[-1].split(":", 1)[1] if heads else "?"  # the innermost process of a parent chain
    if "sdk_worker_main" in cmd or "pipeline.warm_workers" in cmd:  # Beam's worker, or a warm one
        return "Beam SDK worker processes"
    if "-m pipeline" in cmd or cmd.strip('"') == "":  # the launcher's name is lost when it has exited
        return "main process (launcher + runner)"
    return cmd[:60]


def summarize(raw: Path, top: int = 25) -> str:
    by_stage: Counter = Counter()
    by_process: Counter = Counter()
    waiting: Counter = Counter()
    stage_process: dict[str, Counter] = defaultdict(Counter)
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        all_frames = stack.split(";")
        proc = process_name(all_frames)
        frames = [f for f in all_frames if not f.startswith(("process ", "thread "))]
        clean = [re.sub(r":\d+\)$", ")", f) for f in frames]
        if not clean or WAITING.match(clean[-1]):
            waiting[proc] += n
            continue
        total += n
        by_process[proc] += n
        stage = category(frames)
        by_stage[stage] += n
        stage_process[stage][proc] += n
        self_time[clean[-1]] += n
        for f in set(clean):
            inclusive[f] += n
    pct = lambda n: f"{100 * n / total:5.1f}%"  # noqa: E731
    out = [f"{total} busy samples, all processes; {sum(waiting.values())} more samples of threads waiting "
           f"(locks, gRPC, subprocess waits) left out: {dict(waiting)}"]
    out.append("\nper process (busy samples):")
    out += [f"  {pct(n)}  {name}" for name, n in by_process.most_common()]
    out.append("\nper stage (innermost frame that names one):")
    for name, n in by_stage.most_common():
        where = ", ".join(f"{p.split(' ')[0]} {100 * k / n:.0f}%" for p, k in stage_process[name].most_common(2))
        out.append(f"  {pct(n)}  {name:44} ({where})")
    out.append(f"\ntop {top} functions by self time:")
    out += [f"  {pct(n)}  {f}" for f, n in self_time.most_common(top)]
    out.append(f"\ntop {top} functions by inclusive time (project and Beam frames):")
    shown = 0
    for f, n in inclusive.most_common():
        if any(k in f for k in ("<module>", "_run_code", "_run_module", "run (threading", "_bootstrap", "Thread.run",
                                "worker (concurrent", "_WorkItem", "thread_pool_executor", "_request_execute",
                                "SdkHarness._execute")):
            continue
        out.append(f"  {pct(n)}  {f}")
        shown += 1
        if shown == top:
            break
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rate", type=int, default=100, help="samples per second per thread")
    ap.add_argument("--raw", help="summarize this py-spy raw file instead of recording")
    args, extra = ap.parse_known_args(argv)  # other flags go to the pipeline (e.g. --direct_num_workers=1)
    if args.raw:
        print(summarize(Path(args.raw)))
        return 0
    spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if not spy:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    from run_bench import snapshot_code

    source = events_file(args.events, args.seed)
    raw = DATA / f"profile-{args.events}.txt"
    log = DATA / f"profile-{args.events}.log"
    code, code_state = snapshot_code()  # the code as it is now, even if the work tree is edited meanwhile
    try:
        with log.open("wb") as f:
            subprocess.run([spy, "record", "--subprocesses", "--rate", str(args.rate), "--format", "raw",
                            "-o", str(raw), "--", PYTHON, "-m", "pipeline", "--input", str(source), "--dry_run",
                            *extra], cwd=code, stdout=f, stderr=subprocess.STDOUT, check=True)
    finally:
        shutil.rmtree(code, ignore_errors=True)
    print(f"code profiled: {code_state}")
    print(summarize(raw))
    print(f"\nraw stacks: {raw} (flamegraph.pl or speedscope can draw them); run log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
