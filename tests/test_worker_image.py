"""Dataflow workers start from the template image with nothing to install: no package index needed.

A worker pip-installs whatever the job stages for it (a ``--setup_file`` sdist, a ``--requirements_file``,
``--extra_package``s), and pip fetches build tools and packages from an index, which private networks
and VPC-SC perimeters do not have. So the image holds the installed package and is the workers' SDK
container (``--sdk_container_image``); the job built by ``template_main.py`` stages nothing to install.

The fast tests check the job's options the way Beam reads them (which container the workers run, what
Beam stages for them) and the Dockerfile; the slow one (``-m packaging``) runs the Dockerfile's
package-install line in a virtualenv that cannot reach any index.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "europe-west1-docker.pkg.dev/my-project/dataflow/rlvt-importer:2026-11-26"

# What the Flex Template launcher passes to FLEX_TEMPLATE_PYTHON_PY_FILE besides the parameters: the job's
# cloud settings, a template location (Beam writes the job there for the launcher to submit) and, for each
# of these variables set in the image, the flag it stands for.
LAUNCHER_FLAGS = ["--runner=DataflowRunner", "--project=my-project", "--region=europe-west1",
                  "--temp_location=gs://my-bucket/tmp", "--staging_location=gs://my-bucket/staging",
                  "--template_location=gs://my-bucket/staging/template_launches/2026-11-26_02_30_00/job_object"]
LAUNCHER_FILE_VARIABLES = {"FLEX_TEMPLATE_PYTHON_SETUP_FILE": "--setup_file",
                           "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE": "--requirements_file",
                           "FLEX_TEMPLATE_PYTHON_EXTRA_PACKAGES": "--extra_package"}
PARAMETERS = {"input": "gs://my-exports/rlvt/2026-11-25/*.ndjson.gz", "output_table": "my-project:analytics.events",
              "drop_bots": "true", "sdk_container_image": IMAGE}
# Names Beam stages for a worker to install: the --setup_file sdist, a requirements file, extra packages.
WORKER_INSTALLS = {"workflow.tar.gz", "requirements.txt", "extra_packages.txt"}


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def image_env() -> dict[str, str]:
    """The image's ENV variables, ${WORKDIR} resolved."""
    workdir = next(a for op, a in instructions() if op == "ARG" and a.startswith("WORKDIR=")).split("=", 1)[1]
    pairs = re.findall(r'(\w+)="?([^"\s]+)"?', " ".join(a for op, a in instructions() if op == "ENV"))
    return {k: v.replace("${WORKDIR}", workdir) for k, v in pairs}


def launcher_argv(parameters: dict[str, str]) -> list[str]:
    """The command line the template launcher gives template_main.py in this image."""
    env = image_env()
    files = [f"{flag}={env[var]}" for var, flag in LAUNCHER_FILE_VARIABLES.items() if var in env]
    return [*LAUNCHER_FLAGS, *files, *(f"--{name}={value}" for name, value in parameters.items())]


def staged_names(options, tmp_path: Path) -> set[str]:
    """What Beam stages for the job's workers (its own staging code, run for real; no upload)."""
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.portability.stager import Stager

    resources = Stager.create_job_resources(options, str(tmp_path), log_submission_env_dependencies=False)
    return {beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(r.role_payload).staged_name
            for r in resources}


