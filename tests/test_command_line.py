"""The command line as a person meets it: ``--help`` of every command, unknown flags, no service started
for either (the real ``./run.sh`` commands, with emulator ports of their own)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import UsageError, check_import_flags, import_help
from pipeline.flags import FLAG_GROUPS
from tests.conftest import free_port
from tests.factory import envelope, line, write_ndjson

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_services(tmp_path) -> dict:
    """An environment where run.sh would start the local emulators (no credentials, no endpoint), on ports
    of this test; ``started()`` tells whether anything came up."""
    ports = {"BQ_EMULATOR_PORT": free_port(), "BQ_EMULATOR_GRPC_PORT": free_port(), "PUBSUB_EMULATOR_PORT": free_port()}
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST", "BQ_EMULATOR_DATA_DIR")}
    env.update({k: str(v) for k, v in ports.items()}, HOME=str(tmp_path / "home"))

    def started() -> list[str]:
        up = []
        for name in ("BQ_EMULATOR_PORT", "PUBSUB_EMULATOR_PORT"):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", ports[name])) == 0:
                    up.append(name)
        pid_files = [ROOT / ".emulators" / f"bigquery-{ports['BQ_EMULATOR_PORT']}.pid",
                     ROOT / ".emulators" / f"pubsub-{ports['PUBSUB_EMULATOR_PORT']}.pid"]
        return up + [str(p) for p in pid_files if p.exists()]

    return {"env": env, "started": started}


def run_sh(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "run.sh"), *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=180)


ALL_IMPORT_FLAGS = [f for flags in FLAG_GROUPS.values() for f in flags]
HELP = {
    "import": ALL_IMPORT_FLAGS + [f"{title} options:" for title in FLAG_GROUPS] + ["Beam's own options"],
    "replay": ["--dead_letters", "--from_table", "--reason", "--rejected_by", "--source", "--output_table",
               "--datasource_id", "--dry_run", "--pseudonymize"],
    "query": ["--format", "--bigquery_endpoint", "--project", "sql"],
    "publish": ["--topic", "--subscription", "inputs"],
    "merge-landed": ["--output_table", "--landing_table", "--bigquery_endpoint", "--run_id"],
}


@pytest.mark.parametrize("command", list(HELP))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_flag_and_starts_nothing(no_services, command, flag):
    """Nor imports Beam: a second and a half for a page of text (each command imports it after its flags)."""
    result = run_sh({**no_services["env"], "PYTHONPROFILEIMPORTTIME": "1"}, command, flag)
    assert result.returncode == 0, result.stderr
    missing = [f for f in HELP[command] if f not in result.stdout]
    assert not missing, f"{command} {flag} does not show {missing}:\n{result.stdout}"
    assert result.stdout.startswith(f"usage: ./run.sh {command}")
    assert no_services["started"]() == []
    assert "import time:" in result.stderr and "apache_beam" not in result.stderr


def test_import_help_shows_each_flag_once_in_its_group():
    text = import_help()
    for title, flags in FLAG_GROUPS.items():
        section = next(s for s in text.split("\n\n") if s.startswith(f"{title} options:"))
        listed = [row.split()[0] for row in section.splitlines()[1:] if row.startswith("  --")]
        assert sorted(listed) == sorted(flags), title
    assert "(default: 50000)" in " ".join(text.split())  # defaults shown where the help did not say them


TYPOS = {
    "import": (["--input", "x.ndjson", "--ouput_table", "p.d.t"], "unknown flag --ouput_table (did you mean "
                                                                   "--output_table?)"),
    "replay": (["--dead_letters", "x.ndjson", "--reasn", "timestamp:"], "unknown flag --reasn (did you mean "
                                                                         "--reason?)"),
    "query": (["SELECT 1", "--formt", "json"], "unknown flag --formt (did you mean --format?)"),
    "publish": (["x.ndjson", "--topc", "projects/p/topics/t"], "unknown flag --topc (did you mean --topic?)"),
    "merge-landed": (["--output_table", "p.d.t", "--landng_table", "p.d.l"],
                     "unknown flag --landng_table (did you mean --landing_table?)"),
}


@pytest.mark.parametrize("command", list(TYPOS))
def test_unknown_flag_is_refused_before_any_service_starts(no_services, command):
    args, message = TYPOS[command]
    result = run_sh({**no_services["env"], "PYTHONPROFILEIMPORTTIME": "1"}, command, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert no_services["started"]() == []
    assert "import time:" in result.stderr and "apache_beam" not in result.stderr  # refused before Beam


def test_an_input_that_matches_no_file_is_refused_before_any_service_starts(no_services, tmp_path):
    (tmp_path / "a.ndjson").write_text("{}\n")
    for pattern in (tmp_path / "typo.ndjson", tmp_path / "missing" / "*.ndjson"):
        result = run_sh(no_services["env"], "import", "--input", str(tmp_path / "a.ndjson"), "--input", str(pattern))
        assert result.returncode == 2, result.stderr
        assert f"error: --input '{pattern}' matches no file" in result.stderr  # the launcher's words
        assert no_services["started"]() == []
    # what may match is the launcher's to match, with Beam's rules (and its own words when it does not)
    from pipeline.cli import check_local_inputs

    check_local_inputs(["--input", str(tmp_path / "none-*.ndjson"), "--input", "gs://b-ucket/none.ndjson"])


def test_replay_refuses_a_misspelled_import_flag(no_services):
    result = run_sh(no_services["env"], "replay", "--dead_letters", "x.ndjson", "--dryrun")
    assert result.returncode == 2 and "unknown flag --dryrun (did you mean --dry_run?)" in result.stderr
    assert no_services["started"]() == []


@pytest.mark.parametrize("args, message", [
    ([], "nothing to replay: give --dead_letters PATTERN"),
    (["--dead_letters", "x.ndjson", "--input", "y.ndjson"], "replay reads dead letters; do not give --input"),
    (["--from_table", "my-project.d.events"], "is not named like a dead-letter table"),
    (["--from_table", "p.d"], "--from_table: 'p.d' is not a BigQuery table name"),
])
def test_a_replay_that_cannot_run_is_refused_before_any_service_starts(no_services, args, message):
    result = run_sh(no_services["env"], "replay", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert no_services["started"]() == []


def test_misspelled_flag_never_runs_the_import(tmp_path):
    """Before: ``--batchsize`` was dropped with a warning and the import ran (exit 0, rows written). And
    the refusal comes before Beam is imported (a second at every start, for nothing)."""
    path = write_ndjson(tmp_path / "in.ndjson", [line(envelope(1))])
    out = tmp_path / "out"
    result = subprocess.run([str(ROOT / ".venv/bin/python"), "-X", "importtime", "-m", "pipeline", "--input", str(path),
                             "--output_dir", str(out), "--batchsize", "5", "stray"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "unknown flag --batchsize (did you mean --batch_size?)" in result.stderr
    assert "unexpected argument 'stray'" in result.stderr
    assert not out.exists()
    assert "import time:" in result.stderr and "apache_beam" not in result.stderr
    helped = subprocess.run([str(ROOT / ".venv/bin/python"), "-X", "importtime", "-m", "pipeline", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert helped.returncode == 0 and helped.stdout.strip() == import_help().strip()
    assert "import time:" in helped.stderr and "apache_beam" not in helped.stderr


def test_the_table_of_beams_flags_is_the_installed_beams():
    """The check reads Beam's flags from pipeline/beam_flags.py, made from the installed Beam: the same
    flags as Beam's options classes declare in a process that imported what an import imports."""
    result = subprocess.run([str(ROOT / ".venv/bin/python"), "scripts/make_beam_flags.py", "--check"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("argv", [
    ["--runner=DataflowRunner", "--project", "p", "--region", "europe-west1", "--temp_location", "gs://b/t",
     "--experiments=a", "--experiments", "b", "--sdk_container_image=img", "--num_workers", "3",
     "--max_num_workers=9", "--machine_type", "n2-standard-4", "--service_account_email", "x@p.iam",
     "--dry_run=true", "--job_name", "j", "--labels", "k=v", "--save_main_session"],
    ["--direct_num_workers=1", "--direct_running_mode", "in_memory", "--input", "a", "--input", "b", "--drop_bots"],
    ["--template_location", "gs://b/t", "--staging_location", "gs://b/s", "--input=gs://b/*", "--min_event_time",
     "-1"],
])
def test_beam_and_dataflow_flags_pass(argv):
    check_import_flags(argv)


@pytest.mark.parametrize("argv, message", [
    (["--dryrun"], "did you mean --dry_run?"),
    (["--input", "x", "--num_worker", "3"], "did you mean --num_workers?"),
    (["-i", "x"], "unknown flag -i"),
    (["--input", "x", "--", "y"], "unexpected argument 'y'"),
])
def test_unknown_arguments_are_named(argv, message):
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        check_import_flags(argv)


@pytest.fixture
def _import(capsys):
    """``python -m pipeline ARGS``, run by the launcher's ``main`` in this process: these tests are about what
    the launcher checks and says, and a new Python per run costs seconds of imports (the real process's
    refusal is test_misspelled_flag_never_runs_the_import's)."""
    from pipeline.launcher import main

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        argv = [*args, "--direct_num_workers=1"]
        code = main(argv)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["python", "-m", "pipeline", *argv], code, out, err)

    return run


def test_output_dir_that_holds_files_is_refused_unless_overwrite(tmp_path, _import):
    """Before: a re-run into the same folder deleted the previous run's files and said nothing."""
    path = write_ndjson(tmp_path / "in.ndjson", [line(envelope(i)) for i in range(3)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = _import("--input", str(path), "--output_dir", str(out))
    assert refused.returncode == 2
    assert f"--output_dir {out} is not empty (notes.txt)" in refused.stderr and "--overwrite" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"], "nothing read, nothing written"
    done = _import("--input", str(path), "--output_dir", str(out), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert (out / "notes.txt").read_text() == "mine", "--overwrite replaces the import's own files only"
    assert (out / "import_report.json").exists() and list((out / "rows").glob("*.parquet"))


@pytest.mark.parametrize("where, message", [
    ("folder", "is a folder: give a file name"),
    ("under a file", "cannot be written"),
])
def test_bad_report_path_is_refused_before_reading(tmp_path, where, message, _import):
    """Before: a bad --report_path failed with a traceback after the rows were written."""
    path = write_ndjson(tmp_path / "in.ndjson", [line(envelope(1))])
    report = tmp_path if where == "folder" else path / "sub" / "report.json"
    out = tmp_path / "out"
    result = _import("--input", str(path), "--output_dir", str(out), "--report_path", str(report))
    assert result.returncode == 2, result.stderr
    assert f"--report_path {report} {message}" in result.stderr
    assert not out.exists(), "nothing written before the check"


def _pyenv_python(version: str) -> str:
    found = sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(f"versions/{version}.*/bin/python3"))
    if not found:
        pytest.skip(f"no Python {version} in pyenv")
    return str(found[-1])


@pytest.mark.parametrize("version, accepted", [("3.11", True), ("3.12", True), ("3.13", True), ("3.10", False)])
def test_run_sh_takes_python_3_11_to_3_13(version, accepted):
    """Before: only 3.11 was accepted, though Beam 2.77 and every pinned package have 3.12/3.13 wheels."""
    python = _pyenv_python(version)
    result = subprocess.run([str(ROOT / "run.sh"), "which-python"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHON": python}, timeout=60)
    if accepted:
        assert (result.returncode, result.stdout.strip()) == (0, python)
    else:
        assert result.returncode == 1 and "Python 3.11, 3.12 or 3.13 is needed" in result.stderr
