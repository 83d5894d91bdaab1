"""BigQuery connection: validated table names, and a client for real BigQuery or a local emulator.

Real BigQuery uses Application Default Credentials; an ``endpoint`` (the local emulator) uses
anonymous credentials at that address. Every call gets a short retry deadline: the client's default
retries HTTP 5xx for ten minutes, which against a dead emulator looks like a hang.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# BigQuery's naming rules, narrowed to what is safe to put between backquotes in SQL.
_PROJECT = r"(?:[a-z][a-z0-9.-]{0,61}:)?[a-z][a-z0-9-]{4,61}[a-z0-9]"
_DATASET = r"[A-Za-z_][A-Za-z0-9_]{0,1023}"
_TABLE = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}"
_FULL = re.compile(rf"^(?P<project>{_PROJECT})[.:](?P<dataset>{_DATASET})\.(?P<table>{_TABLE})$")

CALL_DEADLINE_SECONDS = 60.0
JOB_TIMEOUT_SECONDS = 900.0
"""Read-only queries only (reports, checks): jobs that write wait without a limit (``bq_jobs.wait``)."""


class TargetError(RuntimeError):
    """BigQuery is unreachable, or the target cannot take the rows: stop with this message."""


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
    """Where the rows go: the tables, and how to reach BigQuery. Picklable, so DoFns carry it."""

    events: TableRef
    dead_letters: TableRef
    conflicts: TableRef
    endpoint: str | None = None  # None: real BigQuery with Application Default Credentials
    location: str | None = None
    retry_seconds: float = CALL_DEADLINE_SECONDS

    @classmethod
    def for_events(cls, output_table: str, dead_letter_table: str | None = None, conflicts_table: str | None = None,
                   endpoint: str | None = None, location: str | None = None,
                   retry_seconds: float = CALL_DEADLINE_SECONDS) -> BigQueryTarget:
        """The tables of one events table, from flag values: dead letters and conflicts default to
        ``OUTPUT_TABLE_dead_letters`` and ``OUTPUT_TABLE_conflicts``. Bad names raise ValueError."""
        events = TableRef.parse(output_table)

        def table(given: str | None, suffix: str) -> TableRef:
            return TableRef.parse(given) if given else events.sibling(events.table + suffix)

        return cls(events, table(dead_letter_table, "_dead_letters"), table(conflicts_table, "_conflicts"),
                   endpoint.rstrip("/") if endpoint else None, location, retry_seconds)

    def connect(self) -> BigQuerySession:
        return BigQuerySession(make_client(self.events.project, self.endpoint, self.location), self.retry_seconds,
                               emulated=self.endpoint is not None)

    @property
    def where(self) -> str:
        return f"local emulator at {self.endpoint}" if self.endpoint else "BigQuery"


def make_client(project: str, endpoint: str | None, location: str | None = None):
    """A BigQuery client for real BigQuery (ADC) or, with ``endpoint``, an emulator (anonymous)."""
    from google.cloud import bigquery

    if endpoint is None:
        return bigquery.Client(project=project, location=location)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    os.environ.setdefault("NO_GCE_CHECK", "true")  # no metadata-server probe for an emulator
    return bigquery.Client(project=project, location=location, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


@dataclass
class BigQuerySession:
    """A client and the retry deadline every call made with it gets."""

    client: object
    retry_seconds: float = CALL_DEADLINE_SECONDS
    emulated: bool = False  # an --bigquery_endpoint (the local emulator): it cannot read gs:// URIs of a GCS stand-in

    def retry(self):
        from google.cloud import bigquery

        return bigquery.DEFAULT_RETRY.with_deadline(self.retry_seconds)

    @property
    def timeout(self) -> float:
        return min(30.0, self.retry_seconds)

    def close(self) -> None:
        self.client.close()
