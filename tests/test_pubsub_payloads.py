"""A Pub/Sub message too large to keep whole in its dead letter is stored whole under
--dead_letter_payloads, as a file's line is, so a replay still has all of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.launcher import run
from pipeline.publish import publish_lines
from tests.factory import envelope, line
from transforms.bigquery.tables import query
from transforms.core.payloads import TABLE_PAYLOAD_BYTES
from transforms.core.settings import TableRef

pytestmark = pytest.mark.emulator


def test_a_large_broken_message_is_stored_whole_and_named_by_its_dead_letter(pubsub_emulator, bigquery_emulator,
                                                                             tmp_path):
    topic, subscription = pubsub_emulator.topic_and_subscription("large")
    big = b'{"eventId": "' + b"x" * (2 * TABLE_PAYLOAD_BYTES)  # 2 MiB, cut off: a dead letter
    publish_lines(topic, [line(envelope(1)), big])
    table = "local-project.large_messages.events"
    folder = tmp_path / "payloads"
    code, report = run(["--input_subscription", subscription, "--output_table", table,
                        "--bigquery_endpoint", bigquery_emulator.endpoint, "--stop_after_idle_seconds", "2",
                        "--merge_interval_seconds", "0", "--dead_letter_payloads", str(folder)])
    assert code == 0 and (report["total"]["loaded"], report["total"]["dead_lettered"]) == (1, 1)
    [dead] = query(bigquery_emulator.session(),
                   f"SELECT raw_bytes, raw_payload_uri, LENGTH(raw_payload) AS kept, source_message_id "
                   f"FROM {TableRef.parse(table + '_dead_letters').sql}")
    assert dead["raw_bytes"] == len(big) and dead["kept"] <= TABLE_PAYLOAD_BYTES and dead["source_message_id"]
    assert Path(dead["raw_payload_uri"]).read_bytes() == big
