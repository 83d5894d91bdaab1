"""One import, start to end: plan → preflight → build → run → report (``run``), and the command line
around it (``main``: the exit codes of ``pipeline.failures``, the summary).

    plan       pipeline.plan        options checked, run id, work folder, files and read tasks
    preflight  pipeline.preflight   every output path writable, before anything is read
    build      here                 the target prepared and claimed, the Beam graph (pipeline.graph)
    run        here                 the graph run; on failure the clean-up (pipeline.cleanup) and the
                                    BigQuery failure told apart by type (pipeline.failures)
    report     here                 the accounting, the report files, the run history
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, StandardOptions

from pipeline import beam_memo, progress, run_history
from pipeline import report as run_report
from pipeline.cleanup import (
    remove_examples,
    remove_previous_outputs,
    remove_unfinished_outputs,
    remove_work_files,
    remove_work_folder,
    settle_interrupted,
)
from pipeline.cli import import_help
from pipeline.failures import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_UNUSABLE,
    explain,
    is_target_failure,
)
from pipeline.graph import build_pipeline, build_subscription_pipeline, read_examples, shuffle_folder
from pipeline.interrupts import Interrupted, interruptible
from pipeline.local_runner import configure_logging, warm_runner, workers_said
from pipeline.options import CheckedOptions
from pipeline.plan import RunPlan, make_plan, read_options
from pipeline.preflight import preflight
from pipeline.sinks import sink_for
from transforms.bigquery.client import TargetError
from transforms.bigquery.target import claim_run, prepare_target, release_run
from transforms.core.outputs import ROWS_DIR

log = logging.getLogger("importer")
beam_memo.install()


def run(argv: list[str] | None = None) -> tuple[int, dict | None]:
    """Run one import; returns (exit code, report)."""
    argv = list(argv or [])
    options, checked, started = read_options(argv)
    preflight(checked, options.view_as(GoogleCloudOptions).temp_location)
    plan = make_plan(argv, options, checked, started)
    try:
        pipeline, tables = build(plan)
        result, wall = execute(plan, pipeline)
    except BaseException:
        if not plan.template:  # a failed run's work folder holds nothing a report will read
            remove_work_folder(plan.work_root)
        raise
    if plan.template:  # only the job graph was written: there is nothing to report yet
        return EXIT_OK, {"run_id": plan.run_id, "template_location": plan.template}
    return finish(plan, result, wall, tables)


def build(plan: RunPlan) -> tuple[beam.Pipeline, dict | None]:
    """The target prepared and claimed (a BigQuery run), the previous files removed (a file run), and the
    graph built; returns it with the target's tables (None without a target)."""
    checked, tables = plan.checked, None
    if plan.claims_target:
        log.info("writing to %s: %s", checked.target.where, checked.target.events)
        tables = prepare_target(checked.target, checked.stream.landing if checked.stream else None)
        claim_run(checked.target, plan.run_id, plan.launch)
    elif checked.output_dir and not checked.dry_run:
        remove_previous_outputs(checked.output_dir)
    if checked.stream is not None:
        pull = checked.pubsub_reader == "pull" or (checked.pubsub_reader == "auto" and plan.local)
        if pull:
            plan.options.view_as(DirectOptions).direct_num_workers = 1  # one reader loop
            plan.options.view_as(DirectOptions).direct_running_mode = "in_memory"
        else:
            plan.options.view_as(StandardOptions).streaming = True
        p = beam.Pipeline(options=plan.options)
        build_subscription_pipeline(p, checked, plan.ctx, plan.accounting_prefix, local=pull)
        log.info("import %s from %s (MERGE every %.0f s)", plan.run_id, plan.sources[0],
                 checked.stream.merge_interval)
        return p, tables
    sink = sink_for(checked, plan.work_dir, plan.run_id, plan.launch, plan.started)
    p = beam.Pipeline(runner=warm_runner(plan.options), options=plan.options)
    build_pipeline(p, checked, plan.tasks, plan.ctx, plan.accounting_prefix, sink,
                   shuffle_folder(plan.work_dir, plan.local))
    log.info("import %s: %d file(s), %d read task(s)%s", plan.run_id, len(plan.input_bytes), len(plan.tasks),
             f", {workers_said(plan.options)}" if plan.local else "")
    return p, tables


