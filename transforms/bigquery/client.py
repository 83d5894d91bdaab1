"""BigQuery connection: a client for real BigQuery or a local emulator (table names: ``core.settings``).

Real BigQuery uses Application Default Credentials; an ``endpoint`` (the local emulator) uses
anonymous credentials at that address. Every call gets a short retry deadline: the client's default
retries HTTP 5xx for ten minutes, which against a dead emulator looks like a hang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from transforms.core.settings import CALL_DEADLINE_SECONDS, BigQueryTarget

JOB_TIMEOUT_SECONDS = 900.0
"""Read-only queries only (reports, checks): jobs that write wait without a limit (``jobs.wait``)."""


class TargetError(RuntimeError):
    """BigQuery is unreachable, or the target cannot take the rows: stop with this message."""


def connect(target: BigQueryTarget) -> BigQuerySession:
    """A session on ``target``'s BigQuery (real, or the emulator at its endpoint)."""
    return BigQuerySession(make_client(target.events.project, target.endpoint, target.location), target.retry_seconds,
                           emulated=target.endpoint is not None, local_files=target.emulator_load == "local_files")


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
    local_files: bool = False  # --emulator_load=local_files: the emulator reads local staged files in place

    def retry(self):
        from google.cloud import bigquery

        return bigquery.DEFAULT_RETRY.with_deadline(self.retry_seconds)

    @property
    def timeout(self) -> float:
        return min(30.0, self.retry_seconds)

    def close(self) -> None:
        self.client.close()


def query_config(params: dict | None):
    from google.cloud import bigquery

    kinds = {int: "INT64", str: "STRING", datetime: "TIMESTAMP", float: "FLOAT64", bool: "BOOL"}
    return bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(name, kinds[type(value)], value) for name, value in (params or {}).items()
    ])


def query(bq: BigQuerySession, sql: str, params: dict | None = None) -> list[dict]:
    """Run SQL with named parameters (values never go into the SQL text), through ``jobs.query``: one call
    that answers with the rows when the query is short (a job, its creation and two polls otherwise;
    on the emulator a lookup took 0.038 s instead of 0.064 s). Its ``requestId`` makes a retried call
    idempotent (https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/query, ``requestId``).
    Here, not in ``tables``, so that ``./run.sh query`` starts without importing Beam (0.9 s of its 1.4 s)."""
    rows = bq.client.query_and_wait(sql, job_config=query_config(params), retry=bq.retry(), job_retry=None,
                                    api_timeout=bq.timeout, wait_timeout=JOB_TIMEOUT_SECONDS)
    # job_retry=None: any other value wraps the call in a private 10-minute retry (client 3.47);
    # api_timeout: without one, a call that gets no answer waits forever, whatever the retry deadline
    return [dict(row.items()) for row in rows]
