"""Dead-letter payloads too large to keep whole in the dead-letter table: stored whole beside it.

A dead letter keeps at most ``TABLE_PAYLOAD_BYTES`` of its payload in the table (its text and, when
cut, the base64 of the cut bytes: a row of at most about 4.5 MB, under every BigQuery row limit,
insertAll's 10 MB included; see ``transforms.core.bigquery_values``). A larger payload is written whole
to a file under the payloads folder (``--dead_letter_payloads``; ``OUTPUT_DIR/dead_letter_payloads``
with the file sink), local or ``gs://``, and the dead letter names it in ``raw_payload_uri``:
``./run.sh replay`` reads the payload from there. Without a folder the payload is only cut.

A payload held whole in memory is named by its content (SHA-256): two dead letters never share a file
unless they hold the same bytes, and a retried bundle writes the same file again rather than a second
one. A line written while it is read is named by its file and byte offset.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

import orjson
from apache_beam.io.filesystems import FileSystems

from transforms.core.bigquery_values import MAX_LOAD_ROW_BYTES

TABLE_PAYLOAD_BYTES = 1 << 20
"""Most of a payload a dead-letter row holds (1 MiB)."""
MAX_STORED_BYTES = MAX_LOAD_ROW_BYTES
"""Largest payload stored whole: a larger one could never become a BigQuery row, even replayed (a line of
gigabytes is a broken file, not a record: a 300 KB gzip bomb was 300 MB on disk), so it is only cut."""


PAYLOAD_NAME = re.compile(r"[0-9a-f]{40}\.payload")
"""The name of every payload file the import writes (``payload_path``)."""


def payload_path(folder: str, run_id: str, origin: object) -> str:
    """Where the whole payload of the record at ``origin`` (any JSON-able key) is stored."""
    digest = hashlib.sha256(orjson.dumps(origin)).hexdigest()[:40]
    return FileSystems.join(folder, run_id, f"{digest}.payload")


def is_payload_path(uri: str) -> bool:
    """Whether ``uri`` names a file the import wrote (``payload_path``), not some other file a dead letter
    was edited to name."""
    return bool(PAYLOAD_NAME.fullmatch(uri.rsplit("/", 1)[-1]))


def store_whole(folder: str, run_id: str, payload: bytes) -> str:
    """Write a payload held in memory (at most ``MAX_STORED_BYTES``) under its content's name."""
    path = payload_path(folder, run_id, ["sha256", hashlib.sha256(payload).hexdigest()])
    write_payload(path, [payload])
    return path


def exact_bytes(dead: dict) -> bytes:
    """The payload bytes a dead letter holds (from ``raw_payload_base64`` when set)."""
    if dead.get("raw_payload_base64"):
        return base64.b64decode(dead["raw_payload_base64"])
    return (dead.get("raw_payload") or "").encode("utf-8", "surrogatepass")


def write_payload(path: str, chunks: Iterable[bytes]) -> None:
    """Write a payload whole (the caller checks it is at most ``MAX_STORED_BYTES``)."""
    with FileSystems.create(path) as f:
        for chunk in chunks:
            f.write(chunk)


class PayloadSpill:
    """A whole payload written piece by piece while it is read (a line longer than ``--max_line_bytes``
    is never held in memory whole); given up, and its file removed, past ``MAX_STORED_BYTES``."""

    def __init__(self, path: str, max_bytes: int = MAX_STORED_BYTES) -> None:
        self.path, self.max_bytes, self.written = path, max_bytes, 0
        self._file = FileSystems.create(path)

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            return
        self.written += len(chunk)
        if self.written > self.max_bytes:
            self._file.close()
            self._file = None
            FileSystems.delete([self.path])
            return
        self._file.write(chunk)

    def close(self) -> str | None:
        """The payload file, or None when the payload was too large to keep."""
        if self._file is None:
            return None
        self._file.close()
        return self.path


def cut(dead: dict, payload: bytes, limit: int) -> dict:
    """``dead`` holding only the first ``limit`` bytes of ``payload`` (exactly, in base64)."""
    head = payload[:limit]
    return {**dead, "raw_payload": head.decode("utf-8", errors="replace"),
            "raw_payload_base64": base64.b64encode(head).decode("ascii"),
            "raw_bytes": max(dead.get("raw_bytes") or 0, len(payload))}


def keep_whole(dead: dict, payload: bytes, folder: str | None, run_id: str, limit: int) -> dict:
    """A dead letter whose ``payload`` is over ``limit``: stored whole under ``folder`` (when there is
    one) and referenced, and cut to ``limit`` in the row."""
    if len(payload) <= limit:
        return dead
    out = cut(dead, payload, limit)
    if folder and not dead.get("raw_payload_uri") and len(payload) <= MAX_STORED_BYTES:
        out["raw_payload_uri"] = store_whole(folder, run_id, payload)
    return out


def bound_payloads(batch: list[dict], folder: str | None, limit: int = TABLE_PAYLOAD_BYTES) -> list[dict]:
    """Dead letters with at most ``limit`` payload bytes each; the larger payloads stored whole under
    ``folder`` first (unless the reader stored them already: ``raw_payload_uri`` set)."""
    out = []
    for dead in batch:
        text, exact = dead.get("raw_payload") or "", dead.get("raw_payload_base64")
        if (len(exact) if exact else 4 * len(text)) <= limit:  # base64 is longer than its bytes; UTF-8 ≤ 4 a char
            out.append(dead)
        else:
            out.append(keep_whole(dead, exact_bytes(dead), folder, dead["run_id"], limit))
    return out
