"""Nightly import of the previous day's collector export into BigQuery, with the Flex Template.

The collector export writes each UTC day's files under ``gs://EXPORT_BUCKET/rlvt/YYYY-MM-DD/`` and,
after the last of them, an empty completion marker in the same folder: ``EXPORT_DONE_MARKER``
(``_SUCCESS``, the convention of Hadoop/Spark output committers). The marker is the export's half of
the contract: a folder that has files but no marker is an export still being written, and importing
it would miss what comes later (the import's MERGE would not duplicate anything on a re-run, but the
run would report success for a partial day). The sensor waits for the marker, never for "some file".

Which day a run imports: the day its *data interval* starts. The schedule is an explicit
``CronDataIntervalTimetable`` (02:30 UTC daily): the run started on day D+1 at 02:30 covers the
interval [D 02:30, D+1 02:30), and ``{{ data_interval_start | ds }}`` is D, on Airflow 2 and 3 alike.
A cron string would not do: Airflow 3 reads it as ``CronTriggerTimetable`` (``[scheduler]
create_cron_data_intervals`` defaults to False since 3.0), whose runs have a zero-length interval at
their own time, so ``{{ ds }}`` and ``data_interval_start`` are then D+1, the day still being
exported. ``{{ ds }}`` is also left alone because it is the logical date, whose meaning depends on
the timetable; the data interval is what the run is about. See
https://airflow.apache.org/docs/apache-airflow/stable/authoring-and-scheduling/timetable.html
(differences between the cron timetables), the 3.0 notes on ``create_cron_data_intervals`` in
https://airflow.apache.org/docs/apache-airflow/stable/release_notes.html, and the ``ds`` filter and
``data_interval_start`` in https://airflow.apache.org/docs/apache-airflow/stable/templates-ref.html.

The import MERGEs on ``eventId``, so a retry, a re-run or a backfill never duplicates a row (Airflow 2:
``airflow dags backfill -s 2026-11-01 -e 2026-11-20 rlvt_nightly_import``; Airflow 3: ``airflow
backfill create --dag-id rlvt_nightly_import --from-date 2026-11-01 --to-date 2026-11-20``); each
backfilled run imports the day its interval starts. scripts/dataflow.sh template-build made the
template (docs/dataflow.md).

Edit the constants below for your project. ``tests/test_schedule.py`` reads this file with ``ast``
(Airflow is not installed in the importer's venv) and checks every template parameter against
metadata.json and against the importer's own option checks, the schedule, and the sensor.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor
from airflow.timetables.interval import CronDataIntervalTimetable  # Airflow 2.4+ (schedule=) and 3

PROJECT = "my-project"
REGION = "europe-west1"
EXPORT_BUCKET = "my-collector-exports"
TEMPLATE_PATH = "gs://my-dataflow-bucket/templates/rlvt-import.json"  # TEMPLATE_PATH of template-build
IMAGE = "europe-west1-docker.pkg.dev/my-project/dataflow/rlvt-importer:2026-11-26"  # IMAGE of template-build
TEMP_LOCATION = "gs://my-dataflow-bucket/tmp/rlvt-import"
SERVICE_ACCOUNT = "rlvt-importer@my-project.iam.gserviceaccount.com"
EVENTS_TABLE = "my-project.analytics.rlvt_events"
DATASOURCE_ID = "61a095fdd8d2e20011544831"

# The UTC day a run imports: the start of its data interval (docstring), rendered by Airflow.
EXPORT_DAY = "{{ data_interval_start | ds }}"
EXPORT_FOLDER = f"rlvt/{EXPORT_DAY}"  # in EXPORT_BUCKET
EXPORT_DONE_MARKER = "_SUCCESS"  # written by the export in EXPORT_FOLDER after its last file

# The template's parameters (names and shapes: metadata.json). Values are rendered by Airflow.
PARAMETERS = {
    "input": f"gs://{EXPORT_BUCKET}/{EXPORT_FOLDER}/*.ndjson.gz",  # the marker is not an .ndjson.gz
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
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone="UTC"),  # not a cron string: see the docstring
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=30)},
    tags=["rlvt", "dataflow", "bigquery"],
) as dag:
    export_ready = GCSObjectExistenceSensor(
        task_id="wait_for_export",
        bucket=EXPORT_BUCKET,
        object=f"{EXPORT_FOLDER}/{EXPORT_DONE_MARKER}",
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
                "jobName": "rlvt-import-{{ data_interval_start | ds_nodash }}",
                "containerSpecGcsPath": TEMPLATE_PATH,
                "parameters": PARAMETERS,
                "environment": ENVIRONMENT,
            }
        },
        wait_until_finished=True,
    )
    export_ready >> import_day
