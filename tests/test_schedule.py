"""The nightly Airflow DAG, read with ``ast`` (Airflow is not installed): its template parameters are ones
metadata.json declares, in the shapes it declares, and a combination the importer accepts; each run
imports the day its data interval covers, once the export has marked that day complete."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from datetime import UTC, datetime

from tests.conftest import ROOT, run_in_gcloud_python
from tests.test_template import pipeline_accepts

DAG_FILE = ROOT / "deploy" / "airflow" / "rlvt_nightly_import.py"
OPERATOR = "DataflowStartFlexTemplateOperator"
SENSOR = "GCSObjectExistenceSensor"
TIMETABLE = "CronDataIntervalTimetable"
# What Airflow's Jinja gives the templated fields of the run that starts on 2026-11-26 at 02:30 UTC, for
# the data interval that just ended. Only the interval: ``ds``/``logical_date`` mean the start of that
# interval on Airflow 2 but the run's own day on Airflow 3 with a cron string (CronTriggerTimetable), so
# the DAG must not use them.
RUN_CONTEXT = {"data_interval_start": datetime(2026, 11, 25, 2, 30, tzinfo=UTC),
               "data_interval_end": datetime(2026, 11, 26, 2, 30, tzinfo=UTC)}
FILTERS = {"ds": lambda d: d.strftime("%Y-%m-%d"), "ds_nodash": lambda d: d.strftime("%Y%m%d")}  # Airflow's
DAY = "2026-11-25"  # the UTC day whose export that run imports
BEAM_OPTIONS = {"sdk_container_image"}  # Beam's pipeline options Dataflow passes on, not in metadata.json
PURE = (ast.Constant, ast.JoinedStr, ast.FormattedValue, ast.Name, ast.Load, ast.Dict, ast.List, ast.Tuple,
        ast.BinOp, ast.Add, ast.Mult)


def module() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def evaluate(node: ast.expr, names: dict) -> object:
    """Value of an expression built only from literals, f-strings and names already known."""
    assert all(isinstance(n, PURE) for n in ast.walk(node)), f"not a plain value: {ast.unparse(node)}"
    return eval(compile(ast.Expression(node), str(DAG_FILE), "eval"), {"__builtins__": {}}, dict(names))


def constants(tree: ast.Module) -> dict:
    """The module-level NAME = value assignments (the DAG's settings)."""
    names: dict = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = evaluate(stmt.value, names)
    return names


def operator_call(tree: ast.Module) -> ast.Call:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == OPERATOR]
    assert len(calls) == 1, f"expected one {OPERATOR}(…) in {DAG_FILE.name}"
    return calls[0]


def launch() -> tuple[dict, dict]:
    """(the operator's keyword arguments, body["launchParameter"]) with the module's constants resolved."""
    tree = module()
    names = constants(tree)
    kwargs = {k.arg: evaluate(k.value, names) for k in operator_call(tree).keywords}
    return kwargs, kwargs["body"]["launchParameter"]


def render(value: str) -> str:
    """Airflow's templating of one value (``{{ name }}`` or ``{{ name | filter }}``), for the names this DAG
    may use; anything else fails the test."""
    def substitute(match: re.Match) -> str:
        name, flt = match.group(1), match.group(2)
        assert name in RUN_CONTEXT, (f"unexpected template expression {match.group(0)!r}: name the day with the data "
                                     f"interval (data_interval_start | ds), the same on Airflow 2 and 3")
        assert flt in FILTERS, f"{match.group(0)!r}: a date needs a filter ({', '.join(FILTERS)})"
        return FILTERS[flt](RUN_CONTEXT[name])

    rendered = re.sub(r"\{\{\s*(\w+)\s*(?:\|\s*(\w+)\s*)?\}\}", substitute, value)
    assert "{{" not in rendered and "{%" not in rendered, f"not rendered: {rendered!r}"
    return rendered


def calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def imported(tree: ast.Module) -> set[tuple[str, str]]:
    return {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}


def metadata_params() -> dict[str, dict]:
    return {p["name"]: p for p in json.loads((ROOT / "metadata.json").read_text())["parameters"]}


