"""Before any work: reach BigQuery and make sure the tables can take the rows."""

from __future__ import annotations

from transforms.bq_client import BigQueryTarget, TableRef, TargetError


def prepare_target(target: BigQueryTarget, landing: TableRef | None = None) -> dict[str, str]:
    """Create absent tables from the schema source, check (and extend) existing ones; returns what was
    done per table. Unreachable BigQuery or an incompatible table raises ``TargetError``."""
    from google.api_core.exceptions import GoogleAPIError
    from google.api_core.exceptions import RetryError as ApiRetryError
    from requests.exceptions import RequestException

    from schemas.bigquery import CONFLICT_TABLE_SCHEMA, DEAD_LETTER_TABLE_SCHEMA, EVENTS_SCHEMA, LANDING_SCHEMA
    from transforms import bq_tables
    from transforms.landing import LANDING_EXPIRY

    bq = target.connect()
    done = {}
    try:
        for ref in {(t.project, t.dataset): t for t in (target.events, target.dead_letters, target.conflicts)}.values():
            bq_tables.ensure_dataset(bq, ref, target.location)
        done[str(target.events)] = bq_tables.ensure_table(
            bq, target.events, EVENTS_SCHEMA, "Collector events, one row per eventId (rlvt-bigquery-importer).",
            partitioned=True)
        done[str(target.dead_letters)] = bq_tables.ensure_table(
            bq, target.dead_letters, DEAD_LETTER_TABLE_SCHEMA, "Records the importer rejected, with reasons.")
        done[str(target.conflicts)] = bq_tables.ensure_table(
            bq, target.conflicts, CONFLICT_TABLE_SCHEMA, "Every version of events whose copies differ.")
        if landing is not None:
            bq_tables.ensure_dataset(bq, landing, target.location)
            done[str(landing)] = bq_tables.ensure_table(
                bq, landing, LANDING_SCHEMA, "Rows of a Pub/Sub import as they arrived, before the MERGE.",
                partitioned=True, partition_field="landed_at", partition_expiry=LANDING_EXPIRY)
    except (GoogleAPIError, ApiRetryError, RequestException) as err:
        raise TargetError(f"cannot prepare the tables in {target.where}: {type(err).__name__}: {err}") from err
    finally:
        bq.close()
    return done


