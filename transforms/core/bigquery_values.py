"""Values BigQuery would refuse, caught before any load: every class, where it is caught, and why.

A value BigQuery refuses fails a whole load job (every row of the import) or, through insertAll,
comes back as a refused row; so each class is found in validation (or before: the reader, the
parser) and dead-lettered with a reason of its own. The limits are BigQuery's documented ones:

- **Rows too large** (``row:too_large``): a load job takes rows up to 100 MB, JSON or Parquet
  (https://cloud.google.com/bigquery/quotas#load_jobs, "Maximum row and cell size"); insertAll,
  which the Pub/Sub landing uses, rows up to 10 MB in requests up to 10 MB
  (https://cloud.google.com/bigquery/quotas#streaming_inserts; older revisions of the streaming page
  said 1 MB and 20 KB rows: check the page before relying on the figure). A record whose payload is larger than
  its path allows (``validate_batch(..., max_row_bytes=…)``) is a dead letter here; the landing also
  measures each row's JSON exactly before it sends it (``transforms.bigquery.landing``). The local emulator
  takes an 11 MiB insertAll row: it is more lenient than BigQuery here.
- **Dead letters too large** for the dead-letter table: a payload is kept whole in the table up to
  ``transforms.core.payloads.TABLE_PAYLOAD_BYTES`` (1 MiB); a larger one is cut there and stored whole
  beside the table (``--dead_letter_payloads``), referenced by ``raw_payload_uri``.
- **Text that is not Unicode**: STRING is UTF-8 text (https://cloud.google.com/bigquery/docs/reference/
  standard-sql/data-types#string_type). Bytes that are not UTF-8 are ``read:invalid_utf8`` (NDJSON, CSV,
  Parquet binary and string columns: ``<field>:type``); a JSON ``\\ud800`` escape (a lone UTF-16
  surrogate, which no UTF-8 text holds) is ``parse:invalid_unicode``. The emulator refuses it too
  ("Malformed JSON … no low surrogate").
- **Control characters**: BigQuery keeps NUL and the other C0 characters in STRING values loaded from
  JSON or Parquet (only CSV loads drop them unless ``preserveAsciiControlCharacters``,
  https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationLoad), so they are kept
  verbatim, except NUL in ``eventId`` (``eventId:nul``): the emulator's MERGE fails on an id holding
  NUL, for that import and every later one into the table (BigQuery is documented to take it; the
  other control characters in an id the emulator takes too).
- **TIMESTAMP outside 0001-01-01 … 9999-12-31** (data-types page, "Timestamp type"): event times are
  bounded by ``--min_event_time``/``--max_event_time``, themselves ISO instants of years 1-9999, so
  an event outside is ``timestamp:out_of_range`` and NaN or ±Infinity (Parquet floats) is
  ``timestamp:not_finite``. The emulator stores the year 10000: more lenient than BigQuery.
- **INT64 out of range**: the only INT64 value from the sender is ``v``, which must be 1
  (``v:unsupported``); the others are positions. The emulator refuses 2^63 like BigQuery.
- **NUMERIC beyond 29 integer digits**: ``data.value`` is nulled and flagged ``value:out_of_range``
  (the row is kept); the emulator refuses it like BigQuery.
- **NaN / ±Infinity in FLOAT64**: the tables have no FLOAT64 column; JSON cannot carry them
  (``parse:invalid_json``), Parquet can: ``timestamp:not_finite``, ``v:unsupported``,
  ``value:not_a_number``.
- **NULL inside a REPEATED field**: BigQuery refuses an array holding NULL (data-types page, "Array
  type"; the emulator's JSON load too: "Array cannot have a null element", its insertAll does not).
  ``ids`` keeps only strings (the others are dropped, flagged ``ids:invalid``); ``labels``,
  ``quality_flags`` and ``reasons`` never hold a null element.
- **JSON columns with invalid JSON**: none of the tables has a JSON column (labels are key/value text).
"""

from __future__ import annotations

from schemas.envelope import LOAD_REASONS
from schemas.validation import Rule

MAX_LOAD_ROW_BYTES = 100 * 1000 * 1000
"""A load job's largest row (JSON and Parquet)."""
MAX_STREAM_ROW_BYTES = 9 << 20
"""The largest row the Pub/Sub landing sends: insertAll takes 10 MB rows in 10 MB requests, and a
request's own JSON needs some room (``transforms.bigquery.landing.MAX_REQUEST_BYTES``)."""
ROW_OVERHEAD_BYTES = 64 << 10
"""What a row holds beyond its payload: lineage (the source URI), the parsed user agent, the run id."""

ROW_TOO_LARGE = Rule("row:too_large", None, LOAD_REASONS["row:too_large"])


def oversized(raws: list[bytes], max_row_bytes: int) -> list[int]:
    """Positions of the records whose payload cannot fit a row of ``max_row_bytes``."""
    limit = max_row_bytes - ROW_OVERHEAD_BYTES
    if max(map(len, raws), default=0) <= limit:  # the usual case, in one C-level pass (1.5 ms for 50k)
        return []
    return [i for i, raw in enumerate(raws) if len(raw) > limit]
