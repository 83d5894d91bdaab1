"""The collector envelope, declared once.

Every other representation of an event is derived from ``ENVELOPE`` and ``OUTPUT_COLUMNS`` below:
the pandera model that validates incoming envelopes (``schemas.validation``), the Arrow schema of
loaded rows and dead letters (``schemas.arrow``), the BigQuery table schema and the analysts' field
documentation (``schemas.docs``). Change a field here and all of them follow.

This module declares; it imports neither Beam nor any cloud client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# JSON wire types, as named in reason codes and dead letters.
STRING, NUMBER, BOOLEAN, NULL, OBJECT, ARRAY, ABSENT = (
    "string", "number", "boolean", "null", "object", "array", "absent",
)

MAX_ID_LENGTH = 256
"""Longest ``eventId`` / ``tmpId`` accepted. Real ids are 25-36 characters; 256 leaves room for
server-to-server senders while keeping a garbage blob out of the dedupe key."""

MAX_NAME_LENGTH = 128
"""Longest event ``name`` accepted (built-in names are under 20 characters)."""

MAX_TEXT_LENGTH = 65_536
"""Longest ``url`` / ``ua`` / ``b`` / ``id`` / ``clientId`` accepted (64 KiB)."""

KEY_PATTERN = r"^[0-9a-f]{24}$"
"""A company id is a MongoDB ObjectId: 24 lower-case hexadecimal characters."""

DATASOURCE_ID_PATTERN = KEY_PATTERN


@dataclass(frozen=True)
class EnvelopeField:
    """One top-level field of the collector envelope, as it travels on the wire."""

    name: str
    wire_types: tuple[str, ...]
    required: bool
    description: str
    nullable: bool = False
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    equals: float | None = None

    @property
    def accepted(self) -> tuple[str, ...]:
        """Wire types that pass the type rule (``null`` included when nullable)."""
        return self.wire_types + ((NULL,) if self.nullable else ())


def _identifier(name: str, description: str, max_length: int = MAX_ID_LENGTH) -> EnvelopeField:
    """A required, non-empty string of bounded length (the ids and the event name)."""
    return EnvelopeField(name, (STRING,), True, description, min_length=1, max_length=max_length)


def _optional_text(name: str, description: str) -> EnvelopeField:
    """An optional string, null allowed, of at most ``MAX_TEXT_LENGTH`` characters."""
    return EnvelopeField(name, (STRING,), False, description, nullable=True, max_length=MAX_TEXT_LENGTH)


_WORKFLOW_LINK = "Opaque workflow-link metadata (web only, usually absent)."

ENVELOPE: tuple[EnvelopeField, ...] = (
    EnvelopeField("key", (STRING,), True, "Company id: 24 lower-case hex characters (a MongoDB ObjectId).",
                  pattern=KEY_PATTERN),
    _identifier(
        "tmpId",
        "Device identifier persisted on the device (web cookie `rlvt_tmpId`, a cuid; iOS upper-case "
        "UUID; Android lower-case UUID or 25 random characters; `android_id` from a known SDK bug).",
    ),
    _identifier("eventId", "Random identifier of one event; the dedupe key."),
    _identifier(
        "name",
        "Event name: `page_view`, `product_page`, `category_view`, `brand_view`, `product_hover`, "
        "`add_cart`, `purchase`, `purchase_references`, `identify`, or a custom name.",
        max_length=MAX_NAME_LENGTH,
    ),
    EnvelopeField("url", (STRING,), True, "Page URL or app deep link, or the literal `unknown`.",
                  max_length=MAX_TEXT_LENGTH),
    _optional_text("ua", "User agent of the device (web senders only; mobile SDKs never put it in the body)."),
    EnvelopeField("data", (OBJECT,), False, "Labels: `ids`, `transId`, `value` and free labels. Absent means `{}`.",
                  nullable=True),
    _optional_text("clientId", "Identifier of the user, when known; null or absent for anonymous users."),
    EnvelopeField("v", (NUMBER,), True, "Protocol version; always 1.", equals=1),
    _optional_text("b", _WORKFLOW_LINK),
    _optional_text("id", _WORKFLOW_LINK),
    EnvelopeField(
        "timestamp", (NUMBER,), False,
        "Unix time of the action in seconds, milliseconds or microseconds (unit detected by magnitude).",
        nullable=True,
    ),
)

ENVELOPE_BY_NAME = {f.name: f for f in ENVELOPE}

# Labels with a meaning of their own inside `data`.
RESERVED_LABELS = ("ids", "transId", "value")
ANDROID_ID_LABEL = "id"
"""Android SDKs send ``data.id`` (one string) instead of ``data.ids`` for item events."""
UNSPLIT_ID_EVENTS = frozenset({"category_view", "brand_view"})
"""Events whose single-string ``ids`` is one identifier even when it holds `;` `,` or `|`."""


@dataclass(frozen=True)
class OutputColumn:
    """One column of the loaded table. ``kind`` is the logical type; ``schemas.arrow`` and
    ``schemas.bigquery`` map it to their own types."""

    name: str
    kind: str  # string | int64 | bool | timestamp | numeric | string_list | labels | reasons | record
    description: str
    required: bool = False
    group: str = "event"  # event | quality | derived (computed from other columns) | lineage
    fields: tuple[OutputColumn, ...] = field(default=())


def _envelope_description(name: str, extra: str = "") -> str:
    text = ENVELOPE_BY_NAME[name].description
    return f"{text} {extra}".strip()


OUTPUT_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("eventId", "string", _envelope_description("eventId", "Unique in the table."), required=True),
    OutputColumn(
        "timestamp", "timestamp",
        "Event time in UTC, from the sender's `timestamp` (exact to the millisecond; never the import "
        "time). The DAY partitioning column.",
        required=True,
    ),
    OutputColumn("key", "string", _envelope_description("key"), required=True),
    OutputColumn(
        "datasourceId", "string",
        "Datasource id: the `{id}` of the `/collect/{id}/rlvt` path the events were sent to "
        "(from the import's `--datasource_id`).",
    ),
    OutputColumn("name", "string", _envelope_description("name"), required=True),
    OutputColumn("tmpId", "string", _envelope_description("tmpId"), required=True),
    OutputColumn("clientId", "string", _envelope_description("clientId")),
    OutputColumn(
        "url", "string",
        "Normalized URL: query and fragment dropped, scheme and host lower-cased, default port "
        "dropped, empty path as `/`, internationalized hosts in IDNA (punycode) form. App deep links "
        "keep their scheme and path; `unknown` stays `unknown`.",
        required=True,
    ),
    OutputColumn("ua", "string", _envelope_description("ua")),
    OutputColumn(
        "agent", "record",
        "The user agent parsed (ua-parser and its bundled rules); null when there is no `ua`.",
        group="derived",
        fields=(
            OutputColumn("browser", "string", "Browser (or app, crawler) family, e.g. `Chrome`, `Mobile Safari`."),
            OutputColumn("browser_version", "string", "Browser version, e.g. `17.1`."),
            OutputColumn("os", "string", "Operating system family, e.g. `iOS`, `Windows`."),
            OutputColumn("os_version", "string", "Operating system version."),
            OutputColumn("device", "string", "Device family, e.g. `iPhone`, `Other` (desktop), `Spider` (crawler)."),
            OutputColumn("is_bot", "bool", "True for crawlers, link previews, uptime monitors and headless browsers "
                         "(see `--drop_bots`); HTTP libraries of server senders are not bots."),
        ),
    ),
    OutputColumn(
        "ids", "string_list",
        "Identifiers of the items the event is about, always a list: from `data.ids` (a list, or "
        "one string split on `;` `,` `|` except for category and brand events) or Android's `data.id`.",
    ),
    OutputColumn("transId", "string", "Transaction / order id (`data.transId`), when the event has one."),
    OutputColumn(
        "value", "numeric",
        "Monetary value (`data.value`) rounded half-up to 2 decimals; float artifacts such as "
        "46.599998474121094 become 46.60. Null when absent or not a number.",
    ),
    OutputColumn(
        "labels", "labels",
        "Free labels from `data` (everything but `ids`, `transId`, `value` and Android's `id`), sorted "
        "by key; numbers and booleans as canonical JSON text, nested values as compact JSON.",
        fields=(
            OutputColumn("key", "string", "Label name.", required=True),
            OutputColumn("value", "string", "Label value as text; null when the sender sent null."),
        ),
    ),
    OutputColumn("b", "string", _envelope_description("b")),
    OutputColumn("id", "string", _envelope_description("id")),
    OutputColumn("v", "int64", _envelope_description("v"), required=True),
    OutputColumn(
        "quality_flags", "string_list",
        "Problems fixed or noted without rejecting the event, as codes: e.g. `value:not_a_number` "
        "(value nulled), `labels:blank_key` (label dropped), `timestamp:filled` (no timestamp; "
        "filled from `--default_timestamp`). Empty for clean events.",
        group="quality",
    ),
    OutputColumn("source_uri", "string", "File (or subscription) the event was read from.", required=True,
                 group="lineage"),
    OutputColumn("source_line", "int64", "1-based line number (or row number) in the source file; null for "
                 "Pub/Sub messages.", group="lineage"),
    OutputColumn("source_index", "int64",
                 "0-based position inside a JSON array of envelopes; null for a lone envelope.",
                 group="lineage"),
    OutputColumn("source_message_id", "string", "Pub/Sub message id, for events read from a subscription.",
                 group="lineage"),
    OutputColumn("source_published_at", "timestamp",
                 "Pub/Sub publish time of the message (lineage only: never used as the event time).",
                 group="lineage"),
    OutputColumn("source_attributes", "string", "Pub/Sub message attributes, as a JSON object.",
                 group="lineage"),
    OutputColumn("import_run_id", "string", "Id of the import run that loaded the row.", required=True,
                 group="lineage"),
    OutputColumn("imported_at", "timestamp", "When the import run started (UTC).", required=True,
                 group="lineage"),
)

CONTENT_COLUMNS = tuple(c.name for c in OUTPUT_COLUMNS if c.group not in ("lineage", "derived"))
"""Columns compared to tell an exact duplicate (same content) from a conflicting one."""


# Dead letters: one shape for every rejected record, whatever stage rejected it.
DEAD_LETTER_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("run_id", "string", "Id of the import run that rejected the record.", required=True),
    OutputColumn("processor", "string", "Importer name and version.", required=True),
    OutputColumn("stage", "string", "Stage that rejected it: `read`, `parse`, `validate` or `normalize`.",
                 required=True),
    OutputColumn(
        "reasons", "reasons",
        "Every reason the record was rejected.",
        required=True,
        fields=(
            OutputColumn("code", "string", "Machine-readable reason code, e.g. `key:pattern`.", required=True),
            OutputColumn("field", "string", "Envelope field concerned, when there is one."),
            OutputColumn("message", "string", "Human-readable explanation.", required=True),
            OutputColumn("value", "string", "Excerpt of the offending value (at most 200 characters)."),
        ),
    ),
    OutputColumn(
        "raw_payload", "string",
        "The record as received: the exact line (or, for one element of a JSON array, that element "
        "as compact JSON; for CSV and Parquet, the row as JSON). Invalid UTF-8 is shown with "
        "replacement characters here and kept exactly in `raw_payload_base64`.",
    ),
    OutputColumn("raw_payload_base64", "string",
                 "Exact bytes of the record, base64, when they are not valid UTF-8 or were cut."),
    OutputColumn("raw_bytes", "int64", "Size of the record in bytes."),
    OutputColumn("source_uri", "string", "File (or subscription) the record came from.", required=True),
    OutputColumn("source_line", "int64", "1-based line number (or row number) in the source."),
    OutputColumn("source_index", "int64", "0-based position inside a JSON array, when it was in one."),
    OutputColumn("source_message_id", "string", "Pub/Sub message id, when the record came from a subscription."),
    OutputColumn("source_attributes", "string", "Pub/Sub message attributes, as a JSON object."),
    OutputColumn("rejected_at", "timestamp", "When the import run started (UTC).", required=True),
    OutputColumn("raw_payload_uri", "string",
                 "Where the whole payload is stored when it was too large to keep in this table (over 1 MiB, "
                 "or a line over --max_line_bytes): a file under --dead_letter_payloads (OUTPUT_DIR/"
                 "dead_letter_payloads with the file sink); `raw_payload` then holds its first MiB. A replay "
                 "reads the payload from there."),
    OutputColumn("datasource_id", "string",
                 "The `datasourceId` the import gave its events (`--datasource_id`); a replay gives it back to "
                 "the record's row."),
)

# The landing table of a Pub/Sub import: rows as they arrive, before the MERGE dedupes them.
LANDING_COLUMNS: tuple[OutputColumn, ...] = OUTPUT_COLUMNS + (
    OutputColumn("landed_at", "timestamp", "When the row was appended to the landing table (UTC).", required=True,
                 group="lineage"),
)

# Conflicting duplicates: every version of an eventId whose copies differ.
CONFLICT_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("run_id", "string", "Id of the import run that found the conflict.", required=True),
    OutputColumn("eventId", "string", "The eventId the versions share.", required=True),
    OutputColumn("kept", "bool", "True for the version that was loaded (earliest event time, then earliest "
                 "input position).", required=True),
    OutputColumn("differs_from_kept", "string_list", "Columns in which this version differs from the kept one."),
    OutputColumn("row", "string", "The normalized version, as a JSON object (with its lineage).", required=True),
    OutputColumn("detected_at", "timestamp", "When the import run started (UTC).", required=True),
)

# The companion tables of an events table (transforms.bigquery.merge): which eventIds are stored, under which event
# time (so an id is found whatever time it comes back with), and the runs that write the table.
IDS_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("eventId", "string", "An eventId stored in the events table (clustered on it).", required=True),
    OutputColumn("timestamp", "timestamp", "The event time it is stored under in the events table.", required=True),
    OutputColumn("import_run_id", "string", "The import run that stored it.", required=True),
)
LANDING_MARKS_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("landing", "string", "The landing table (PROJECT.DATASET.TABLE).", required=True),
    OutputColumn("merged_through", "timestamp", "Every row landed up to this instant (less the safety margin) "
                 "has been merged into the events table.", required=True),
    OutputColumn("updated_at", "timestamp", "When the mark last moved (UTC)."),
)
RUNS_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("run_id", "string", "Id of the import run (--run_id, or generated).", required=True),
    OutputColumn("launch", "string", "Random id of one launch of the run: a re-run of a run id is a new launch.",
                 required=True),
    OutputColumn("status", "string", "`running` (claimed), `merged` (its write transaction committed), "
                 "`finished` (a Pub/Sub import that stopped) or `failed` (the launcher saw it fail).", required=True),
    OutputColumn("claimed_at", "timestamp", "When the launch claimed the run id (UTC).", required=True),
    OutputColumn("updated_at", "timestamp", "When the status last changed (UTC)."),
)

# Reason codes that are not field rules (field rules are `<field>:<rule>`, see schemas.validation).
READ_REASONS = {
    "read:invalid_utf8": "The line is not valid UTF-8.",
    "read:line_too_long": "The line is longer than --max_line_bytes.",
}
PARSE_REASONS = {
    "parse:invalid_json": "The record is not valid JSON.",
    "parse:not_an_object": "The JSON value is neither an envelope object nor an array of envelopes.",
    "parse:empty_array": "The line is a JSON array with no envelope in it.",
    "parse:invalid_csv": "The CSV row does not match the header.",
    "parse:invalid_unicode": "The JSON has a \\u escape of a lone UTF-16 surrogate (e.g. `\\ud800`): no UTF-8 "
                             "text holds it, and BigQuery refuses it.",
}
LOAD_REASONS = {
    "row:too_large": "The record is larger than a BigQuery row may be (100 MB for load jobs, 10 MB for the "
                     "streaming inserts of a Pub/Sub import); found before anything is sent.",
    "bigquery:refused": "The Pub/Sub landing table refused the row (insertAll's answer is in the message).",
}
TIMESTAMP_REASONS = {
    "timestamp:missing": "No timestamp, and the missing-timestamp policy is `reject`.",
    "timestamp:out_of_range": "The timestamp is outside the accepted event-time range.",
    "timestamp:not_finite": "The timestamp is NaN or infinite.",
}
LABEL_ISSUES = {
    "ids:invalid": "`data.ids` (or `data.id`) held something other than strings; the bad items were dropped.",
    "transId:invalid": "`data.transId` was not a string or number; nulled.",
    "value:not_a_number": "`data.value` was not a number or numeric string; nulled.",
    "value:out_of_range": "`data.value` does not fit NUMERIC (29 integer digits); nulled.",
    "labels:blank_key": "A label with an empty or blank name was dropped.",
    "timestamp:filled": "The event had no timestamp; it was filled from --default_timestamp.",
}
