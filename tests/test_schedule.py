"""The nightly Airflow DAG, read with ``ast`` (Airflow is not installed): its template parameters are ones
metadata.json declares, in the shapes it declares, and a combination the importer accepts."""

from __future__ import annotations

import ast
import json
import re

from tests.conftest import ROOT, run_in_gcloud_python
from tests.test_template import pipeline_accepts

DAG_FILE = ROOT / "deploy" / "airflow" / "rlvt_nightly_import.py"
OPERATOR = "DataflowStartFlexTemplateOperator"
# What Airflow's Jinja gives the templated fields on the run for 2026-11-25.
RUN_CONTEXT = {"ds": "2026-11-25", "ds_nodash": "20261125"}
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
    """Airflow's templating of one value, for the names this DAG may use; anything else fails the test."""
    def substitute(match: re.Match) -> str:
        assert match.group(1) in RUN_CONTEXT, f"unexpected template expression {match.group(0)!r}"
        return RUN_CONTEXT[match.group(1)]

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", substitute, value)


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


def test_it_imports_the_previous_days_export_folder():
    kwargs, launch_parameter = launch()
    pattern = launch_parameter["parameters"]["input"]
    assert re.fullmatch(r"gs://[^/]+/.*\{\{ ds \}\}/\*\.ndjson\.gz", pattern), pattern
    assert render(pattern).endswith("/2026-11-25/*.ndjson.gz")
    dag_kwargs = next(n for n in ast.walk(module()) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DAG")
    schedule = next(ast.literal_eval(k.value) for k in dag_kwargs.keywords if k.arg == "schedule")
    assert schedule == "@daily" or re.fullmatch(r"\d+ \d+ \* \* \*", schedule), "once a day, after midnight"


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

