"""The Pub/Sub benchmark: the emulator's own delivery rate beside the importer's, on the same messages.

    .venv/bin/python bench/pubsub_bench.py [--messages 12000] [--source examples|generated]
                                           [--importer-code DIR] [--repeat N] [IMPORTER_FLAGS…]

In one run it starts the official Pub/Sub emulator (scripts/pubsub_emulator.sh) and the local
BigQuery emulator (scripts/bigquery_emulator.sh) on free ports with fresh data folders, then:

1. **raw**: publishes N messages (the lines of ``examples/events-2026-11.ndjson.gz``, cycled to N, or
   ``bench/generate_events.py`` lines) to a topic with a fresh subscription and receives them with the
   official client's streaming pull (``SubscriberClient.subscribe``, a callback that only acks).
   Timed from ``subscribe()`` to the N-th ack.
2. **importer**: publishes the same N messages again, to a fresh subscription, and runs
   ``python -m pipeline --input_subscription … --output_table … --bigquery_endpoint … --stop_after_idle_seconds 2``.
   Timed from the reader's first pull to its last acknowledgement, from the importer's own log line
   (``pubsub reader: N message(s) acknowledged in S s …``): that is the same span as the raw timing
   (first pull → last ack) and does not depend on N's size. The importer acknowledges a message only
   after its rows and dead letters are in BigQuery, so "acknowledged" means "landed". Also shown: the
   whole command from process start to its last ack (adds the interpreter, Beam's import and the
   table preparation, a fixed few seconds) and to its exit (adds the idle wait, the last MERGE and the
   report).

Both rates are printed side by side with their ratio; the machine is shared and noisy, so compare the
ratio of one run, not seconds across runs. ``--repeat N`` alternates raw and importer N times on fresh
subscriptions and prints each pair and the median ratio. ``--importer-code DIR`` runs the importer from
another copy of the project (``git archive COMMIT | tar -x -C DIR``) to compare before and after.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
EXAMPLE = ROOT / "examples" / "events-2026-11.ndjson.gz"
PROJECT = "bench-project"
READER_LINE = re.compile(r"pubsub reader: (\d+) message\(s\) acknowledged in ([\d.]+) s[^(\n]*(?:\(([\d.]+) s ago\))?")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulators:
    """The two emulators, on free ports with data folders under one temporary folder; stopped by the
    scripts that started them (which stop by PID)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="pubsub-bench-"))
        ps_port, bq_port, bq_grpc = free_port(), free_port(), free_port()
        self.pubsub_env = {**os.environ, "PUBSUB_EMULATOR_PORT": str(ps_port),
                           "PUBSUB_EMULATOR_DATA_DIR": str(self.folder / "pubsub")}
        self.bq_env = {**os.environ, "BQ_EMULATOR_PORT": str(bq_port), "BQ_EMULATOR_GRPC_PORT": str(bq_grpc),
                       "BQ_EMULATOR_DATA_DIR": str(self.folder / "bigquery")}
        self.pubsub_host = f"127.0.0.1:{ps_port}"
        self.bq_endpoint = f"http://127.0.0.1:{bq_port}"
        self.started: list[tuple[str, dict]] = []

    def __enter__(self) -> Emulators:
        for script, env in (("pubsub_emulator.sh", self.pubsub_env), ("bigquery_emulator.sh", self.bq_env)):
            done = subprocess.run([str(ROOT / "scripts" / script), "start"], env=env, capture_output=True,
                                  text=True, timeout=300)
            if done.returncode:
                raise SystemExit(f"{script} start failed:\n{done.stdout}\n{done.stderr}")
            self.started.append((script, env))
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host  # this process's clients
        return self

    def __exit__(self, *_) -> None:
        for script, env in reversed(self.started):
            subprocess.run([str(ROOT / "scripts" / script), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(self.folder, ignore_errors=True)


def message_bodies(n: int, source: str) -> list[bytes]:
    if source == "generated":
        sys.path.insert(0, str(BENCH))
        from generate_events import generate

        return list(generate(n, seed=7))
    with gzip.open(EXAMPLE, "rb") as f:
        lines = [line.rstrip(b"\r\n") for line in f if line.strip()]
    return [lines[i % len(lines)] for i in range(n)]


def new_subscription(topic: str, name: str) -> str:
    from google.cloud import pubsub_v1

    subscription = f"projects/{PROJECT}/subscriptions/{name}"
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
    return subscription


def delete_subscription(subscription: str) -> None:
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.delete_subscription(subscription=subscription)


def publish(topic: str, bodies: list[bytes]) -> float:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=5_000_000, max_latency=0.05))
    started = time.monotonic()
    futures = [publisher.publish(topic, body, source="bench") for body in bodies]
    for future in futures:
        future.result(timeout=120)
    return time.monotonic() - started


def raw_seconds(subscription: str, n: int) -> float:
    """Streaming pull with the official client, acknowledging in the callback; seconds from
    ``subscribe()`` to the n-th ack."""
    from google.cloud import pubsub_v1

    received, done, lock = [0], threading.Event(), threading.Lock()
    finished = [0.0]

    def callback(message) -> None:
        message.ack()
        with lock:
            received[0] += 1
            if received[0] == n:
                finished[0] = time.monotonic()
                done.set()

    subscriber = pubsub_v1.SubscriberClient()
    flow = pubsub_v1.types.FlowControl(max_messages=10_000, max_bytes=500 * 1024 * 1024)
    started = time.monotonic()
    future = subscriber.subscribe(subscription, callback, flow_control=flow)
    try:
        if not done.wait(timeout=600):
            raise SystemExit(f"raw pull: only {received[0]} of {n} messages in 600 s")
    finally:
        future.cancel()
        future.result(timeout=60)
        subscriber.close()
    return finished[0] - started


