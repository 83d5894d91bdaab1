"""Import from a Pub/Sub subscription: read → parse → validate → normalize → land, then MERGE.

Two readers behind one transform, ``ImportSubscription``:

- On Dataflow (``transforms.pubsub.dataflow``): Beam's ``ReadFromPubSub`` feeds the stages and the
  landing write in one fused stage; Dataflow acknowledges a message only once that stage's output is
  durably committed. A periodic impulse MERGEs the landing table into the target.
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
import threading
import time
from collections import Counter
from datetime import datetime

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.bigquery import landing, landing_merge
from transforms.bigquery.client import connect
from transforms.core.records import ImportContext, Message, ProcessedMessages
from transforms.core.serialize import conflict_record
from transforms.core.settings import BigQueryTarget, RowPolicy, StreamSettings, TimestampPolicy
from transforms.core.timestamps import from_micros, now_micros
from transforms.pubsub.messages import process_messages
from transforms.stages.row_policy import row_key

log = logging.getLogger(__name__)
PULL_WINDOW = 2.0
PULL_TIMEOUT = 5.0
"""Longest wait for a pull that finds nothing (bounds how late an idle stop or a Ctrl-C is noticed)."""
LAND_THREADS = 1
"""Batches landed at once by the local reader, while the next one is pulled and processed. More would
be faster on BigQuery, but the local emulator's insertId cache is not thread-safe (two concurrent
insertAll requests can fail with a KeyError)."""
ACK_CHUNK = 1000
INTERRUPTED = ("interrupted: landing the batches being landed, returning the others to the subscription, then a "
               "last MERGE and the report (Ctrl-C again to leave at once)")
"""Ack ids per acknowledge request, as google-cloud-pubsub's own dispatcher sends them."""


PROGRESS_SECONDS = 10.0
"""How often a subscription import says how far it got."""


