"""Import from a Pub/Sub subscription: the official emulator in, the local BigQuery emulator out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
import pytest

from pipeline.launcher import run
from pipeline.publish import publish_lines
from tests.conftest import ROOT
from tests.factory import BASE_MS, envelope
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

pytestmark = pytest.mark.emulator


ACK_DEADLINE = 4
"""Seconds before a message a killed import pulled comes back (the subscription's ack deadline, as short as
a batch's landing allows): a restarted import waits a little longer than that, idle, for them."""


def stream_args(bq, subscription: str, table: str, idle: float = 2) -> list[str]:
    return ["--input_subscription", subscription, "--output_table", table, "--bigquery_endpoint", bq.endpoint,
            "--stop_after_idle_seconds", str(idle), "--merge_interval_seconds", "2"]


def event_ids(bq, table: str) -> list[str]:
    rows = query(bq.session(), f"SELECT eventId FROM {TableRef.parse(table).sql} ORDER BY eventId")
    return [r["eventId"] for r in rows]


def test_messages_land_once_each_with_exact_times_and_every_record_accounted_for(
        pubsub_emulator, bigquery_emulator):
    topic, subscription = pubsub_emulator.topic_and_subscription("mixed")
    table = "local-project.stream_mixed.events"
    singles = [orjson.dumps(envelope(i, timestamp=BASE_MS + i * 7)) for i in range(40)]
    arrays = [orjson.dumps([envelope(100 + 2 * i), envelope(101 + 2 * i)]) for i in range(5)]
    broken = [b"{not json", orjson.dumps(envelope(200, key="bad")), orjson.dumps([envelope(201), 7])]
    redelivered = singles[:6] + arrays[:1]  # the same message content published again
    conflicting = [orjson.dumps(envelope(3, url="https://elsewhere.example/"))]
    publish_lines(topic, singles + arrays + broken + redelivered + conflicting, {"origin": "test"})

    code, report = run(stream_args(bigquery_emulator, subscription, table))
    assert code == 0, report["problems"]
    expected = sorted({envelope(i)["eventId"] for i in [*range(40), *range(100, 110), 201]})
    assert event_ids(bigquery_emulator, table) == expected
    t = report["total"]
    assert t["read"] == 40 + 10 + (1 + 1 + 2) + (6 + 2) + 1
    assert t["loaded"] == len(expected)
    assert (t["duplicate_exact"], t["duplicate_conflicting"]) == (8, 1)
    assert t["dead_letter_reasons"] == {"parse:invalid_json": 1, "key:pattern": 1, "parse:not_an_object": 1}
    assert t["balanced"] and report["ok"]

    rows = query(bigquery_emulator.session(),
                 f"SELECT eventId, UNIX_MILLIS(timestamp) AS ms, source_message_id, source_attributes, source_index "
                 f"FROM {TableRef.parse(table).sql} ORDER BY eventId")
    by_id = {r["eventId"]: r for r in rows}
    for i in (0, 17, 39):
        assert by_id[envelope(i)["eventId"]]["ms"] == BASE_MS + i * 7
    assert all(r["source_message_id"] for r in rows)
    assert orjson.loads(rows[0]["source_attributes"]) == {"origin": "test"}
    assert by_id[envelope(101)["eventId"]]["source_index"] == 1
    dead = query(bigquery_emulator.session(),
                 "SELECT raw_payload, source_message_id, source_attributes, source_index "
                 "FROM `local-project.stream_mixed.events_dead_letters` ORDER BY raw_payload")
    assert {d["raw_payload"] for d in dead} == {"{not json", orjson.dumps(envelope(200, key="bad")).decode(), "7"}
    assert all(d["source_message_id"] for d in dead)

    # the same messages again (a replayed backlog): nothing new lands
    publish_lines(topic, singles[:10])
    code, again = run(stream_args(bigquery_emulator, subscription, table))
    assert code == 0 and again["total"]["already_present"] == 10 and again["total"]["loaded"] == 0
    assert event_ids(bigquery_emulator, table) == expected


def test_killed_mid_way_and_restarted_loses_nothing_and_doubles_nothing(pubsub_emulator, bigquery_emulator):
    topic, subscription = pubsub_emulator.topic_and_subscription("restart", ack_deadline=ACK_DEADLINE)
    table = "local-project.stream_restart.events"
    n = 3000
    publish_lines(topic, [orjson.dumps(envelope(i)) for i in range(n)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *stream_args(bigquery_emulator, subscription, table, idle=30),
         "--max_messages", "200"],
        cwd=ROOT, env=pubsub_emulator.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    landing = TableRef.parse(table + "__landing")
    deadline = time.monotonic() + 120
    landed = 0
    while time.monotonic() < deadline and not 0 < landed < n:
        time.sleep(0.1)
        try:
            landed = query(bigquery_emulator.session(), f"SELECT COUNT(*) AS n FROM {landing.sql}")[0]["n"]
        except Exception:  # the landing table is created by the run: not there yet
            landed = 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 0 < landed < n, "the run must be killed mid-way"
    # unacknowledged messages come back after the ack deadline: wait longer than that for them
    code, report = run(stream_args(bigquery_emulator, subscription, table, idle=ACK_DEADLINE + 3))
    assert code == 0
    assert event_ids(bigquery_emulator, table) == sorted(envelope(i)["eventId"] for i in range(n))
    assert report["total"]["balanced"]


def test_dataflow_reader_lands_messages_and_the_merge_moves_them(pubsub_emulator, bigquery_emulator):
    """The ReadFromPubSub path (what Dataflow runs), here on Beam's local streaming runner: it lands rows
    and dead letters; the MERGE (a pull-reader run here, the periodic impulse on Dataflow) moves them."""
    topic, subscription = pubsub_emulator.topic_and_subscription("beamreader")
    table = "local-project.stream_beam.events"
    publish_lines(topic, [orjson.dumps(envelope(i)) for i in range(30)] + [b"{broken"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--runner=BundleBasedDirectRunner", "--pubsub_reader=beam",
         "--input_subscription", subscription, "--output_table", table,
         "--bigquery_endpoint", bigquery_emulator.endpoint, "--merge_interval_seconds", "0"],
        cwd=ROOT, env=pubsub_emulator.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    landing = TableRef.parse(table + "__landing")
    landed, dead_letters, deadline = 0, 0, time.monotonic() + 120
    try:
        # a batch's rows land before its dead letters (which first look up the redelivered ones): wait for both
        while (landed < 30 or dead_letters < 1) and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                landed = query(bigquery_emulator.session(), f"SELECT COUNT(*) AS n FROM {landing.sql}")[0]["n"]
                dead_letters = query(bigquery_emulator.session(), "SELECT COUNT(*) AS n FROM "
                                     "`local-project.stream_beam.events_dead_letters`")[0]["n"]
            except Exception:  # not created yet
                landed = dead_letters = 0
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert landed == 30
    dead = query(bigquery_emulator.session(), "SELECT raw_payload FROM `local-project.stream_beam.events_dead_letters`")
    assert [d["raw_payload"] for d in dead] == ["{broken"]
    code, _ = run(stream_args(bigquery_emulator, subscription, table, idle=1))
    assert code == 0
    assert event_ids(bigquery_emulator, table) == sorted(envelope(i)["eventId"] for i in range(30))
