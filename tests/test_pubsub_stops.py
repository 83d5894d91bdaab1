"""A Pub/Sub import stopped by Ctrl-C, or killed with kill -9 and started again: the report balances,
nothing is lost, and no dead letter is stored twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent import futures

import orjson
import pytest

from pipeline.launcher import run
from pipeline.publish import publish_lines
from tests.conftest import ROOT, as_from_a_terminal
from tests.factory import envelope
from tests.test_pubsub import ACK_DEADLINE, event_ids, stream_args
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

pytestmark = pytest.mark.emulator


def _count(bq, table: str) -> int:
    try:
        return query(bq.session(), f"SELECT COUNT(*) AS n FROM {TableRef.parse(table).sql}")[0]["n"]
    except Exception:  # created by the run: not there yet
        return 0


def _wait_until(condition, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the import ended first (exit {proc.returncode})"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _messages(n: int, broken_every: int) -> list[bytes]:
    """``n`` valid events, and after every ``broken_every``-th one a broken line and an array whose
    second element is bad (dead letters at two stages, one with a source_index)."""
    lines = []
    for i in range(n):
        lines.append(orjson.dumps(envelope(i)))
        if i % broken_every == 0:
            lines.append(b"{broken %d" % i)
            lines.append(orjson.dumps([envelope(1_000_000 + i), envelope(2_000_000 + i, key="bad")]))
    return lines


def _dead_letter_keys(bq, table: str) -> Counter:
    rows = query(bq.session(), f"SELECT source_message_id, stage, source_index FROM "
                               f"{TableRef.parse(table + '_dead_letters').sql}")
    return Counter((r["source_message_id"], r["stage"], r["source_index"]) for r in rows)


def test_ctrl_c_ends_with_a_balanced_report_and_exit_0_and_the_next_run_imports_the_rest(
        pubsub_emulator, bigquery_emulator, tmp_path):
    topic, subscription = pubsub_emulator.topic_and_subscription("ctrlc")
    table = "local-project.stream_ctrlc.events"
    n, every = 1500, 50  # enough batches of 100 that the Ctrl-C falls mid-way
    lines = _messages(n, every)
    publish_lines(topic, lines)
    report_path, log_path = tmp_path / "report.json", tmp_path / "import.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            as_from_a_terminal([sys.executable, "-m", "pipeline",
                                *stream_args(bigquery_emulator, subscription, table, idle=60),
                                "--max_messages", "100", "--report_path", str(report_path)]),
            cwd=ROOT, env=pubsub_emulator.env, stdout=log, stderr=log)
    try:
        _wait_until(lambda: _count(bigquery_emulator, table + "__landing") > 0, 120, proc)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    first = orjson.loads(report_path.read_bytes())
    t = first["total"]
    assert first["ok"] and t["balanced"], first["problems"]
    outcomes = ("loaded", "already_present", "duplicate_exact", "duplicate_conflicting", "dead_lettered",
                "filtered_bot", "returned_unacked")
    assert t["read"] == sum(t[k] for k in outcomes) == t["accounted"]
    records = n + 3 * len(range(0, n, every))  # an event, or a broken line and an array of two
    assert 0 < t["read"] - t["returned_unacked"] < records, "stopped mid-way"
    # what was pulled and not landed went back at once: the next run gets it without waiting
    code, second = run(stream_args(bigquery_emulator, subscription, table, idle=2))
    assert code == 0 and second["total"]["balanced"]
    assert event_ids(bigquery_emulator, table) == sorted(
        envelope(i)["eventId"] for i in [*range(n), *(1_000_000 + j for j in range(0, n, every))])
    u = second["total"]
    # each record landed by exactly one of the two runs, and counted by that one only
    assert (t["read"] - t["returned_unacked"]) + u["read"] == records
    assert t["loaded"] + u["loaded"] == n + len(range(0, n, every))
    assert t["dead_lettered"] + u["dead_lettered"] == 2 * len(range(0, n, every))
    keys = _dead_letter_keys(bigquery_emulator, table)
    assert sum(keys.values()) == len(keys) == 2 * len(range(0, n, every))


class AckGate:
    """A gRPC pass-through to the Pub/Sub emulator that can hold acknowledgements back (pulls and the
    rest go through): an import behind it lands batches it can never acknowledge."""

    def __init__(self, emulator_host: str) -> None:
        import grpc

        self.channel = grpc.insecure_channel(emulator_host)
        self.hold = threading.Event()
        self.held = 0
        gate = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                method = details.method
                forward = gate.channel.unary_unary(method)  # bytes in, bytes out

                def behaviour(request: bytes, context) -> bytes:
                    if method.endswith("/Acknowledge") and gate.hold.is_set():
                        gate.held += 1
                        while context.is_active():
                            time.sleep(0.05)
                        return b""
                    return forward(request, timeout=60)

                return grpc.unary_unary_rpc_method_handler(behaviour)

        self.server = grpc.server(futures.ThreadPoolExecutor(16))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.host = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None)
        self.channel.close()


def test_kill_9_after_landing_and_a_restart_store_each_dead_letter_once(pubsub_emulator, own_emulator):
    topic, subscription = pubsub_emulator.topic_and_subscription("kill9", ack_deadline=ACK_DEADLINE)
    table = "local-project.stream_kill9.events"
    n, every = 400, 10
    publish_lines(topic, _messages(n, every))
    gate = AckGate(pubsub_emulator.host)
    gate.hold.set()  # every batch lands, none is acknowledged: a kill -9 between landing and acking
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *stream_args(own_emulator, subscription, table, idle=60),
             "--max_messages", "100"],
            cwd=ROOT, env={**pubsub_emulator.env, "PUBSUB_EMULATOR_HOST": gate.host},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until(lambda: gate.held > 0, 120, proc)  # a batch landed, its acknowledgement held
            landed = _dead_letter_keys(own_emulator, table)
            assert landed and max(landed.values()) == 1
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    finally:
        gate.close()
    # BigQuery forgets insertIds after a while (best effort, about a minute); the emulator forgets them
    # when it restarts: what makes a dead letter be stored once must not be the insertId
    own_emulator.stop()
    own_emulator.start()
    # the landed messages come back once their ack deadline has passed: idle longer than that
    code, report = run(stream_args(own_emulator, subscription, table, idle=ACK_DEADLINE + 3))
    assert code == 0 and report["total"]["balanced"], report["problems"]
    keys = _dead_letter_keys(own_emulator, table)
    assert sum(keys.values()) == len(keys) == 2 * len(range(0, n, every)), [k for k, c in keys.items() if c > 1][:5]
    assert set(landed) <= set(keys)
    assert event_ids(own_emulator, table) == sorted(
        envelope(i)["eventId"] for i in [*range(n), *(1_000_000 + j for j in range(0, n, every))])