class PullLandAckFn(beam.DoFn):
    """The local reader: pull → process → land → acknowledge, in a loop; MERGE on a timer.

    Three threads, so that pulling and processing the next batch overlaps the landing of the current
    ones: a reader thread pulls (synchronous pulls: on the emulator about ten times the official
    client's streaming pull, see bench/pubsub_bench.py) and processes a batch, then hands it to
    ``LAND_THREADS`` landing threads, which land its rows and dead letters and only then acknowledge
    it; the DoFn's own (main) thread runs the MERGEs and takes Ctrl-C. On Ctrl-C (SIGINT) the reader
    stops pulling, the batches being landed are landed and acknowledged, the batches pulled but not
    landed are returned to the subscription (``modifyAckDeadline`` 0, counted ``returned_unacked``),
    then a last MERGE and the report, which balances."""

    def __init__(self, settings: StreamSettings, target: BigQueryTarget, ctx: ImportContext,
                 policy: TimestampPolicy, row_policy: RowPolicy) -> None:
        self.settings, self.target, self.ctx, self.policy = settings, target, ctx, policy
        self.row_policy = row_policy
        self._messages = Metrics.counter("importer", "pubsub_messages")
        self._merged = Metrics.counter("importer", "merged_rows")

    def setup(self) -> None:
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.bq = connect(self.target)  # the main thread's (MERGE, outcomes)
        self.key = row_key(self.row_policy)

    def teardown(self) -> None:
        self.subscriber.close()
        self.bq.close()

    def _pull(self, stop: threading.Event, timeout: float) -> list:
        """Up to ``max_messages`` messages (raw ``ReceivedMessage`` protobufs: proto-plus wrappers cost
        more than the processing): a pull returns about a hundred, so pull again while messages come,
        for at most ``PULL_WINDOW`` seconds (well inside the ack deadline). ``timeout`` bounds a pull
        that finds nothing (the server holds it open for up to about ten seconds)."""
        from google.api_core.exceptions import DeadlineExceeded
        from google.pubsub_v1.types import PullResponse

        received: list = []
        started = time.monotonic()
        while len(received) < self.settings.max_messages and time.monotonic() - started < PULL_WINDOW:
            try:
                response = self.subscriber.pull(
                    request={"subscription": self.settings.subscription,
                             "max_messages": self.settings.max_messages - len(received)},
                    timeout=timeout if not received else min(timeout, 2.0))
            except DeadlineExceeded:
                break
            batch = PullResponse.pb(response).received_messages
            if not batch:
                break
            received += batch
            if stop.is_set():
                break
        return received

    @staticmethod
    def _message(received) -> Message:
        m = received.message
        t = m.publish_time
        publish = t.seconds * 1_000_000 + t.nanos // 1000 if m.HasField("publish_time") else None
        return Message(m.data, m.message_id, publish, dict(m.attributes))

    def _merge(self, since: datetime | None = None) -> int:
        # incremental: from the landing table's mark (landing_merge); ``since`` is not needed any more
        inserted = landing_merge.merge_landed(self.bq, self.settings.landing, self.target, self.ctx.run_id,
                                              self.ctx.launch, from_micros(self.ctx.started_micros)).inserted
        self._merged.inc(inserted)
        log.info("merged %d new row(s) from %s into %s", inserted, self.settings.landing, self.target.events)
        return inserted

    def process(self, _):
        s = self.settings
        # rows landed by an earlier run that died before its MERGE are merged by this one (from the mark);
        # the report counts the rows this run landed, since it started
        since = from_micros(self.ctx.started_micros)
        loop = _ReadLoop(self)
        restore = self._stop_on_sigint(loop.stop)
        last_merge = last_told = started = time.monotonic()
        merged = 0
        acked_at_merge = None  # the first tick merges whatever earlier runs left; later ones, only new rows
        try:
            loop.start()
            while not loop.wait(0.5):
                if (s.merge_interval and not loop.stop.is_set()
                        and time.monotonic() - last_merge >= s.merge_interval):
                    if loop.acked != acked_at_merge:  # an idle stream runs (and is billed for) no MERGE
                        acked_at_merge = loop.acked
                        merged += self._merge(since)
                    last_merge = time.monotonic()
                if time.monotonic() - last_told >= PROGRESS_SECONDS:  # long work: a line a person can follow
                    last_told = time.monotonic()
                    log.info("pubsub: %d message(s) acknowledged (%.0f/s), %d row(s) merged so far", loop.acked,
                             loop.acked / (last_told - started), merged)
        except KeyboardInterrupt:  # SIGINT as an exception: the handler could not be installed
            log.info(INTERRUPTED)
            loop.stop.set()
            loop.wait(None)
        finally:
            restore()
        loop.raise_failure()
        counts = loop.counts
        if loop.acked:
            log.info("pubsub reader: %d message(s) acknowledged in %.3f s from the first pull to the last "
                     "acknowledgement (%.1f s ago)", loop.acked, loop.last_ack - loop.first_pull,
                     time.monotonic() - loop.last_ack)
        if counts["returned_unacked"]:
            log.info("%d record(s) pulled but not landed returned to the subscription (redelivered to the next run)",
                     counts["returned_unacked"])
        self._messages.inc(loop.acked)
        self._merge(since)
        outcomes, conflicts = landing_merge.run_outcomes(self.bq, s.landing, self.target, self.ctx.run_id, since)
        counts.update(outcomes)
        if conflicts:
            landing.append_conflicts(self.bq, self.target.conflicts, [conflict_record(c) for c in conflicts])
        for metric, n in counts.items():
            yield (s.subscription, metric), n

    @staticmethod
    def _stop_on_sigint(stop: threading.Event):
        """The first Ctrl-C (SIGINT) sets ``stop``: the reader winds down and the run ends with its last
        MERGE and a balanced report; a second one interrupts at once. Returns what puts the previous
        handler back. (A handler rather than KeyboardInterrupt: the exception could strike in the middle
        of a MERGE or of the bookkeeping.)"""
        import signal

        def handler(signum, frame) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            log.info(INTERRUPTED)
            stop.set()

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: SIGINT stays a KeyboardInterrupt
            return lambda: None
        return lambda: signal.signal(signal.SIGINT, previous)

    def _process(self, bq, received: list) -> tuple:
        """(ack ids, messages, processed, which of its dead letters are stored already): the lookup is
        done here, in the reader thread, so that it overlaps the landing of the batch before."""
        messages = [self._message(r) for r in received]
        processed = process_messages(messages, self.settings.subscription, self.ctx, self.policy,
                                     self.row_policy, self.key)
        stored = (landing.stored_dead_letters(bq, self.target.dead_letters, processed.dead_letters)
                  if processed.dead_letters else None)
        return [r.ack_id for r in received], messages, processed, stored

    def _land(self, bq, ack_ids: list, messages: list[Message], processed: ProcessedMessages, stored) -> Counter:
        processed.counts.update(landing.land_batch(
            bq, self.settings.landing, self.target.dead_letters, processed, messages,
            self.settings.subscription, self.ctx, now_micros(), stored, self.settings.payload_dir))
        # acknowledged only now: everything these messages held is in BigQuery
        for start in range(0, len(ack_ids), ACK_CHUNK):
            self.subscriber.acknowledge(request={"subscription": self.settings.subscription,
                                                 "ack_ids": ack_ids[start:start + ACK_CHUNK]})
        return processed.counts

    def _return(self, ack_ids: list) -> None:
        """Hand pulled messages back at once (ack deadline 0) rather than when their deadline passes."""
        for start in range(0, len(ack_ids), ACK_CHUNK):
            try:
                self.subscriber.modify_ack_deadline(request={
                    "subscription": self.settings.subscription, "ack_ids": ack_ids[start:start + ACK_CHUNK],
                    "ack_deadline_seconds": 0})
            except Exception as err:  # they come back when their ack deadline passes anyway
                log.warning("could not return %d message(s) to the subscription at once: %s", len(ack_ids), err)


