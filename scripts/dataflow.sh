#!/usr/bin/env bash
# The importer on Google Cloud Dataflow (docs/dataflow.md explains each step).
#
#   scripts/dataflow.sh submit FLAGS…        run an import on Dataflow from this machine:
#        python -m pipeline --runner=DataflowRunner --sdk_container_image $IMAGE FLAGS…
#        (the template image, built by template-build: workers start with everything installed).
#        Without IMAGE (nor --sdk_container_image), the fallback --setup_file ./setup.py: each worker
#        then pip-installs the package and its pins at start-up, which needs PyPI from the workers.
#        FLAGS must include --project, --region and --temp_location gs://…; inputs and file outputs
#        must be gs:// (the workers cannot see this machine's files). Waits for the job, then prints
#        the run report like a local import.
#   scripts/dataflow.sh template-build [--image IMAGE] [--template gs://…json] [--project P]
#        build the Flex Template image from ./Dockerfile with Cloud Build (no local Docker engine
#        needed), then write the template spec (image + metadata.json) to the template path.
#   scripts/dataflow.sh template-run FLAGS…  start a job from the Flex Template. FLAGS are the
#        importer's (--input gs://… --output_table P.D.T …; one --input pattern) plus Dataflow's
#        --project --region --job_name --temp_location --staging_location --service_account_email
#        --max_workers --num_workers --worker_machine_type --network --subnetwork --worker_region
#        --worker_zone --launcher_machine_type --disable_public_ips --additional_experiments
#        --sdk_container_image (default: $IMAGE, required: the workers run the launcher's image).
#
# Environment (flags win): PROJECT, REGION, IMAGE (e.g. europe-west1-docker.pkg.dev/P/dataflow/
# rlvt-importer:2026-11-26), TEMPLATE_PATH (e.g. gs://my-bucket/templates/rlvt-import.json).
# PRINT_ONLY=1 prints the commands (shell-quoted) instead of running them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() { echo "error: $*" >&2; exit 2; }

run() {  # run CMD… (or print it with PRINT_ONLY=1)
  if [ "${PRINT_ONLY:-}" = 1 ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

python_bin() {
  if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"
  else die "no project venv at $ROOT/.venv: run ./run.sh setup first"; fi
}

# flag_values NAME ARGS…: every value given as --NAME=V or --NAME V, one per line.
flag_values() {
  local name=$1; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      "--$name="*) echo "${1#*=}" ;;
      "--$name") [ $# -gt 1 ] && echo "$2" ;;
    esac
    shift
  done
}

has_flag() {
  local name=$1; shift
  for a in "$@"; do case "$a" in "--$name"|"--$name="*) return 0 ;; esac; done
  return 1
}

gcloud_default() {  # gcloud_default PROPERTY: a gcloud config value, or nothing
  [ "${PRINT_ONLY:-}" = 1 ] && return 0
  command -v gcloud >/dev/null 2>&1 && gcloud config get-value "$1" 2>/dev/null | grep -v '^(unset)$' || true
}

