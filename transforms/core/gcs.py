"""Beam's GCS filesystem reaches a local GCS stand-in through ``STORAGE_EMULATOR_HOST`` alone.

The official client already sends its requests to ``STORAGE_EMULATOR_HOST`` (with anonymous
credentials when none are given), but Beam 2.77's ``gcsio.create_storage_client`` first asks for
Application Default Credentials: without any, ``google.auth.default`` is retried with backoff for
about 20 s before Beam falls back to an anonymous client — in the launcher and again in every worker
process. With credentials present, it would send a real token to the stand-in and need the network
to refresh it. So while the variable is set, Beam's GCS clients are made anonymous from the start, as
the official client does; unset, nothing changes.

Importing this module installs the hook (idempotent). It must be imported in every process that
touches ``gs://`` before its first GCS call: the launcher and the worker processes (a module the
stages import is enough, since workers import it when they unpickle the stages).
"""

from __future__ import annotations

import os

from apache_beam.io.gcp import gcsio

EMULATOR_HOST_VARIABLE = "STORAGE_EMULATOR_HOST"


def emulator_host() -> str | None:
    return os.environ.get(EMULATOR_HOST_VARIABLE) or None


def _storage_client(pipeline_options, use_credentials=True, _beam=gcsio.create_storage_client):
    # read at every call, not at import: a worker forked before the variable was set still honours it
    return _beam(pipeline_options, use_credentials=use_credentials and emulator_host() is None)


def install() -> None:
    """Route Beam's GCS clients through ``_storage_client`` (``GcsIO`` looks the module-level name up at
    each construction, and ``GCSFileSystem`` builds a new ``GcsIO`` per operation)."""
    if getattr(gcsio.create_storage_client, "__name__", "") != _storage_client.__name__:
        gcsio.create_storage_client = _storage_client


install()