def execute(plan: RunPlan, pipeline: beam.Pipeline) -> tuple[object, float]:
    """Run the graph to its end; returns Beam's result and the seconds it took. A failure or an interrupt
    is cleaned up after (the work files, the claim) and a BigQuery failure becomes a ``TargetError``
    that says what the target holds."""
    clock = time.monotonic()
    watched = _progress(plan)
    try:
        with watched:
            result = pipeline.run()
            result.wait_until_finish()
    except BaseException as err:
        _unwind(plan, err)
        if isinstance(err, Exception) and plan.checked.target is not None and is_target_failure(err):
            raise TargetError(f"writing to {plan.checked.target.where} failed: {err}. The write is one transaction, "
                              f"so the target holds none or all of this run's new rows; run the same "
                              f"import again to complete it (it adds only what is missing)") from err
        raise
    finally:
        if not plan.template:  # a template's job has not even started: its work folder is the job's to clean
            remove_work_files(plan.work_dir)
    if plan.claims_target and plan.checked.stream is not None and not plan.template:
        release_run(plan.checked.target, plan.run_id, plan.launch, status="finished")
    return result, time.monotonic() - clock


def _unwind(plan: RunPlan, err: BaseException) -> None:
    """After a failed or interrupted run: its examples and claim released; an interrupt also says where
    it stopped and removes the work folder."""
    remove_examples(plan.accounting_prefix)  # written beside the accounting, whatever became of the sink
    if isinstance(err, Interrupted):
        settle_interrupted(err, plan.checked, plan.run_id, plan.launch, plan.work_dir)
        remove_work_files(plan.work_dir)
        remove_work_folder(plan.work_root)
        err.outcome += "; temporary files removed"
    if plan.claims_target:
        release_run(plan.checked.target, plan.run_id, plan.launch)
    if plan.checked.output_dir and not plan.checked.dry_run:
        remove_unfinished_outputs(plan.checked.output_dir)


def _progress(plan: RunPlan):
    """The progress display of a local file import (``pipeline.progress``); Dataflow shows its own."""
    if not plan.local or plan.template or not plan.tasks:
        return contextlib.nullcontext()
    staging = {"write_rows": "staging the rows for BigQuery"} if plan.checked.target is not None else {}
    return progress.shown(progress.Progress(plan.tasks, phase_names=staging))


def finish(plan: RunPlan, result, wall: float, tables: dict | None) -> tuple[int, dict]:
    """The run's report from its accounting, its exit code, its history record and its report files."""
    checked = plan.checked
    report = run_report.assemble(_read_counts(plan.accounting_prefix), plan.sources)
    examples = None if checked.stream is not None else read_examples(plan.accounting_prefix)
    remove_work_folder(plan.work_root)
    report.update({
        "run_id": plan.run_id,
        "started_at": plan.started.isoformat(),
        "dry_run": checked.dry_run,
        "wall_seconds": round(wall, 3),
        "records_per_second": round(report["total"]["read"] / wall) if wall else None,
        "stage_seconds": _stage_seconds(result),
        "event_time_bounds": [checked.policy.min_micros, checked.policy.max_micros],
    })
    report["unusable_files"] = unusable_files(report)
    code = EXIT_UNUSABLE if report["unusable_files"] else (EXIT_OK if report["ok"] else EXIT_BAD_INPUT)
    run_history.finish(report, run_history.RunContext(  # completeness, HTML report, the run's history record
        checked, plan.run_id, plan.launch, plan.started, plan.argv, plan.input_bytes,
        "local" if plan.local else str(plan.options.view_as(StandardOptions).runner),
        result.job_id() if hasattr(result, "job_id") else None, examples), code)
    _write_report(report, checked, tables)
    return code, report