class _ReadLoop:
    """The threads of ``PullLandAckFn``: one reader (pull + process), ``LAND_THREADS`` landers (land +
    acknowledge, each with its own BigQuery session). At most ``LAND_THREADS`` batches are being landed
    and one more is being read, so pulled messages wait for seconds, well inside their ack deadline."""

    def __init__(self, fn: PullLandAckFn) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.fn = fn
        self.stop = threading.Event()
        self.counts: Counter = Counter()
        self.acked = 0
        self.first_pull = self.last_ack = time.monotonic()
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._slots = threading.Semaphore(LAND_THREADS)
        self._sessions = threading.local()
        self._opened: list = []
        self._landers = ThreadPoolExecutor(LAND_THREADS, thread_name_prefix="pubsub-land")
        self._thread = threading.Thread(target=self._read, name="pubsub-read", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None) -> bool:
        """True once the reader has ended and every batch handed to the landers is landed or failed."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _read(self) -> None:
        s = self.fn.settings
        idle_since = time.monotonic()
        try:
            while not self.stop.is_set() and self._failure is None:
                idle_left = None if s.stop_after_idle is None else s.stop_after_idle - (time.monotonic() - idle_since)
                received = self.fn._pull(self.stop, max(0.5, min(PULL_TIMEOUT, idle_left or PULL_TIMEOUT)))
                if not received:
                    if s.stop_after_idle is not None and time.monotonic() - idle_since >= s.stop_after_idle:
                        log.info("no message for %.0f s: stopping", s.stop_after_idle)
                        break
                    continue
                idle_since = time.monotonic()
                batch = self.fn._process(self._session(), received)
                # wait for a free lander (bounded: at most LAND_THREADS batches in flight)
                while not self._slots.acquire(timeout=0.2):
                    if self.stop.is_set() or self._failure is not None:
                        break
                else:
                    if not self.stop.is_set() and self._failure is None:
                        self._landers.submit(self._land, *batch)
                        continue
                    self._slots.release()
                self._give_back(batch)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self._failure = self._failure or err
        finally:
            self._landers.shutdown(wait=True)  # every batch handed over is landed and acknowledged (or failed)
            for bq in self._opened:
                bq.close()

    def _session(self):
        """This thread's BigQuery session (the client is not shared between threads)."""
        bq = getattr(self._sessions, "bq", None)
        if bq is None:
            bq = self._sessions.bq = connect(self.fn.target)
            self._opened.append(bq)
        return bq

    def _land(self, *batch) -> None:
        ack_ids = batch[0]
        try:
            if self._failure is not None:  # an earlier batch failed: this one goes back too
                self._give_back(batch)
                return
            counts = self.fn._land(self._session(), *batch)
            with self._lock:
                self.counts.update(counts)
                self.acked += len(ack_ids)
                self.last_ack = time.monotonic()
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self._failure = self._failure or err
        finally:
            self._slots.release()

    def _give_back(self, batch) -> None:
        """A batch pulled but not landed: returned to the subscription, its records counted as such."""
        ack_ids, _, processed, _ = batch
        self.fn._return(ack_ids)
        with self._lock:
            self.counts["read"] += processed.counts["read"]
            self.counts["returned_unacked"] += processed.counts["read"]


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

        from transforms.pubsub.dataflow import MergeLandedFn, ProcessAndLandFn

        _ = (pbegin
             | "ReadFromPubSub" >> ReadFromPubSub(subscription=s.subscription, with_attributes=True)
             | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=s.max_messages)
             | "ProcessAndLand" >> beam.ParDo(ProcessAndLandFn(*stage_args)))
        if s.merge_interval:
            _ = (pbegin
                 | "MergeTimer" >> PeriodicImpulse(fire_interval=s.merge_interval, apply_windowing=False)
                 | "MergeLanded" >> beam.ParDo(MergeLandedFn(s, self.target, self.ctx)))
        return None