submit() {
  local missing=() errors=() v image flag
  has_flag runner "$@" && errors+=("--runner is set by this command (DataflowRunner); leave it out")
  has_flag project "$@" || missing+=("--project PROJECT   the Google Cloud project that runs the job")
  has_flag region "$@" || missing+=("--region REGION     the Dataflow region, e.g. europe-west1")
  has_flag temp_location "$@" \
    || missing+=("--temp_location gs://BUCKET/PATH   where the job stages files (the import's Parquet, too)")
  has_flag input "$@" || missing+=("--input gs://…     the files to import")
  while IFS= read -r v; do
    [ -n "$v" ] && [[ "$v" != gs://* ]] && errors+=("--temp_location=$v must be a gs:// path on Dataflow")
  done < <(flag_values temp_location "$@")
  for flag in input output_dir report_path; do
    while IFS= read -r v; do
      [ -n "$v" ] && [[ "$v" != gs://* ]] \
        && errors+=("--$flag=$v is not a gs:// path: Dataflow workers cannot read or write this machine's files")
    done < <(flag_values "$flag" "$@")
  done
  while IFS= read -r v; do
    case "$v" in
      *127.0.0.1*|*localhost*) errors+=("--bigquery_endpoint=$v is this machine: Dataflow workers cannot reach it") ;;
    esac
  done < <(flag_values bigquery_endpoint "$@")
  # The workers' code: the template image when there is one (nothing to install at start-up), else the
  # package staged with --setup_file, which every worker pip-installs (from PyPI) when it starts.
  local code=()
  if has_flag sdk_container_image "$@"; then
    image=$(flag_values sdk_container_image "$@" | tail -n 1)
  elif [ -n "${IMAGE:-}" ]; then
    image=$IMAGE; code=(--sdk_container_image "$IMAGE")
  else
    image=""; code=(--setup_file ./setup.py)
  fi
  if [ -n "$image" ]; then
    for flag in setup_file requirements_file extra_package extra_packages; do
      has_flag "$flag" "$@" \
        && errors+=("--$flag with the image $image: it has the package and its pins installed; workers install nothing")
    done
  fi
  if [ ${#missing[@]} -gt 0 ] || [ ${#errors[@]} -gt 0 ]; then
    for m in "${missing[@]}"; do echo "error: missing $m" >&2; done
    for e in "${errors[@]}"; do echo "error: $e" >&2; done
    echo "usage: scripts/dataflow.sh submit --project P --region R --temp_location gs://… --input 'gs://…' FLAGS…" >&2
    exit 2
  fi
  [ -z "$image" ] && echo "note: no IMAGE (nor --sdk_container_image): each worker will pip-install the package" \
    "and its pins from PyPI at start-up (minutes per worker, and workers without PyPI access fail);" \
    "build the template image (template-build) and set IMAGE to avoid it" >&2
  run "$(python_bin)" -m pipeline --runner=DataflowRunner "${code[@]}" "$@"
}

template_build() {
  local image=${IMAGE:-} template=${TEMPLATE_PATH:-} project=${PROJECT:-}
  while [ $# -gt 0 ]; do
    case "$1" in
      --image=*) image=${1#*=} ;;         --image) image=${2:-}; shift ;;
      --template=*) template=${1#*=} ;;   --template) template=${2:-}; shift ;;
      --project=*) project=${1#*=} ;;     --project) project=${2:-}; shift ;;
      *) die "template-build: unknown argument $1 (takes --image, --template, --project)" ;;
    esac
    shift
  done
  project=${project:-$(gcloud_default project)}
  [ -n "$image" ] || die "template-build needs the image path: IMAGE=REGION-docker.pkg.dev/PROJECT/REPOSITORY/rlvt-importer:TAG (or --image)"
  [ -n "$template" ] || die "template-build needs the template spec path: TEMPLATE_PATH=gs://BUCKET/templates/rlvt-import.json (or --template)"
  [[ "$template" == gs://*.json ]] || die "the template path must be gs://….json (got $template)"
  [ -n "$project" ] || die "template-build needs a project: PROJECT=… (or --project, or gcloud config set project)"
  "$(python_bin)" scripts/make_metadata.py --check \
    || die "metadata.json is stale: run .venv/bin/python scripts/make_metadata.py"
  run gcloud builds submit --project "$project" --tag "$image" .
  run gcloud dataflow flex-template build "$template" --project "$project" --image "$image" \
    --sdk-language PYTHON --metadata-file metadata.json
}

# Importer flags go to --parameters (names from metadata.json); these go to gcloud itself.
declare -A ENVIRONMENT=(
  [temp_location]=--temp-location [staging_location]=--staging-location
  [service_account_email]=--service-account-email [max_workers]=--max-workers [num_workers]=--num-workers
  [worker_machine_type]=--worker-machine-type [machine_type]=--worker-machine-type [network]=--network
  [subnetwork]=--subnetwork [worker_region]=--worker-region [worker_zone]=--worker-zone
  [launcher_machine_type]=--launcher-machine-type [additional_experiments]=--additional-experiments
  [experiments]=--additional-experiments [dataflow_kms_key]=--dataflow-kms-key
)

template_run() {
  local py names switches project=${PROJECT:-} region=${REGION:-} job="" template=${TEMPLATE_PATH:-}
  local image=${IMAGE:-} gcloud_args=() params=() inputs=0 name value
  py=$(python_bin)
  # " name name … " of the template's parameters, and of its on/off (BOOLEAN) ones
  names=" $("$py" -c 'import json,sys; print(" ".join(p["name"] for p in json.load(open(sys.argv[1]))["parameters"]))' metadata.json) "
  switches=" disable_public_ips $("$py" -c 'import json,sys; print(" ".join(p["name"] for p in json.load(open(sys.argv[1]))["parameters"] if p.get("paramType") == "BOOLEAN"))' metadata.json) "
  while [ $# -gt 0 ]; do
    name=${1%%=*}; name=${name#--}
    case "$1" in
      --*=*) value=${1#*=} ;;
      --*)
        if [[ "$switches" == *" $name "* ]]; then  # a bare on/off flag, or followed by true/false
          value=true
          if [ $# -gt 1 ] && [[ "$2" =~ ^(true|false)$ ]]; then value=$2; shift; fi
        else
          [ $# -gt 1 ] || die "--$name needs a value"; value=$2; shift
        fi ;;
      *) die "template-run: unexpected argument '$1' (flags are --name=value or --name value)" ;;
    esac
    shift
    case "$name" in
      project) project=$value ;;
      region) region=$value ;;
      job_name) job=$value ;;
      template) template=$value ;;
      sdk_container_image) image=$value ;;
      disable_public_ips) [ "$value" = true ] && gcloud_args+=(--disable-public-ips) ;;
      *)
        if [ -n "${ENVIRONMENT[$name]:-}" ]; then
          gcloud_args+=("${ENVIRONMENT[$name]}=$value")
        elif [[ "$names" == *" $name "* ]]; then
          [ "$name" = input ] && inputs=$((inputs + 1))
          if [[ "$value" == *,* ]]; then
            [[ "$value" == *'~'* ]] && die "--$name: a value with both ',' and '~' cannot be passed to gcloud"
            params+=("--parameters=^~^$name=$value")  # gcloud's syntax for another list delimiter
          else
            params+=("--parameters=$name=$value")
          fi
        else
          die "template-run: --$name is neither a template parameter (metadata.json) nor a Dataflow flag this script passes on"
        fi ;;
    esac
  done
  project=${project:-$(gcloud_default project)}
  region=${region:-$(gcloud_default dataflow/region)}
  [ "$inputs" -eq 1 ] || die "template-run needs exactly one --input gs://… pattern (got $inputs); a glob can match many files"
  [ -n "$template" ] || die "template-run needs the template spec: TEMPLATE_PATH=gs://…json (as given to template-build)"
  [ -n "$project" ] || die "template-run needs --project (or PROJECT=…)"
  [ -n "$region" ] || die "template-run needs --region (or REGION=…)"
  # The workers run the template's own image (template_main.py refuses a job without it).
  [ -n "$image" ] || die "template-run needs the template's image for the workers: IMAGE=… (as given to template-build) or --sdk_container_image"
  params+=("--parameters=sdk_container_image=$image")
  job=${job:-rlvt-import-$(date -u +%Y%m%d-%H%M%S)}
  run gcloud dataflow flex-template run "$job" --template-file-gcs-location "$template" \
    --project "$project" --region "$region" "${gcloud_args[@]}" "${params[@]}"
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  submit) submit "$@" ;;
  template-build) template_build "$@" ;;
  template-run) template_run "$@" ;;
  help|-h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) die "unknown command: $cmd (submit, template-build, template-run; see scripts/dataflow.sh help)" ;;
esac
