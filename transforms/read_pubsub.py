"""Import from a Pub/Sub subscription: read → parse → validate → normalize → land, then MERGE.

Two readers behind one transform, ``ImportSubscription``:

- On Dataflow: Beam's ``ReadFromPubSub`` feeds the stages and the landing write in one fused stage;
  Dataflow acknowledges a message only once that stage's output is durably committed. A periodic
  impulse MERGEs the landing table into the target.
- Locally: Beam's local runner acknowledges messages right after pulling them, before anything
  downstream runs, so a local run that dies would lose them. ``PullLandAckFn`` pulls large batches
  itself (google-cloud-pubsub), lands their rows and dead letters, and only then acknowledges them;
  it MERGEs every ``merge_interval`` seconds, and after ``stop_after_idle`` seconds without messages
  it runs a last MERGE, accounts for what it read and ends.

Event time is the event's own ``timestamp``; nothing is windowed on it (a watermark on years-old
event times would drop almost every historical event as late).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import landing
from transforms.bq_client import BigQueryTarget, TableRef
from transforms.messages import Message, process_messages
from transforms.records import ImportContext
from transforms.row_policy import RowPolicy
from transforms.serialize import conflict_record
from transforms.timestamps import TimestampPolicy, to_micros

log = logging.getLogger(__name__)
PULL_WINDOW = 2.0


@dataclass(frozen=True)
class StreamSettings:
    subscription: str
    landing: TableRef
    merge_interval: float = 60.0
    stop_after_idle: float | None = None  # None: run until interrupted
    max_messages: int = 1000
    lookback: timedelta = timedelta(hours=24)


def _micros_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _message(received) -> Message:
    m = received.message
    return Message(bytes(m.data), m.message_id, to_micros(m.publish_time), dict(m.attributes))


class PullLandAckFn(beam.DoFn):
    """The local reader: pull → process → land → acknowledge, in a loop; MERGE on a timer."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget, ctx: ImportContext,
                 policy: TimestampPolicy, row_policy: RowPolicy) -> None:
        self.settings, self.target, self.ctx, self.policy = settings, target, ctx, policy
        self.row_policy = row_policy
        self._messages = Metrics.counter("importer", "pubsub_messages")
        self._merged = Metrics.counter("importer", "merged_rows")

    def setup(self) -> None:
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.bq = self.target.connect()
        self.key = self.row_policy.key()

    def teardown(self) -> None:
        self.subscriber.close()
        self.bq.close()

    def _pull(self) -> list:
        """Up to ``max_messages`` messages: a pull returns a few hundred at most, so pull again while
        messages come, for at most ``PULL_WINDOW`` seconds (well inside the ack deadline)."""
        from google.api_core.exceptions import DeadlineExceeded

        received: list = []
        started = time.monotonic()
        while len(received) < self.settings.max_messages and time.monotonic() - started < PULL_WINDOW:
            try:
                response = self.subscriber.pull(
                    request={"subscription": self.settings.subscription,
                             "max_messages": self.settings.max_messages - len(received)},
                    timeout=10.0)
            except DeadlineExceeded:
                break
            if not response.received_messages:
                break
            received += response.received_messages
        return received

    def _merge(self, since: datetime) -> None:
        inserted = landing.merge_landed(self.bq, self.settings.landing, self.target, since, self.ctx.run_id,
                                        self.ctx.launch, _micros_datetime(self.ctx.started_micros))
        self._merged.inc(inserted)
        log.info("merged %d new row(s) from %s into %s", inserted, self.settings.landing, self.target.events)

    def process(self, _):
        s = self.settings
        # rows landed by an earlier run that died before its MERGE are merged by this one
        since = _now() - s.lookback
        counts: Counter = Counter()
        last_merge = idle_since = time.monotonic()
        try:
            while True:
                received = self._pull()
                if received:
                    idle_since = time.monotonic()
                    self._land(received, counts)
                elif s.stop_after_idle is not None and time.monotonic() - idle_since >= s.stop_after_idle:
                    log.info("no message for %.0f s: stopping", s.stop_after_idle)
                    break
                if s.merge_interval and time.monotonic() - last_merge >= s.merge_interval:
                    self._merge(since)
                    last_merge = time.monotonic()
        except KeyboardInterrupt:
            log.info("interrupted: last MERGE, then stop (unacknowledged messages will be redelivered)")
        self._merge(since)
        outcomes, conflicts = landing.run_outcomes(self.bq, s.landing, self.target.events, self.ctx.run_id, since)
        counts.update(outcomes)
        if conflicts:
            landing.append_conflicts(self.bq, self.target.conflicts, [conflict_record(c) for c in conflicts])
        for metric, n in counts.items():
            yield (s.subscription, metric), n

    def _land(self, received: list, counts: Counter) -> None:
        messages = [_message(r) for r in received]
        processed = process_messages(messages, self.settings.subscription, self.ctx, self.policy,
                                     self.row_policy, self.key)
        landing.append_rows(self.bq, self.settings.landing, processed.rows, to_micros(_now()))
        landing.append_dead_letters(self.bq, self.target.dead_letters, processed.dead_letters)
        # acknowledged only now: everything these messages held is in BigQuery
        self.subscriber.acknowledge(request={"subscription": self.settings.subscription,
                                             "ack_ids": [r.ack_id for r in received]})
        counts.update(processed.counts)
        self._messages.inc(len(messages))


