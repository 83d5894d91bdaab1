"""BigQuery jobs that a retried or duplicated step cannot run twice.

Dataflow retries a failed batch bundle (up to four times) and may let a worker whose lease expired
finish its work beside the retry ("zombie"); a BigQuery job they submit is an external side effect
that neither the retry nor the zombie knows about. Every job of the write step therefore gets an id
derived from the run, its launch and the step (``job_id``): BigQuery refuses a second ``jobs.insert``
with an id it already has (HTTP 409, "Already Exists"), so whoever comes second *attaches* to the job
already submitted and waits for its outcome instead of submitting a second one. This is the pattern of
Beam's own ``WriteToBigQuery`` file loads (``bigquery_file_loads.py`` gives its load and copy jobs
ids made from the job name and the destination, and ``bigquery_tools.py`` treats 409 on insert as
"the job exists"). Job ids: https://cloud.google.com/bigquery/docs/running-jobs#generate-jobid

A job that failed in a way that a new job can cure (a transaction cancelled by a concurrent one, a
backend error) is followed by the next *attempt* id (``…_a1``, ``…_a2``): a retried step walks the
same sequence, attaching to each attempt that exists, so it reaches the same job as the first
execution did. Waiting has no client-side time limit: giving up while a MERGE still runs is what let
a retry run a second MERGE beside the first.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from transforms.bigquery.client import BigQuerySession

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
"""Attempts of one step whose jobs failed retryably (a cancelled transaction, a backend error)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_RETRYABLE = (
    # BigQuery cancels the later of two conflicting transactions (docs: transactions#transaction_concurrency)
    "concurrent update", "could not serialize access", "transaction is aborted",
    # the local emulator's words for the same abort (DuckLake's optimistic commit)
    "failed to commit ducklake transaction",
    # errors BigQuery documents as "retry the job" (docs: troubleshoot errors, backendError / internalError)
    "backenderror", "internalerror", "internal error encountered", "jobbackenderror", "jobinternalerror",
)


def job_id(run_id: str, launch: str, step: str, attempt: int = 0) -> str:
    """``rlvt_<run>_<launch>_<step>_a<attempt>``: the same for every execution of one step of one launch.

    Job ids take letters, digits, underscores and dashes, at most 1,024 characters."""
    return _UNSAFE.sub("_", f"rlvt_{run_id}_{launch}_{step}_a{attempt}")[:1024]


def is_retryable(err: BaseException) -> bool:
    """Would a new job (the next attempt) likely succeed where this one failed?"""
    text = f"{type(err).__name__} {err} {getattr(err, 'errors', '')}".lower()
    return any(marker in text for marker in _RETRYABLE)


def submit_or_attach(bq: BigQuerySession, job_name: str, submit: Callable[[str], object], look_first: bool = False):
    """``submit(job_name)`` creates the job; when BigQuery already has a job of that id (a retry, a
    zombie, a lost answer to the first insert), that job is returned instead. ``look_first``: ask for
    the job before submitting (for an upload, whose files a retry may no longer have)."""
    from google.api_core.exceptions import BadRequest, Conflict, NotFound

    if look_first:
        try:
            job = bq.client.get_job(job_name, location=bq.client.location, retry=bq.retry(), timeout=bq.timeout)
            log.info("job %s was already submitted: attaching to it", job_name)
            return job
        except NotFound:
            pass
    try:
        return submit(job_name)
    except Conflict:
        log.info("job %s was already submitted: attaching to it", job_name)
    except BadRequest as err:
        # the local emulator answers a second upload of one job id with 400 "Duplicate key … job_id: <id>"
        # (or, when the two race to commit, "… UNIQUE constraint violation: duplicate key "<project>, <id>"")
        # where BigQuery answers 409; the same meaning, so the same answer
        if "duplicate key" not in str(err).lower() or job_name not in str(err):
            raise
        log.info("job %s was already submitted: attaching to it", job_name)
    # right after a 409 the job may not be readable yet (python-bigquery issue 2134): a few tries
    for pause in (0.5, 1, 2, 4, 8, 0):
        try:
            return bq.client.get_job(job_name, location=bq.client.location, retry=bq.retry(), timeout=bq.timeout)
        except NotFound:
            if not pause:
                raise
            time.sleep(pause)


def wait(bq: BigQuerySession, job) -> object:
    """Wait for ``job`` to finish, however long it takes; raises its error if it failed.

    Each poll is one short, retried call and there is no overall deadline. A poll that fails while
    the job still runs is not the job's failure: the wait goes on (a new attempt beside a live job is
    exactly what must not happen). Unreachable BigQuery ends the wait with that error; a retry of the
    step attaches to the same job."""
    kwargs = {"job_retry": None} if hasattr(job, "query") else {}
    while True:
        try:
            return job.result(retry=bq.retry(), timeout=None, **kwargs)
        except Exception as err:
            job.reload(retry=bq.retry(), timeout=bq.timeout)  # raises when BigQuery cannot be reached
            if job.state == "DONE":
                raise
            log.warning("waiting for job %s: %s; it still runs, waiting on", job.job_id, str(err)[:200])
            time.sleep(2.0)


def run_step(bq: BigQuerySession, run_id: str, launch: str, step: str, submit: Callable[[str], object],
             look_first: bool = False):
    """Run one step's job exactly once per launch (see the module docstring); returns the finished job."""
    for attempt in range(MAX_ATTEMPTS):
        name = job_id(run_id, launch, step, attempt)
        job = submit_or_attach(bq, name, submit, look_first)
        try:
            wait(bq, job)
            return job
        except Exception as err:  # the job's own error: the next attempt only if a new job can cure it
            if attempt + 1 == MAX_ATTEMPTS or not is_retryable(err):
                raise
            pause = min(60.0, 2.0 ** attempt)
            log.warning("job %s failed (%s); attempt %d in %.0f s", name, str(err).splitlines()[0][:200],
                        attempt + 1, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")
