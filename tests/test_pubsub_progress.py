"""A subscription import says how far it got while it runs (issue #14, item 5)."""

from __future__ import annotations

import logging
import re

import orjson
import pytest

from pipeline.launcher import run
from pipeline.publish import publish_lines
from tests.factory import envelope
from transforms.pubsub import subscription as read_pubsub

pytestmark = pytest.mark.emulator


def test_a_subscription_import_tells_messages_acknowledged_and_rows_merged(pubsub_emulator, bigquery_emulator,
                                                                          monkeypatch, caplog):
    topic, subscription = pubsub_emulator.topic_and_subscription("progress")
    publish_lines(topic, [orjson.dumps(envelope(i)) for i in range(30)])
    monkeypatch.setattr(read_pubsub, "PROGRESS_SECONDS", 0.2)
    with caplog.at_level(logging.INFO, logger=read_pubsub.__name__):
        code, report = run(["--input_subscription", subscription, "--output_table", "local-project.progress.events",
                            "--bigquery_endpoint", bigquery_emulator.endpoint, "--stop_after_idle_seconds", "5",
                            "--merge_interval_seconds", "0.5"])
    assert code == 0 and report["total"]["loaded"] == 30
    told = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pubsub: ")]
    assert told, "no progress line"
    counts = [tuple(map(int, re.match(r"pubsub: (\d+) message\(s\) acknowledged \(\d+/s\), (\d+) row\(s\) merged",
                                      t).groups())) for t in told]
    assert counts == sorted(counts) and all(acked <= 30 and merged <= 30 for acked, merged in counts)
    # the reader stops 5 s after its last message: lines after its acknowledgement count all 30
    assert counts[-1][0] == 30, told
    # an idle stream runs no MERGE: once the rows are merged, the 5 s idle at a 0.5 s interval runs no MERGE
    # of nothing (each a billed script on real BigQuery) but the last one, at the stop
    merged = [int(re.match(r"merged (\d+) new row", r.getMessage()).group(1)) for r in caplog.records
              if r.getMessage().startswith("merged ")]
    assert sum(merged) == 30 and merged[merged.index(next(n for n in merged if n)) + 1:].count(0) <= 1, merged