class ProcessAndLandFn(beam.DoFn):
    """Dataflow: a batch of messages → rows and dead letters appended to their tables."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget, ctx: ImportContext,
                 policy: TimestampPolicy, row_policy: RowPolicy) -> None:
        self.settings, self.target, self.ctx, self.policy = settings, target, ctx, policy
        self.row_policy = row_policy
        self._counts: dict = {}

    def setup(self) -> None:
        self.bq = self.target.connect()
        self.key = self.row_policy.key()

    def teardown(self) -> None:
        self.bq.close()

    def process(self, batch):
        messages = [Message(m.data, m.message_id, to_micros(m.publish_time) if m.publish_time else None,
                            dict(m.attributes or {})) for m in batch]
        processed = process_messages(messages, self.settings.subscription, self.ctx, self.policy,
                                     self.row_policy, self.key)
        landing.append_rows(self.bq, self.settings.landing, processed.rows, to_micros(_now()))
        landing.append_dead_letters(self.bq, self.target.dead_letters, processed.dead_letters)
        for metric, n in processed.counts.items():
            Metrics.counter("importer", metric.replace(":", "_")).inc(n)


class MergeLandedFn(beam.DoFn):
    """Dataflow: on each tick, MERGE what landed within the lookback window into the target."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget) -> None:
        self.settings, self.target = settings, target
        self._merged = Metrics.counter("importer", "merged_rows")

    def setup(self) -> None:
        self.bq = self.target.connect()

    def process(self, _):
        since = _now() - self.settings.lookback
        self._merged.inc(landing.merge_landed(self.bq, self.settings.landing, self.target, since, self.ctx.run_id,
                                             self.ctx.launch, _micros_datetime(self.ctx.started_micros)))


class ImportSubscription(beam.PTransform):
    """Read a subscription into the target. ``local=True``: the pull-land-ack reader (returns report
    counts when it stops); otherwise Beam's ReadFromPubSub in a streaming job (returns None: its
    counts are metrics)."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget, ctx: ImportContext,
                 policy: TimestampPolicy, local: bool, row_policy: RowPolicy = RowPolicy()) -> None:
        super().__init__()
        self.settings, self.target, self.ctx, self.policy, self.local = settings, target, ctx, policy, local
        self.row_policy = row_policy

    def expand(self, pbegin):
        s = self.settings
        stage_args = (s, self.target, self.ctx, self.policy, self.row_policy)
        if self.local:
            return (pbegin | "Start" >> beam.Create([None])
                    | "PullLandAck" >> beam.ParDo(PullLandAckFn(*stage_args)))
        from apache_beam.io.gcp.pubsub import ReadFromPubSub
        from apache_beam.transforms.periodicsequence import PeriodicImpulse

        _ = (pbegin
             | "ReadFromPubSub" >> ReadFromPubSub(subscription=s.subscription, with_attributes=True)
             | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=s.max_messages)
             | "ProcessAndLand" >> beam.ParDo(ProcessAndLandFn(*stage_args)))
        if s.merge_interval:
            _ = (pbegin
                 | "MergeTimer" >> PeriodicImpulse(fire_interval=s.merge_interval, apply_windowing=False)
                 | "MergeLanded" >> beam.ParDo(MergeLandedFn(s, self.target)))
        return None