def test_the_job_the_template_builds_runs_its_workers_on_the_image_with_nothing_to_install(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, WorkerOptions
    from apache_beam.runners.dataflow.internal.apiclient import get_container_image_from_options

    from template_main import job_flags

    options = PipelineOptions(job_flags(launcher_argv(PARAMETERS)))
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert get_container_image_from_options(options) == IMAGE, "the container Dataflow starts the workers in"
    setup = options.view_as(SetupOptions)
    assert (setup.setup_file, setup.requirements_file, setup.extra_packages) == (None, None, None)
    staged = staged_names(options, tmp_path)
    assert not staged & WORKER_INSTALLS and not any(n.endswith((".whl", ".tar.gz", ".zip")) for n in staged), staged


@pytest.mark.parametrize("extra, refused", [
    (["--setup_file=/template/setup.py"], "--setup_file"),
    (["--requirements_file=/template/requirements.txt"], "--requirements_file"),
    (["--extra_package=/template/dist/rlvt.whl"], "--extra_package"),
    (["--sdk_location=gs://my-bucket/apache_beam-2.77.0.tar.gz"], "--sdk_location"),
])
def test_flags_that_make_workers_install_packages_are_refused(extra, refused):
    from template_main import TemplateError, job_flags

    with pytest.raises(TemplateError, match=f"^{refused}: .*install nothing at start-up"):
        job_flags(launcher_argv(PARAMETERS) + extra)


def test_a_job_without_the_image_is_refused_and_a_local_run_needs_none():
    from template_main import TemplateError, job_flags

    without = {k: v for k, v in PARAMETERS.items() if k != "sdk_container_image"}
    with pytest.raises(TemplateError, match="parameter sdk_container_image=IMAGE"):
        job_flags(launcher_argv(without))
    local = ["--input=a.ndjson", "--output_dir=out", "--drop_bots=false"]
    assert job_flags(local) == local


def test_the_entry_point_exits_2_with_the_reason_before_any_work(tmp_path):
    argv = launcher_argv({**PARAMETERS, "input": str(tmp_path / "nothing-here-*.ndjson")})
    result = subprocess.run([sys.executable, str(ROOT / "template_main.py"), *argv, "--setup_file=/template/setup.py"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "error: --setup_file: the template's workers run its image" in result.stderr
    assert "Traceback" not in result.stderr and "matches no file" not in result.stderr


# --- the Dockerfile --------------------------------------------------------------------------------------

def package_install() -> list[str]:
    """The Dockerfile's install of our own package: the one ``pip install … .``."""
    runs = [a.split() for op, a in instructions() if op == "RUN"]
    ours = [words for words in runs if words[:2] == ["pip", "install"] and words[-1] == "."]
    assert len(ours) == 1, f"expected one `RUN pip install … .`, found {len(ours)}"
    return ours[0]


def build_backend_pin() -> str:
    """The setuptools the Dockerfile installs with the dependencies, before the package."""
    runs = [a for op, a in instructions() if op == "RUN"]
    before = runs[:[a.split() for a in runs].index(package_install())]
    pins = [m for a in before for m in re.findall(r"\bsetuptools==[\d.]+", a)]
    assert len(pins) == 1, "the build backend is installed, pinned, with the dependencies (which have an index)"
    return pins[0]


def test_the_image_sets_only_the_launchers_entry_point():
    env = image_env()
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"] == "/template/template_main.py"
    staged = [var for var in LAUNCHER_FILE_VARIABLES if var in env]
    assert not staged, f"every worker would pip-install what these stage at start-up: {staged}"
    assert not {k for k in env if k.startswith("PIP_")}, "no pip settings for the workers"


def test_the_package_install_line_needs_no_index():
    words = package_install()
    for flag in ("--no-index", "--no-build-isolation", "--no-deps"):
        assert flag in words, f"the package install needs {flag}: {' '.join(words)}"
    assert not {w for w in words if w.startswith(("--index-url", "--extra-index-url", "--find-links", "-i"))}
    version = tuple(int(p) for p in build_backend_pin().split("==")[1].split(".")[:2])
    assert version >= (70, 1), "setuptools before 70.1 needs the `wheel` package to build a wheel"


@pytest.mark.packaging
def test_the_package_installs_as_in_the_image_with_no_index_reachable(tmp_path):
    sources = [arg.split()[:-1] for op, arg in instructions() if op == "COPY" and not arg.startswith("--from")]
    src = tmp_path / "template"  # the Dockerfile's build context, as COPY lays it out in /template
    src.mkdir()
    for name in {n for names in sources for n in names} - {"requirements.txt", "requirements.lock"}:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    shutil.copy2(ROOT / "requirements.txt", src / "requirements.txt")  # setup.py reads it
    venv = tmp_path / "image"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    # the image's dependency layer: the build backend comes from the index, while the build has one
    run([python, "-m", "pip", "install", "-q", build_backend_pin()])

    # From here on there is no index: pip is told so, and any index it would try is a closed port.
    offline = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
               "PIP_CONFIG_FILE": os.devnull}
    isolated = subprocess.run([python, "-m", "pip", "install", "--no-deps", "."], cwd=src, env=clean_env(offline),
                              capture_output=True, text=True, timeout=600)
    assert isolated.returncode != 0, "an isolated build (a worker's pip install of the staged sdist) needs an index"
    assert "setuptools" in isolated.stdout + isolated.stderr

    words = package_install()
    run([python, "-m", *words], cwd=src, extra_env=offline)  # the Dockerfile's own line
    outside = tmp_path / "elsewhere"  # as the Dockerfile's check: from outside the source folder
    outside.mkdir()
    checked = run([python, "-m", "rlvt_own_packages"], cwd=outside)
    assert checked.stdout.startswith("rlvt-bigquery-importer: "), checked.stdout
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    for package in ("pipeline", "schemas", "transforms"):
        assert (Path(site) / package / "__init__.py").is_file(), f"{package} is not installed in the venv"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PIP_")}
    return {**env, **(extra or {})}


def run(args: list, cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd,
                            env=clean_env(extra_env))
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result