def test_the_dag_uses_the_flex_template_operator_from_the_google_provider():
    imports = {(n.module, a.name) for n in ast.walk(module()) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("airflow.providers.google.cloud.operators.dataflow", OPERATOR) in imports
    kwargs, launch_parameter = launch()
    assert kwargs["wait_until_finished"] is True, "the task should fail when the import fails"
    assert re.fullmatch(r"gs://[^/]+/.+\.json", launch_parameter["containerSpecGcsPath"])
    assert {"project_id", "location", "body"} <= kwargs.keys()


def test_every_parameter_is_declared_and_every_required_one_is_passed():
    _, launch_parameter = launch()
    passed, declared = launch_parameter["parameters"], metadata_params()
    unknown = passed.keys() - declared.keys() - BEAM_OPTIONS
    assert not unknown, f"unknown to the template: {sorted(unknown)}"
    required = {name for name, p in declared.items() if not p.get("isOptional", False)}
    assert required <= passed.keys(), f"required parameters not passed: {sorted(required - passed.keys())}"
    assert all(isinstance(v, str) for v in passed.values()), "Dataflow template parameters are strings"


def test_rendered_values_have_the_declared_shapes():
    _, launch_parameter = launch()
    declared = metadata_params()
    for name, value in launch_parameter["parameters"].items():
        rendered = render(value)
        for regex in declared.get(name, {}).get("regexes", []):
            assert re.fullmatch(regex, rendered), f"{name}={rendered!r} does not match {regex}"


def test_the_schedule_has_a_real_data_interval_on_airflow_2_and_3():
    # A cron string is CronDataIntervalTimetable on Airflow 2 but CronTriggerTimetable on Airflow 3
    # ([scheduler] create_cron_data_intervals = False): a zero-length interval at the run's own time.
    tree = module()
    assert ("airflow.timetables.interval", TIMETABLE) in imported(tree)
    (dag,) = calls(tree, "DAG")
    schedule = next(k.value for k in dag.keywords if k.arg == "schedule")
    assert isinstance(schedule, ast.Call) and getattr(schedule.func, "id", "") == TIMETABLE, \
        f"schedule={ast.unparse(schedule)}: give the timetable, not a cron string"
    args = [ast.literal_eval(a) for a in schedule.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in schedule.keywords}
    cron = args[0] if args else kwargs["cron"]
    assert re.fullmatch(r"\d+ \d+ \* \* \*", cron), "once a day, after midnight"
    assert (args[1] if len(args) > 1 else kwargs.get("timezone")) == "UTC", "the export's days are UTC days"


def test_it_imports_the_day_its_data_interval_covers():
    _, launch_parameter = launch()
    pattern = launch_parameter["parameters"]["input"]
    assert re.fullmatch(r"gs://[^/]+/.*\{\{ data_interval_start \| ds \}\}/\*\.ndjson\.gz", pattern), pattern
    assert render(pattern).endswith(f"/rlvt/{DAY}/*.ndjson.gz")
    assert render(launch_parameter["jobName"]) == "rlvt-import-" + DAY.replace("-", "")


def sensor() -> dict:
    tree = module()
    found = calls(tree, SENSOR)
    assert len(found) == 1, f"expected one {SENSOR}(…) in {DAG_FILE.name}"
    assert ("airflow.providers.google.cloud.sensors.gcs", SENSOR) in imported(tree)
    assert "GCSObjectsWithPrefixExistenceSensor" not in DAG_FILE.read_text(), \
        "the first file of a half-written export is not a finished export"
    names = constants(tree)
    return {k.arg: evaluate(k.value, names) for k in found[0].keywords}


def test_the_import_waits_for_the_exports_completion_marker():
    names = constants(module())
    marker = names["EXPORT_DONE_MARKER"]
    assert marker == "_SUCCESS" and "EXPORT_DONE_MARKER" in ast.get_docstring(module()), "documented in the DAG"
    waits = sensor()
    _, launch_parameter = launch()
    bucket, folder, glob = re.fullmatch(r"gs://([^/]+)/(.+)/([^/]+)", render(launch_parameter["parameters"]["input"]))\
        .groups()
    assert (waits["bucket"], render(waits["object"])) == (bucket, f"{folder}/{marker}"), \
        "the marker in the very folder the import reads"
    assert not fnmatch.fnmatch(marker, glob), "the import does not read the marker as data"
    assert waits["mode"] == "reschedule", "no worker slot held while waiting"
    assert waits["timeout"] < 24 * 60 * 60, "gives up before the next day's run"


def test_the_sensor_runs_before_the_import():
    tree = module()
    kinds = {n.targets[0].id: getattr(n.value.func, "id", None) for n in ast.walk(tree)
             if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
             and isinstance(n.value, ast.Call)}
    order = {(kinds.get(getattr(n.left, "id", None)), kinds.get(getattr(n.right, "id", None)))
             for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift)}
    assert (SENSOR, OPERATOR) in order, "wait_for_export >> import_day"


def test_the_parameters_are_a_combination_the_importer_accepts():
    _, launch_parameter = launch()
    argv = [f"--{name}={render(value)}" for name, value in launch_parameter["parameters"].items()]
    assert pipeline_accepts(argv)
    assert "dry_run" not in launch_parameter["parameters"]


def test_the_workers_run_the_template_image_as_template_main_requires():
    # what the Flex Template launcher gives template_main.py: its own flags, then the parameters
    from template_main import job_flags
    from tests.test_worker_image import LAUNCHER_FLAGS

    _, launch_parameter = launch()
    image = constants(module())["IMAGE"]
    assert launch_parameter["parameters"]["sdk_container_image"] == image, "the workers run the template's image"
    params = [f"--{name}={render(value)}" for name, value in launch_parameter["parameters"].items()]
    assert f"--sdk_container_image={image}" in job_flags(LAUNCHER_FLAGS + params)


def test_the_environment_has_a_cloud_temp_location_and_only_known_fields():
    _, launch_parameter = launch()
    environment = launch_parameter["environment"]
    assert environment["tempLocation"].startswith("gs://")
    result = run_in_gcloud_python(
        "from googlecloudsdk.generated_clients.apis.dataflow.v1b3 import dataflow_v1b3_messages as m\n"
        "print(json.dumps([f.name for f in m.FlexTemplateRuntimeEnvironment.all_fields()]))\n")
    assert result.returncode == 0, result.stderr
    fields = set(json.loads(result.stdout))
    assert not environment.keys() - fields, f"not FlexTemplateRuntimeEnvironment fields: {environment.keys() - fields}"

