"""Opt-in privacy: keyed pseudonyms for user identifiers, and redacted dead-letter payloads.

Pseudonyms are HMAC-SHA256 of the value under a secret key, hex-encoded: the same input and key give
the same pseudonym (joins and dedupe still work), and without the key they cannot be reversed or
recomputed from a guessed e-mail address. The key comes from an environment variable or Google Secret
Manager, never from a file in the repository, and is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache

import pyarrow as pa

from transforms.core.distinct import map_distinct
from transforms.core.settings import is_local_runner

MIN_KEY_BYTES = 16


class MissingKeyError(ValueError):
    """The pseudonymization key is missing or too short."""


def load_key(env_var: str | None, secret: str | None) -> bytes:
    """The HMAC key, from ``env_var`` or a Secret Manager version name."""
    if secret:
        from google.cloud import secretmanager

        client = secretmanager.SecretManagerServiceClient()
        key = client.access_secret_version(name=secret).payload.data
    else:
        value = os.environ.get(env_var or "")
        if not value:
            raise MissingKeyError(f"pseudonymization needs a key: set the environment variable {env_var} "
                            f"(at least {MIN_KEY_BYTES} bytes) or give --hash_key_secret")
        key = value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise MissingKeyError(f"the pseudonymization key must be at least {MIN_KEY_BYTES} bytes")
    return key


def check_key_reaches_workers(env_var: str | None, secret: str | None, runner: str | None) -> None:
    """At launch: refuse a key the workers cannot read. An environment variable exists in the launcher's
    process and in local workers (its children); a Dataflow worker has its own environment, so every
    one of them would fail on its first batch. The key is not shipped to them either: it would then be
    part of the job's options, readable by anyone who can view the job."""
    if secret or is_local_runner(runner):
        return
    raise MissingKeyError(f"--pseudonymize with --runner={runner}: a key in the environment variable {env_var} "
                          f"(--hash_key_env) reaches this machine's processes only, not the workers; store the key "
                          f"in Secret Manager and give --hash_key_secret projects/P/secrets/S/versions/V instead "
                          f"(each worker reads it there)")


@lru_cache(maxsize=65_536)
def _pseudonym(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def pseudonymize(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """HMAC-SHA256 (hex) of each non-null value, computed once per distinct value."""
    return map_distinct(values, lambda v: _pseudonym(key, v), pa.string())


def redact(dead: dict) -> dict:
    """A dead letter without its payload: only a SHA-256 digest and the size are kept, so the record
    stays countable and matchable (same payload, same digest) but cannot be read or replayed."""
    raw = dead["raw_payload"].encode("utf-8", "surrogatepass") if dead["raw_payload"] is not None else b""
    digest = hashlib.sha256(raw).hexdigest()
    reasons = [{**r, "value": None} for r in dead["reasons"]]
    return {**dead, "reasons": reasons, "raw_payload": f"[redacted sha256:{digest}]", "raw_payload_base64": None}
