"""``./run.sh replay``: re-import dead letters through the same validation, dedupe and MERGE.

    python -m pipeline.replay --dead_letters 'out/dead_letters/*.ndjson' IMPORT_FLAGS…   (files, after a fix)
    python -m pipeline.replay --from_table P.D.T_dead_letters [--reason CODE] [--rejected_by RUN_ID]
                              [--source URI] IMPORT_FLAGS…

The raw payloads (exact bytes, from ``raw_payload_base64`` when set) are written to a replay file
(``.replay``: one dead letter per line, its payload in base64 so a payload holding line breaks stays
one record, with its lineage), which is then imported like any export: rows already in the target
stay single (the MERGE), records rejected again are dead-lettered again with the new run id, and the
report accounts for every one. Each record keeps its dead letter's lineage: source file, line, index
in a JSON array, Pub/Sub message id and attributes, and ``datasourceId`` (``transforms.sources.read.
read_replay``). Redacted dead letters hold no payload and are skipped (and counted).
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path

import orjson

from pipeline.cli import StrictParser, UsageError, check_flags, replay_import_help, replay_own_flags
from pipeline.flags import normalize_argv
from transforms.core.settings import TableRef

# Beam (its file systems), the BigQuery client and the import are imported where they are used, after the
# flags: --help and a misspelled flag take a tenth of a second instead of a second and a half.


def payload(dead: dict) -> bytes | None:
    """The exact bytes of a dead letter's record, or None when it was redacted. A payload too large for
    its row is read whole from where the import stored it (``raw_payload_uri``, ``transforms.core.payloads``)."""
    if dead.get("raw_payload_uri"):
        from apache_beam.io.filesystem import BeamIOError, CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        from transforms.core.payloads import is_payload_path

        if not is_payload_path(dead["raw_payload_uri"]):
            # only a file the import wrote (transforms.core.payloads): a dead letter edited to name another file
            # must not make a replay read it into the tables
            raise ValueError(f"raw_payload_uri {dead['raw_payload_uri']!r} does not name a payload file the "
                             f"import wrote (HEX40.payload)")
        try:
            with FileSystems.open(dead["raw_payload_uri"], compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read()
        except (OSError, BeamIOError) as err:
            raise ValueError(f"the whole payload of a dead letter of {dead.get('source_uri')} is stored at "
                             f"{dead['raw_payload_uri']}, which cannot be read ({err})") from None
    if dead.get("raw_payload_base64"):
        return base64.b64decode(dead["raw_payload_base64"])
    text = dead.get("raw_payload")
    if text is None or text.startswith("[redacted sha256:"):
        return None
    return text.encode("utf-8")


def events_table_of(dead_letter_table: str) -> str:
    """The events table a dead-letter table belongs to (``P.D.T_dead_letters`` → ``P.D.T``), where a
    replay ``--from_table`` writes unless told otherwise."""
    try:
        ref = TableRef.parse(dead_letter_table)
    except ValueError as err:
        raise UsageError(f"--from_table: {err}") from None
    if not ref.table.endswith("_dead_letters") or ref.table == "_dead_letters":
        raise UsageError(f"--from_table {dead_letter_table} is not named like a dead-letter table "
                         f"(EVENTS_dead_letters): give the table to write to with --output_table")
    return str(ref.sibling(ref.table.removesuffix("_dead_letters")))


LINEAGE = ("source_uri", "source_line", "source_index", "source_message_id", "source_attributes", "datasource_id")
"""What a replayed record keeps of its dead letter (``transforms.sources.read.read_replay``)."""


def replay_line(dead: dict, data: bytes) -> bytes:
    """One line of a replay file: the payload in base64 and the dead letter's lineage."""
    entry = {k: dead.get(k) for k in LINEAGE if dead.get(k) is not None}
    return orjson.dumps({**entry, "payload_base64": base64.b64encode(data).decode("ascii")}) + b"\n"


def from_files(pattern: str) -> list[dict]:
    from apache_beam.io.filesystems import FileSystems

    from transforms.sources.files import InputError, expand_patterns

    records = []
    try:
        matched = expand_patterns([pattern])
    except (InputError, ValueError) as err:
        raise ValueError(f"--dead_letters {pattern!r} matches no file") from err
    for uri, _ in matched:
        with FileSystems.open(uri) as f:
            records += [orjson.loads(x) for x in f.read().splitlines() if x.strip()]
    return records


def from_table(table: str, endpoint: str | None, reason: str | None, run_id: str | None,
               source: str | None) -> list[dict]:
    ref = TableRef.parse(table)
    where, params = ["TRUE"], {}
    if reason:
        where.append("EXISTS (SELECT 1 FROM UNNEST(reasons) AS r WHERE STARTS_WITH(r.code, @reason))")
        params["reason"] = reason
    if run_id:
        where.append("run_id = @run_id")
        params["run_id"] = run_id
    if source:
        where.append("source_uri = @source")
        params["source"] = source
    from transforms.bigquery.client import BigQuerySession, make_client
    from transforms.bigquery.tables import query

    session = BigQuerySession(make_client(ref.project, endpoint), 60.0)
    try:
        # a table made before a column existed lacks it (the next import adds it): NULL in its place
        present = {f.name for f in session.client.get_table(ref.api_id).schema}
        lineage = [c if c in present else f"NULL AS {c}" for c in LINEAGE]
        lineage.append("raw_payload_uri" if "raw_payload_uri" in present else "NULL AS raw_payload_uri")
        return query(session, f"SELECT raw_payload, raw_payload_base64, {', '.join(lineage)} FROM {ref.sql} "
                              f"WHERE {' AND '.join(where)} "
                              f"ORDER BY rejected_at, source_uri, source_line, source_index", params)
    finally:
        session.close()


