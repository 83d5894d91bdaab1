"""The Dataflow side of a Pub/Sub import (``read_pubsub.ImportSubscription`` with Beam's reader): a
batch of messages processed and landed in one fused stage, and the periodic MERGE of what landed."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.bigquery import landing, landing_merge
from transforms.bigquery.client import connect
from transforms.core.records import ImportContext, Message
from transforms.core.settings import BigQueryTarget, RowPolicy, StreamSettings, TimestampPolicy, to_micros
from transforms.core.timestamps import from_micros, now_micros
from transforms.pubsub.messages import process_messages
from transforms.stages.row_policy import row_key

log = logging.getLogger(__name__)


class ProcessAndLandFn(beam.DoFn):
    """Dataflow: a batch of messages → rows and dead letters appended to their tables."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget, ctx: ImportContext,
                 policy: TimestampPolicy, row_policy: RowPolicy) -> None:
        self.settings, self.target, self.ctx, self.policy = settings, target, ctx, policy
        self.row_policy = row_policy

    def setup(self) -> None:
        self.bq = connect(self.target)
        self.key = row_key(self.row_policy)

    def teardown(self) -> None:
        self.bq.close()

    def process(self, batch):
        messages = [Message(m.data, m.message_id, to_micros(m.publish_time) if m.publish_time else None,
                            dict(m.attributes or {})) for m in batch]
        processed = process_messages(messages, self.settings.subscription, self.ctx, self.policy,
                                     self.row_policy, self.key)
        processed.counts.update(landing.land_batch(
            self.bq, self.settings.landing, self.target.dead_letters, processed, messages,
            self.settings.subscription, self.ctx, now_micros(), payload_dir=self.settings.payload_dir))
        for metric, n in processed.counts.items():
            Metrics.counter("importer", metric.replace(":", "_")).inc(n)


class MergeLandedFn(beam.DoFn):
    """Dataflow: on each tick, MERGE the rows landed since the landing table's mark into the target
    (``landing_merge``: conflicts of the window recorded in the same transaction). Its counters are the
    streaming run's record beside its row in ``<table>__runs``: ``merged_rows``, ``merges``,
    ``merge_failures`` (a failed tick is retried by the next one: the mark did not move)."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget, ctx: ImportContext) -> None:
        self.settings, self.target, self.ctx = settings, target, ctx
        self._merged = Metrics.counter("importer", "merged_rows")
        self._merges = Metrics.counter("importer", "merges")
        self._failures = Metrics.counter("importer", "merge_failures")

    def setup(self) -> None:
        self.bq = connect(self.target)

    def process(self, _):
        try:
            result = landing_merge.merge_landed(self.bq, self.settings.landing, self.target, self.ctx.run_id,
                                                self.ctx.launch, from_micros(self.ctx.started_micros))
        except Exception as err:  # a tick that fails is not retried forever: the next tick merges from the mark
            self._failures.inc()
            log.error("MERGE of %s into %s failed (the next tick retries from the mark): %s",
                      self.settings.landing, self.target.events, err)
            return
        self._merges.inc()
        self._merged.inc(result.inserted)