def importer_run(code: Path, subscription: str, table: str, emulators: Emulators, flags: list[str],
                 log_path: Path) -> dict:
    cmd = [PYTHON, "-m", "pipeline", "--input_subscription", subscription, "--output_table", table,
           "--bigquery_endpoint", emulators.bq_endpoint, "--stop_after_idle_seconds", "2", *flags]
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": emulators.pubsub_host, "PYTHONPATH": str(code)}
    launched_wall = time.time()
    started = time.monotonic()
    with log_path.open("wb") as log:
        done = subprocess.run(cmd, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800)
    exited = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    if done.returncode:
        raise SystemExit(f"importer exited {done.returncode}; log: {log_path}\n{text[-3000:]}")
    found = READER_LINE.search(text)
    if not found:
        raise SystemExit(f"no 'pubsub reader:' line in the importer's log ({log_path}): is the importer "
                         f"from before the bench existed? Run it with the line added.")
    line_start = text.rfind("\n", 0, found.start()) + 1
    stamp = LOG_TIME.match(text[line_start:])
    to_last_ack = None
    if stamp and found[3]:  # the line says how long ago the last ack was: process start → last ack
        from datetime import datetime

        logged = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        to_last_ack = logged - float(found[3]) - launched_wall
    return {"acked": int(found[1]), "reader_seconds": float(found[2]), "to_last_ack": to_last_ack,
            "exit_seconds": exited}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=12_000)
    parser.add_argument("--source", choices=("examples", "generated"), default="examples")
    parser.add_argument("--importer-code", type=Path, action="append",
                        help="project folder the importer runs from (default: this one); repeat to compare "
                             "several, each on its own fresh subscription after the same raw measurement")
    parser.add_argument("--repeat", type=int, default=1)
    args, importer_flags = parser.parse_known_args(argv)
    codes = args.importer_code or [ROOT]
    n = args.messages
    bodies = message_bodies(n, args.source)
    logs = Path(tempfile.mkdtemp(prefix="pubsub-bench-logs-"))
    raws: list[float] = []
    runs: dict[Path, list[dict]] = {code: [] for code in codes}
    with Emulators() as emulators:
        from pipeline.publish import ensure_topic_and_subscription

        topic = f"projects/{PROJECT}/topics/bench"
        ensure_topic_and_subscription(topic, None)
        print(f"{n:,} messages ({args.source}), importer flags: {' '.join(importer_flags) or '-'}")
        for i in range(args.repeat):
            raw_sub = new_subscription(topic, f"raw-{i}")
            publish(topic, bodies)
            raw = raw_seconds(raw_sub, n)
            delete_subscription(raw_sub)
            raws.append(raw)
            print(f"run {i + 1}: emulator, raw streaming pull: {raw:6.2f} s {n / raw:>8,.0f}/s")
            for k, code in enumerate(codes):
                sub = new_subscription(topic, f"import-{i}-{k}")
                publish(topic, bodies)
                imp = importer_run(code, sub, f"local-project.bench.events_{i}_{k}", emulators, importer_flags,
                                   logs / f"importer-{i}-{k}.log")
                delete_subscription(sub)
                if imp["acked"] != n:
                    raise SystemExit(f"the importer acknowledged {imp['acked']} of {n} messages")
                imp["ratio"] = raw / imp["reader_seconds"]
                runs[code].append(imp)
                last = imp["to_last_ack"]
                e2e = f"{last:6.2f} s {n / last:>6,.0f}/s ({raw / last:.2f}x)" if last else "?"
                print(f"       importer {code}: first pull→last ack {imp['reader_seconds']:6.2f} s "
                      f"{n / imp['reader_seconds']:>8,.0f}/s ratio {imp['ratio']:.2f} | process start→last ack "
                      f"{e2e} | →exit {imp['exit_seconds']:.1f} s")
    print()
    print(f"{'':<44}{'seconds':>9}{'messages/s':>12}{'× raw':>8}   (median of {args.repeat} run(s))")
    raw_med = statistics.median(raws)
    print(f"{'emulator, raw streaming pull':<44}{raw_med:>9.2f}{n / raw_med:>12,.0f}{1:>8.2f}")
    for code in codes:
        sec = statistics.median(r["reader_seconds"] for r in runs[code])
        ratio = statistics.median(r["ratio"] for r in runs[code])
        print(f"{'importer, first pull → last ack':<44}{sec:>9.2f}{n / sec:>12,.0f}{ratio:>8.2f}   {code}")
        e2e = [r["to_last_ack"] for r in runs[code] if r["to_last_ack"]]
        if e2e:
            sec = statistics.median(e2e)
            ratio = statistics.median(raw / r["to_last_ack"] for raw, r in zip(raws, runs[code]) if r["to_last_ack"])
            print(f"{'importer, process start → last ack':<44}{sec:>9.2f}{n / sec:>12,.0f}{ratio:>8.2f}   {code}")
    print(f"importer logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