def _read_counts(prefix: str) -> list[tuple[str, str, int]]:
    counts = []
    for result in FileSystems.match([prefix + "*.ndjson"]):
        for meta in result.metadata_list:
            with FileSystems.open(meta.path) as f:
                counts += [tuple(orjson.loads(line)) for line in f.read().splitlines() if line.strip()]
    return counts


def _stage_seconds(result) -> dict[str, float]:
    try:
        dists = result.metrics().query(MetricsFilter().with_namespace("importer"))["distributions"]
    except Exception:  # a runner without metrics support: the report just has no stage times
        return {}
    out: dict[str, float] = {}
    for d in dists:
        name = d.key.metric.name.removesuffix("_msecs")
        out[name] = out.get(name, 0.0) + d.committed.sum / 1000
    order = ["read", "parse", "validate", "normalize", "dedupe", "bigquery_load", "bigquery_merge"]
    return {k: round(out[k], 2) for k in order if k in out}


def unusable_files(report: dict) -> dict[str, str]:
    """Files that gave no usable record, and why: every record rejected (a wrong export, a wrong
    --input_format…), or a ``.json`` file that is not JSON. Each makes the run exit 4: a run that
    loads nothing of a file is not a success, even when every record is accounted for."""
    from transforms.sources.read_json import NOT_JSON

    out = {}
    for uri, entry in report["files"].items():
        not_json = [m for m in entry["file_errors"] if m.startswith(NOT_JSON)]
        if not_json:
            out[uri] = not_json[0]
        elif entry["read"] and entry["dead_lettered"] == entry["read"]:
            top = max(entry["dead_letter_reasons"].items(), key=lambda kv: kv[1], default=("?", 0))[0]
            out[uri] = f"every one of its {entry['read']:,} record(s) was rejected (most often {top})"
    return out


def _write_report(report: dict, checked: CheckedOptions, tables: dict | None) -> None:
    if checked.target is not None and not checked.dry_run:
        report["outputs"] = {"events table": f"{checked.target.events} ({checked.target.where})",
                             "dead-letter table": str(checked.target.dead_letters),
                             "conflicts table": str(checked.target.conflicts)}
        if checked.stream is not None:
            report["outputs"]["landing table"] = str(checked.stream.landing)
        report["tables"] = tables
    elif not checked.dry_run:
        report["outputs"] = {
            "rows": FileSystems.join(checked.output_dir, ROWS_DIR),
            "dead letters": FileSystems.join(checked.output_dir, "dead_letters"),
            "conflicts": FileSystems.join(checked.output_dir, "conflicts"),
        }
    report_path = checked.report_path or (
        FileSystems.join(checked.output_dir, "import_report.json") if checked.output_dir else None)
    if report_path:
        report.setdefault("outputs", {})["report"] = report_path
        with FileSystems.create(report_path) as f:
            f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))


def main(argv: list[str] | None = None) -> int:
    """The import, its summary, and its exit code (README, Exit codes). ``pipeline.entry.main`` (``python -m
    pipeline``, ``rlvt-import``) checks the package names before it calls this."""
    configure_logging()
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(import_help())
        return EXIT_OK
    try:
        with interruptible():
            code, report = run(argv)
    except Interrupted as err:
        print(err.line(), file=sys.stderr, flush=True)
        return err.exit_code
    except Exception as err:
        failure = explain(err)
        if failure is None:
            raise
        print(failure.line, file=sys.stderr)
        return failure.code
    if "template_location" in report:
        print(f"template written to {report['template_location']}; each job it starts reports on its own")
        return code
    print(run_report.summary(report))
    for uri, why in report.get("unusable_files", {}).items():
        print(f"  NO USABLE RECORD in {uri}: {why}")
    return code
