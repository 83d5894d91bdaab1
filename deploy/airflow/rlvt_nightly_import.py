"""Nightly import of the previous day's collector export into BigQuery, with the Flex Template.

The collector export writes each UTC day's files under ``gs://EXPORT_BUCKET/rlvt/YYYY-MM-DD/``. This
DAG runs every day at 02:30 UTC; a run covers the schedule interval that just ended, so ``{{ ds }}``
is the previous day: it waits for that day's folder, then starts the importer's Flex Template on it
(scripts/dataflow.sh template-build made the template; docs/dataflow.md). The import MERGEs on
``eventId``, so a retry, a re-run or a backfill (``airflow dags backfill -s 2026-11-01 -e 2026-11-20
rlvt_nightly_import``) never duplicates a row.

Edit the constants below for your project. ``tests/test_schedule.py`` reads this file with ``ast``
(Airflow is not installed in the importer's venv) and checks every template parameter against
metadata.json and against the importer's own option checks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.providers.google.cloud.sensors.gcs import GCSObjectsWithPrefixExistenceSensor

PROJECT = "my-project"
REGION = "europe-west1"
EXPORT_BUCKET = "my-collector-exports"
TEMPLATE_PATH = "gs://my-dataflow-bucket/templates/rlvt-import.json"  # TEMPLATE_PATH of template-build
IMAGE = "europe-west1-docker.pkg.dev/my-project/dataflow/rlvt-importer:2026-11-26"  # IMAGE of template-build
TEMP_LOCATION = "gs://my-dataflow-bucket/tmp/rlvt-import"
SERVICE_ACCOUNT = "rlvt-importer@my-project.iam.gserviceaccount.com"
EVENTS_TABLE = "my-project.analytics.rlvt_events"
DATASOURCE_ID = "61a095fdd8d2e20011544831"

# The template's parameters (names and shapes: metadata.json). Values are rendered by Airflow.
PARAMETERS = {
    "input": f"gs://{EXPORT_BUCKET}/rlvt/{{{{ ds }}}}/*.ndjson.gz",
    "datasource_id": DATASOURCE_ID,
    "output_table": EVENTS_TABLE,
    "bigquery_location": "EU",
    # thousands of dedupe buckets on Dataflow, so each bucket fits a worker's memory
    "buckets": "2000",
    # Beam's own option, passed to the template's entry point like the parameters above (as in Google's
    # pipeline_with_dependencies sample): the workers run the template's image, where everything is
    # installed, and install nothing at start-up (template_main.py refuses a job without it).
    "sdk_container_image": IMAGE,
}
# The job's runtime environment (the workers' image is the parameter sdk_container_image above).
ENVIRONMENT = {
    "tempLocation": TEMP_LOCATION,
    "serviceAccountEmail": SERVICE_ACCOUNT,
    "maxWorkers": 20,
    "machineType": "n2-standard-4",
    "additionalUserLabels": {"pipeline": "rlvt-import"},
}

with DAG(
    dag_id="rlvt_nightly_import",
    description="Import the previous day's collector export into BigQuery (Dataflow Flex Template).",
    schedule="30 2 * * *",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=30)},
    tags=["rlvt", "dataflow", "bigquery"],
) as dag:
    export_ready = GCSObjectsWithPrefixExistenceSensor(
        task_id="wait_for_export",
        bucket=EXPORT_BUCKET,
        prefix="rlvt/{{ ds }}/",
        mode="reschedule",
        poke_interval=15 * 60,
        timeout=8 * 60 * 60,
    )
    import_day = DataflowStartFlexTemplateOperator(
        task_id="import_day",
        project_id=PROJECT,
        location=REGION,
        body={
            "launchParameter": {
                "jobName": "rlvt-import-{{ ds_nodash }}",
                "containerSpecGcsPath": TEMPLATE_PATH,
                "parameters": PARAMETERS,
                "environment": ENVIRONMENT,
            }
        },
        wait_until_finished=True,
    )
    export_ready >> import_day