def parser() -> StrictParser:
    """The replay's own flags; the others are the import's (``pipeline.cli.replay_import_help``)."""
    parser = StrictParser(prog="./run.sh replay", description=__doc__.splitlines()[0],
                          usage="%(prog)s (--dead_letters PATTERN | --from_table P.D.T) [--reason CODE] "
                                "[--rejected_by RUN_ID] [--source URI] [IMPORT_FLAGS…]",
                          epilog="IMPORT_FLAGS are the import's own (below), with the same defaults; the input is "
                                 "the dead letters' payloads.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dead_letters", metavar="PATTERN",
                        help="dead-letter NDJSON files (a path or glob), e.g. after a fix")
    source.add_argument("--from_table", metavar="PROJECT.DATASET.TABLE", help="the dead-letter table to replay from")
    parser.add_argument("--reason", metavar="CODE",
                        help="only dead letters with a reason code starting with this (e.g. timestamp:)")
    parser.add_argument("--rejected_by", metavar="RUN_ID", help="only dead letters of this import run id")
    parser.add_argument("--source", metavar="URI", help="only dead letters from this source URI")
    return parser


def checked_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The replay's own arguments and the import flags it passes on, or ``UsageError``: every check that
    needs no file and no BigQuery, so that ``./run.sh`` makes them before it starts an emulator
    (``python -m pipeline.cli check replay``)."""
    args, import_flags = parser().parse_known_args(argv)
    check_flags(normalize_argv(import_flags), replay_own_flags(), "./run.sh replay --help lists every flag")
    if not args.dead_letters and not args.from_table:
        raise UsageError("nothing to replay: give --dead_letters PATTERN (dead-letter files) or --from_table "
                         "PROJECT.DATASET.TABLE (a dead-letter table)")
    if any(f == "--input" or f.startswith("--input=") or f.startswith("--input_subscription") for f in import_flags):
        raise UsageError("replay reads dead letters; do not give --input")
    if any(f == "--input_format" or f.startswith("--input_format=") for f in import_flags):
        raise UsageError("replay reads its own file of payloads; do not give --input_format")
    outputs = ("--output_table", "--output_dir", "--dry_run")
    if args.from_table and not any(f.split("=", 1)[0] in outputs for f in import_flags):
        import_flags = [*import_flags, "--output_table", events_table_of(args.from_table)]
    return args, import_flags


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(parser().format_help() + "\n" + replay_import_help())
        return 0
    try:
        args, import_flags = checked_args(argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    endpoint = next((f.split("=", 1)[1] for f in import_flags if f.startswith("--bigquery_endpoint=")), None)
    if endpoint is None and "--bigquery_endpoint" in import_flags:
        endpoint = import_flags[import_flags.index("--bigquery_endpoint") + 1]
    from google.api_core.exceptions import GoogleAPIError

    from pipeline.launcher import main as import_main
    from transforms.bigquery.client import TargetError
    from transforms.sources.files import REPLAY_FORMAT

    try:
        if args.dead_letters:
            records = from_files(args.dead_letters)
        else:
            records = from_table(args.from_table, endpoint, args.reason, args.rejected_by, args.source)
    except (ValueError, OSError) as err:  # a bad table name or pattern, unreadable dead-letter files
        print(f"error: cannot read the dead letters: {err}", file=sys.stderr)
        return 2
    except (GoogleAPIError, TargetError) as err:  # BigQuery unreachable, the table missing
        print(f"error: cannot read {args.from_table}: {err}", file=sys.stderr)
        return 3
    try:
        payloads = [(r, payload(r)) for r in records]
    except ValueError as err:  # a payload stored whole that cannot be read
        print(f"error: cannot read the dead letters: {err}", file=sys.stderr)
        return 2
    redacted = sum(p is None for _, p in payloads)
    payloads = [(r, p) for r, p in payloads if p is not None]
    if redacted:
        print(f"skipping {redacted} redacted dead letter(s): they hold no payload to replay", file=sys.stderr)
    if not payloads:
        print("nothing to replay", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="replay-") as folder:
        path = Path(folder) / f"replayed-dead-letters.{REPLAY_FORMAT}"
        # grouped by origin, so that the records of one file read as one source (transforms.sources.read.read_replay)
        payloads.sort(key=lambda rp: rp[0].get("source_uri") or "")
        path.write_bytes(b"".join(replay_line(r, p) for r, p in payloads))
        print(f"replaying {len(payloads)} dead letter(s)", file=sys.stderr)
        return import_main(["--input", str(path), *import_flags])


if __name__ == "__main__":
    sys.exit(main())
