"""The Flex Template: metadata.json against the pipeline's flags, the Dockerfile's pins, scripts/dataflow.sh."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from tests.conftest import ROOT, run_in_gcloud_python

METADATA = ROOT / "metadata.json"
DOCKERFILE = ROOT / "Dockerfile"
DATAFLOW_SH = ROOT / "scripts" / "dataflow.sh"
OBVIOUSLY_BAD = ["", "bad value; rm -rf /", "\n"]


def load_generator():
    spec = importlib.util.spec_from_file_location("make_metadata", ROOT / "scripts" / "make_metadata.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_metadata = load_generator()


def metadata() -> dict:
    return json.loads(METADATA.read_text())


def params() -> dict[str, dict]:
    return {p["name"]: p for p in metadata()["parameters"]}


def pipeline_flags() -> dict[str, argparse.Action]:
    return {a.dest: a for a in make_metadata.pipeline_flags() if a.option_strings and a.dest != "help"}


def test_every_pipeline_flag_is_a_template_parameter_and_nothing_else():
    flags, declared = set(pipeline_flags()), set(params())
    assert "dry_run" in flags
    assert not flags - declared, f"flags missing from metadata.json: {sorted(flags - declared)}"
    assert not declared - flags, f"metadata.json parameters the pipeline does not know: {sorted(declared - flags)}"


def test_metadata_json_is_what_the_generator_writes():
    assert METADATA.read_text() == make_metadata.render(), \
        "metadata.json is stale: run .venv/bin/python scripts/make_metadata.py"


def test_help_texts_are_the_argparse_help():
    flags = pipeline_flags()
    for name, param in params().items():
        want = make_metadata.DRY_RUN_HELP if name == "dry_run" else " ".join(flags[name].help.split())
        assert param["helpText"] == want, name
        assert param["label"] and len(param["label"]) <= 80, name


def test_regexes_compile_accept_the_default_and_reject_bad_values():
    flags = pipeline_flags()
    for name, param in params().items():
        regexes = param.get("regexes", [])
        default = flags[name].default
        for regex in regexes:
            compiled = re.compile(regex)
            # Dataflow checks parameters in Java and the console in JavaScript: no Python-only syntax
            assert "(?P<" not in regex and "(?<" not in regex, (name, regex)
            assert regex.startswith("^") and regex.endswith("$"), (name, regex)
            if default is not None:
                text = str(default).lower() if isinstance(default, bool) else str(default)
                assert compiled.fullmatch(text), (name, regex, text)
                assert param.get("defaultValue") == (text or None), name
            for bad in OBVIOUSLY_BAD:
                if bad != default:  # --pseudonymize's default is "" (none)
                    assert not compiled.fullmatch(bad), (name, regex, bad)


def test_every_value_with_a_shape_has_a_regex():
    flags = pipeline_flags()
    free_text = {name for name, (_, shape, *_) in make_metadata.SHAPES.items() if shape is None}
    for name, param in params().items():
        if name in free_text:
            continue
        assert param.get("regexes"), f"{name} has a shape but no regex"
        if flags[name].choices:
            assert [o["value"] for o in param["enumOptions"]] == list(flags[name].choices)
        if flags[name].type in (int, float):
            assert param["paramType"] == "NUMBER", name


# Values a user would give (for flags without a default) and the companions the pipeline's checks need.
GOOD = {
    "input": ("gs://my-exports/rlvt/2026-11-25/*.ndjson.gz", []),
    "input_subscription": ("projects/my-project/subscriptions/rlvt-events", ["--output_table=my-project.a.events"]),
    "datasource_id": ("61a095fdd8d2e20011544831", []),
    "output_dir": ("gs://my-bucket/rlvt/out", []),
    "output_table": ("my-project:analytics.rlvt_events", []),
    "dead_letter_table": ("my-project.analytics.dead", ["--output_table=my-project.analytics.events"]),
    "conflicts_table": ("my-project.analytics.conflicts", ["--output_table=my-project.analytics.events"]),
    "landing_table": ("my-project.analytics.landing", ["--output_table=my-project.analytics.events"]),
    "bigquery_endpoint": ("https://bigquery.googleapis.com", ["--output_table=my-project.analytics.events"]),
    "bigquery_location": ("europe-west1", []),
    "report_path": ("gs://my-bucket/rlvt/report.json", []),
    "default_timestamp": ("2026-11-01T00:00:00Z", ["--missing_timestamp=fill"]),
    "min_event_time": ("2020-01-01T00:00:00.123+00:00", []),
    "max_event_time": ("2100-01-01", []),
    "stop_after_idle_seconds": ("30", []),
    "run_id": ("nightly-20261125", []),
    "dry_run": ("true", []),
    "drop_bots": ("true", []),
    "redact_dead_letters": ("true", []),
    "pseudonymize": ("clientId,tmpId", []),
    "hash_key_env": ("RLVT_TEST_HASH_KEY", []),
    "hash_key_secret": ("projects/my-project/secrets/rlvt-hash-key/versions/3", []),
}


def pipeline_accepts(argv: list[str]) -> bool:
    """Does the import, launched by the template (template_main.py), accept these --name=value flags?"""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.flags import normalize_argv
    from pipeline.options import check_options

    if not any(a.startswith(("--input=", "--input_subscription=")) for a in argv):
        argv = ["--input=gs://b/x/*.ndjson", *argv]
    if not any(a.startswith(("--output_table=", "--output_dir=", "--dry_run")) for a in argv):
        argv = [*argv, "--dry_run=true"]
    now = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp() * 1_000_000)
    try:
        check_options(PipelineOptions(normalize_argv(argv)), now)
    except (ValueError, SystemExit):
        return False
    return True


@pytest.mark.parametrize("name", sorted(GOOD))
def test_values_the_template_accepts_are_values_the_pipeline_accepts(name, monkeypatch):
    monkeypatch.setenv("RLVT_HASH_KEY", "a test key of at least 16 bytes")
    value, companions = GOOD[name]
    param = params()[name]
    assert all(re.fullmatch(r, value) for r in param.get("regexes", [])), (name, value)
    assert pipeline_accepts([f"--{name}={value}", *companions]), (name, value)


@pytest.mark.parametrize("name, value, companions", [
    ("datasource_id", "61A095FDD8D2E20011544831", []),
    ("output_table", "my-project.dataset", []),
    ("output_table", "my-project.analytics.t`; DROP TABLE x", []),
    ("bigquery_endpoint", "ftp://example.com", ["--output_table=my-project.analytics.events"]),
    ("min_event_time", "yesterday", []),
    ("input_subscription", "rlvt-events", ["--output_table=my-project.a.events"]),
    ("buckets", "eight", []),
    ("pseudonymize", "email", []),
    ("drop_bots", "yes please", []),
])
def test_values_the_pipeline_rejects_are_rejected_by_the_template(name, value, companions):
    assert not pipeline_accepts([f"--{name}={value}", *companions])
    assert not any(re.fullmatch(r, value) for r in params()[name]["regexes"])


def test_gcloud_accepts_the_metadata_file():
    """The same parser `gcloud dataflow flex-template build --metadata-file` uses; unknown fields fail."""
    result = run_in_gcloud_python(
        "from googlecloudsdk.api_lib.dataflow import apis\n"
        "m = apis.Templates._BuildTemplateMetadata(open(sys.argv[1]).read())\n"
        "bad = [(p.name, p.all_unrecognized_fields()) for p in m.parameters if p.all_unrecognized_fields()]\n"
        "print(json.dumps({'params': len(m.parameters), 'unrecognized': bad}))\n",
        str(METADATA))
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    assert checked == {"params": len(params()), "unrecognized": []}


# --- Dockerfile ---------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_beam_version_is_the_pinned_one():
    pinned = re.search(r"^apache-beam\[[^\]]*\]==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    locked = re.search(r"^apache-beam==([\d.]+)$", (ROOT / "requirements.lock").read_text(), re.M).group(1)
    froms = [arg for op, arg in dockerfile_instructions() if op == "FROM"]
    sdk = [f for f in froms if f.startswith("apache/beam_python")]
    assert len(sdk) == 1 and froms[-1] == sdk[0], "the final stage is Beam's SDK image"
    assert sdk[0] == f"apache/beam_python3.11_sdk:{pinned}"
    assert locked == pinned
    assert any("python311-template-launcher-base" in f for f in froms), "launcher for the same Python (3.11)"
    # the local CLI runs on 3.11-3.13 (run.sh); a Dataflow submission only from 3.11, the image's (run.sh dataflow)
    assert re.search(r'python_requires=">=3\.11,<3\.14"', (ROOT / "setup.py").read_text())


def test_dockerfile_copies_what_the_package_and_the_launcher_need():
    instructions = dockerfile_instructions()
    copied = set()
    for op, arg in instructions:
        if op == "COPY" and not arg.startswith("--from"):
            copied.update(arg.split()[:-1])
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such file in the repository"
    setup = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(setup) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kwargs = {k.arg: k.value for k in call.keywords if k.arg in ("packages", "py_modules")}
    packages = {e.value for e in kwargs["packages"].elts if isinstance(e, ast.Constant)}  # the top-level ones
    needed = {*packages, *(m + ".py" for m in ast.literal_eval(kwargs["py_modules"])),
              "setup.py", "requirements.txt", "MANIFEST.in", "template_main.py"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    env = dict(re.findall(r'(\w+)="?([^"\s]+)"?', " ".join(a for op, a in instructions if op == "ENV")))
    workdir = next(a for op, a in instructions if op == "ARG" and a.startswith("WORKDIR=")).split("=", 1)[1]
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"] == "${WORKDIR}/template_main.py" and workdir == "/template"
    # nothing for the workers to pip-install at start-up (tests/test_worker_image.py has the details)
    assert not {"FLEX_TEMPLATE_PYTHON_SETUP_FILE", "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE"} & env.keys()
    runs = " ".join(a for op, a in instructions if op == "RUN")
    assert "python -m rlvt_own_packages" in runs, "the image build checks the package names"
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in instructions, "usable as the workers' SDK container"


def test_template_entry_file_runs_the_import(tmp_path):
    from tests.factory import envelope, line, write_ndjson

    src = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(5)])
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "template_main.py"), f"--input={src}",
                             f"--output_dir={out}", "--drop_bots=true", "--redact_dead_letters=false",
                             "--direct_num_workers=1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "import_report.json").read_text())["total"]["loaded"] == 5


def test_on_off_flags_given_as_template_parameters_reach_the_import_as_given():
    from template_main import job_flags

    argv = ["--drop_bots=true", "--redact_dead_letters=false", "--dry_run=true", "--input=gs://b/x"]
    assert job_flags(argv) == argv
    assert pipeline_accepts(argv) and not pipeline_accepts([*argv, "--drop_bots=maybe"])


# --- scripts/dataflow.sh ------------------------------------------------------------------------------------

def dataflow_sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("IMAGE", "TEMPLATE_PATH", "PROJECT", "REGION")}
    return subprocess.run([str(DATAFLOW_SH), *args], capture_output=True, text=True, timeout=120,
                          env={**environment, "PRINT_ONLY": "1", **env})


def test_submit_says_which_cloud_flags_are_missing():
    result = dataflow_sh("submit", "--input", "/data/export.ndjson", "--output_dir", "out")
    assert result.returncode == 2
    for needed in ("--project", "--region", "--temp_location"):
        assert f"missing {needed}" in result.stderr
    assert "--input=/data/export.ndjson is not a gs:// path" in result.stderr
    assert "--output_dir=out is not a gs:// path" in result.stderr
    assert result.stdout == ""


def test_submit_rejects_a_local_temp_location_and_a_local_emulator():
    result = dataflow_sh("submit", "--project=my-project", "--region=europe-west1", "--temp_location=/tmp/x",
                         "--input=gs://b/x/*.gz", "--output_table=my-project.a.t",
                         "--bigquery_endpoint=http://127.0.0.1:9050")
    assert result.returncode == 2
    assert "--temp_location=/tmp/x must be a gs:// path" in result.stderr
    assert "Dataflow workers cannot reach it" in result.stderr


SUBMIT_FLAGS = ["--project", "my-project", "--region", "europe-west1", "--temp_location", "gs://b/tmp",
                "--input", "gs://b/rlvt/2026-11-*/*.ndjson.gz", "--output_table", "my-project:analytics.events",
                "--buckets", "2000"]
SUBMITTED = r"--input gs://b/rlvt/2026-11-\*/\*.ndjson.gz --output_table my-project:analytics.events --buckets 2000"
IMAGE = "europe-west1-docker.pkg.dev/my-project/dataflow/rlvt-importer:1"


def test_submit_runs_the_workers_on_the_template_image():
    result = dataflow_sh("submit", *SUBMIT_FLAGS, IMAGE=IMAGE)
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip()
    assert command.startswith(f"{ROOT}/.venv/bin/python -m pipeline --runner=DataflowRunner "
                              f"--sdk_container_image {IMAGE} ")
    assert command.endswith(SUBMITTED)
    assert "--setup_file" not in command and result.stderr == ""


def test_submit_without_an_image_stages_the_setup_file_and_says_workers_need_pypi():
    result = dataflow_sh("submit", *SUBMIT_FLAGS)
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip()
    assert command.startswith(f"{ROOT}/.venv/bin/python -m pipeline --runner=DataflowRunner --setup_file ./setup.py ")
    assert command.endswith(SUBMITTED)
    assert "pip-install the package and its pins from PyPI at start-up" in result.stderr


def test_submit_with_an_image_refuses_packages_for_the_workers_to_install():
    given = dataflow_sh("submit", *SUBMIT_FLAGS, f"--sdk_container_image={IMAGE}")
    assert given.returncode == 0 and "--sdk_container_image" in given.stdout and "--setup_file" not in given.stdout
    result = dataflow_sh("submit", *SUBMIT_FLAGS, "--setup_file", "./setup.py", "--requirements_file=r.txt",
                         IMAGE=IMAGE)
    assert result.returncode == 2 and result.stdout == ""
    assert f"--setup_file with the image {IMAGE}" in result.stderr
    assert f"--requirements_file with the image {IMAGE}" in result.stderr


def test_template_run_passes_importer_flags_as_parameters_and_the_rest_to_gcloud():
    result = dataflow_sh("template-run", "--project", "my-project", "--region", "europe-west1",
                         "--input", "gs://b/rlvt/2026-11-25/*.ndjson.gz", "--output_table=my-project:a.events",
                         "--dry_run", "--drop_bots", "--max_workers", "20", "--run_id", "a,b",
                         "--job_name", "rlvt-test",
                         TEMPLATE_PATH="gs://b/templates/rlvt.json", IMAGE="europe-west1-docker.pkg.dev/p/d/i:1")
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:5] == ["gcloud", "dataflow", "flex-template", "run", "rlvt-test"]
    assert "--max-workers=20" in words
    assert r"--parameters=input=gs://b/rlvt/2026-11-25/\*.ndjson.gz" in words
    assert "--parameters=dry_run=true" in words and "--parameters=drop_bots=true" in words
    assert r"--parameters=\^~\^run_id=a\,b" in words  # gcloud's other-delimiter syntax for a comma
    assert "--parameters=sdk_container_image=europe-west1-docker.pkg.dev/p/d/i:1" in words
    named = {w.split("=", 1)[1].split("=")[0].replace("\\^~\\^", "") for w in words if w.startswith("--parameters=")}
    assert named - {"sdk_container_image"} <= set(params())


@pytest.mark.parametrize("args, env, message", [
    (["--input=gs://b/x", "--bogus=1"], {}, "--bogus is neither a template parameter"),
    (["--input=gs://b/x", "--input=gs://b/y"], {}, "exactly one --input"),
    (["--input=gs://b/x"], {"TEMPLATE_PATH": ""}, "needs the template spec"),
    (["--input=gs://b/x"], {"IMAGE": ""}, "template-run needs the template's image for the workers"),
])
def test_template_run_refuses_what_the_template_cannot_take(args, env, message):
    result = dataflow_sh("template-run", "--project=p-123", "--region=europe-west1", *args,
                         **{"TEMPLATE_PATH": "gs://b/t.json", **env})
    assert result.returncode == 2 and message in result.stderr


def test_template_build_builds_the_image_then_the_spec_with_the_metadata():
    env = {"IMAGE": "europe-west1-docker.pkg.dev/my-project/dataflow/rlvt:1",
           "TEMPLATE_PATH": "gs://b/templates/rlvt.json", "PROJECT": "my-project"}
    result = dataflow_sh("template-build", **env)
    assert result.returncode == 0, result.stderr
    build, spec = result.stdout.strip().splitlines()
    assert build == f"gcloud builds submit --project my-project --tag {env['IMAGE']} ."
    assert spec == (f"gcloud dataflow flex-template build gs://b/templates/rlvt.json --project my-project "
                    f"--image {env['IMAGE']} --sdk-language PYTHON --metadata-file metadata.json")
    missing = dataflow_sh("template-build", PROJECT="my-project")
    assert missing.returncode == 2 and "IMAGE=" in missing.stderr


def test_the_gcloud_flags_the_script_uses_exist():
    gcloud = shutil.which("gcloud")
    if not gcloud:
        pytest.skip("gcloud is not installed")
    script = DATAFLOW_SH.read_text()
    for command, uses in [
        (["dataflow", "flex-template", "run"],
         set(re.findall(r"=(--[a-z-]+)", script)) | {"--template-file-gcs-location", "--parameters", "--region",
                                                      "--disable-public-ips"}),
        (["dataflow", "flex-template", "build"], {"--image", "--sdk-language", "--metadata-file"}),
        (["builds", "submit"], {"--tag"}),
    ]:
        help_text = subprocess.run([gcloud, *command, "--help"], capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "TERM": "dumb"}).stdout
        help_text = re.sub(r"\x1b\[[0-9;]*m", "", help_text)
        for flag in uses:
            assert re.search(rf"{flag}\b", help_text), f"gcloud {' '.join(command)} has no {flag}"
