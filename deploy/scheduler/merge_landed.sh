#!/usr/bin/env bash
# Schedule `merge-landed` for a Pub/Sub import that runs with --merge_interval_seconds 0 (the stream only
# lands rows): a Cloud Run job from the importer's template image, started by Cloud Scheduler every
# INTERVAL. Each execution MERGEs the rows landed since the landing table's mark and exits
# (pipeline/merge_landed.py); executions that overlap are serialized by the write transaction.
#
#   PROJECT=my-project REGION=europe-west1 IMAGE=…/rlvt-importer:TAG TABLE=my-project.analytics.rlvt_events \
#   SERVICE_ACCOUNT=rlvt-importer@my-project.iam.gserviceaccount.com deploy/scheduler/merge_landed.sh
#
# PRINT_ONLY=1 prints the commands. The service account needs roles/bigquery.dataEditor on the dataset and
# roles/bigquery.jobUser on the project; Cloud Scheduler's needs roles/run.invoker on the job.
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${IMAGE:?set IMAGE (scripts/dataflow.sh template-build)}"
: "${TABLE:?set TABLE (PROJECT.DATASET.TABLE, the events table)}" "${SERVICE_ACCOUNT:?set SERVICE_ACCOUNT}"
JOB=${JOB:-rlvt-merge-landed}
SCHEDULE=${SCHEDULE:-*/15 * * * *}   # every 15 minutes: fewer, larger MERGEs cost less (docs/pubsub.md)

# The command the job runs (tests/test_landing_merge.py checks these flags against the command's parser).
MERGE_ARGS=(--output_table "$TABLE" --bigquery_retry_seconds 120)

run() { if [ -n "${PRINT_ONLY:-}" ]; then printf '%q ' "$@"; echo; else "$@"; fi; }

run gcloud run jobs deploy "$JOB" --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
  --service-account "$SERVICE_ACCOUNT" --max-retries 0 --task-timeout 3600 \
  --command python --args="-m,pipeline.merge_landed,$(IFS=,; echo "${MERGE_ARGS[*]}")"
run gcloud scheduler jobs create http "$JOB" --project "$PROJECT" --location "$REGION" --schedule "$SCHEDULE" \
  --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/$JOB:run" --http-method POST \
  --oauth-service-account-email "$SERVICE_ACCOUNT"
