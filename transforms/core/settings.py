"""The value types an import is configured with: what ``pipeline.options`` builds from the flags and
hands to the transforms. Plain frozen dataclasses and constants (no Beam, no client library), so the
launcher's checks and the workers share one definition, and every value is picklable into the job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

FORMATS = ("ndjson", "json", "csv", "parquet")
"""``--input_format`` choices besides ``auto`` (``transforms.sources.files`` reads them)."""
PSEUDONYMIZABLE = ("clientId", "tmpId")
"""Columns ``--pseudonymize`` may name (``transforms.stages.privacy``)."""
PAYLOADS_DIR = "dead_letter_payloads"
"""The payloads folder under ``--output_dir`` (the file sink's default; ``transforms.core.payloads``)."""
LOCAL_RUNNERS = ("directrunner", "fnapirunner", "bundlebaseddirectrunner")
"""Beam runners (lower case, as Beam resolves ``--runner``) whose workers are this machine's processes,
started from the launcher."""
CALL_DEADLINE_SECONDS = 60.0
"""Retry deadline of every BigQuery call (``transforms.bigquery.client``)."""


def is_local_runner(runner: str | None) -> bool:
    """Whether ``--runner`` (None: the importer's local default) runs the workers here. Beam takes
    ``DataflowRunner``, ``dataflow`` or a dotted class path alike; any runner not known to be local is not."""
    if runner is None:
        return True
    name = runner.rsplit(".", 1)[-1].lower()
    return name in LOCAL_RUNNERS or name + "runner" in LOCAL_RUNNERS


def to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_instant(text: str) -> int:
    """An ISO-8601 instant (``2026-01-31``, ``2026-01-31T12:00:00Z``…) as UTC microseconds."""
    # upper(): RFC 3339 allows a lower-case `z` (and `t`), which fromisoformat refuses
    return to_micros(datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00")))


@dataclass(frozen=True)
class TimestampPolicy:
    """How to read and bound event times (``transforms.core.timestamps``)."""

    unit: str = "auto"  # auto | s | ms | us
    min_micros: int = 946_684_800_000_000  # 2000-01-01T00:00:00Z
    max_micros: int | None = None  # None: no upper bound
    fill_micros: int | None = None  # None: a missing timestamp is rejected


@dataclass(frozen=True)
class ReadLimits:
    batch_size: int = 50_000
    max_line_bytes: int = 1 << 20
    payload_dir: str | None = None
    """Where a dead letter's payload too large for the dead-letter table is stored whole
    (``transforms.core.payloads``); None: it is only cut."""


@dataclass(frozen=True)
class RowPolicy:
    """What a run may choose to change on normalized rows (``transforms.stages.row_policy``)."""

    drop_bots: bool = False
    pseudonymize: tuple[str, ...] = ()  # columns among PSEUDONYMIZABLE
    hash_key_env: str | None = None
    hash_key_secret: str | None = None
    redact_dead_letters: bool = False

    @property
    def changes_rows(self) -> bool:
        return self.drop_bots or bool(self.pseudonymize)


# BigQuery's naming rules, narrowed to what is safe to put between backquotes in SQL.
_PROJECT = r"(?:[a-z][a-z0-9.-]{0,61}:)?[a-z][a-z0-9-]{4,61}[a-z0-9]"
_DATASET = r"[A-Za-z_][A-Za-z0-9_]{0,1023}"
_TABLE = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}"
_FULL = re.compile(rf"^(?P<project>{_PROJECT})[.:](?P<dataset>{_DATASET})\.(?P<table>{_TABLE})$")


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """``PROJECT.DATASET.TABLE`` or ``PROJECT:DATASET.TABLE``; anything else is a ValueError."""
        m = _FULL.match(text.strip())
        if not m:
            raise ValueError(
                f"{text!r} is not a BigQuery table name: write PROJECT.DATASET.TABLE (project: lower-case "
                f"letters, digits and dashes; dataset: letters, digits and underscores; table: letters, "
                f"digits, underscores and dashes)")
        return cls(m["project"], m["dataset"], m["table"])

    def sibling(self, table: str) -> TableRef:
        return TableRef.parse(f"{self.project}.{self.dataset}.{table}")

    @property
    def api_id(self) -> str:
        """``project.dataset.table`` as the client library takes it."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def sql(self) -> str:
        """The table quoted for SQL (its parts were validated by ``parse``)."""
        return f"`{self.project}.{self.dataset}.{self.table}`"

    def __str__(self) -> str:
        return self.api_id


@dataclass(frozen=True)
class BigQueryTarget:
    """Where the rows go: the tables, and how to reach BigQuery (``transforms.bigquery.client.connect``).
    Picklable, so DoFns carry it."""

    events: TableRef
    dead_letters: TableRef
    conflicts: TableRef
    endpoint: str | None = None  # None: real BigQuery with Application Default Credentials
    location: str | None = None
    retry_seconds: float = CALL_DEADLINE_SECONDS
    emulator_load: str = "upload"  # with an endpoint: "upload", or "local_files" (the emulator reads them in place)

    @classmethod
    def for_events(cls, output_table: str, dead_letter_table: str | None = None, conflicts_table: str | None = None,
                   endpoint: str | None = None, location: str | None = None,
                   retry_seconds: float = CALL_DEADLINE_SECONDS, emulator_load: str = "upload") -> BigQueryTarget:
        """The tables of one events table, from flag values: dead letters and conflicts default to
        ``OUTPUT_TABLE_dead_letters`` and ``OUTPUT_TABLE_conflicts``. Bad names raise ValueError."""
        events = TableRef.parse(output_table)

        def table(given: str | None, suffix: str) -> TableRef:
            return TableRef.parse(given) if given else events.sibling(events.table + suffix)

        return cls(events, table(dead_letter_table, "_dead_letters"), table(conflicts_table, "_conflicts"),
                   endpoint.rstrip("/") if endpoint else None, location, retry_seconds, emulator_load)

    @property
    def where(self) -> str:
        return f"local emulator at {self.endpoint}" if self.endpoint else "BigQuery"


@dataclass(frozen=True)
class StreamSettings:
    """A Pub/Sub import (``transforms.pubsub``)."""

    subscription: str
    landing: TableRef
    merge_interval: float = 60.0
    stop_after_idle: float | None = None  # None: run until interrupted
    max_messages: int = 1000
    payload_dir: str | None = None  # --dead_letter_payloads: where payloads too large for a dead letter go
