"""Entry point: parse flags, check them, plan the reads, run the pipeline, write the report."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, StandardOptions

from pipeline import progress, run_history
from pipeline import report as run_report
from pipeline.cli import check_import_flags, import_help
from pipeline.graph import (
    EXAMPLES_SUFFIX,
    build_pipeline,
    build_subscription_pipeline,
    read_examples,
    shuffle_folder,
    with_derived_buckets,
)
from pipeline.interrupts import Interrupted, interruptible
from pipeline.local_runner import configure_logging, local_runner_defaults, warm_runner
from pipeline.options import CheckedOptions, check_options, normalize_argv
from pipeline.sinks import sink_for
from rlvt_own_packages import problems as foreign_package_problems
from transforms.bigquery.client import TargetError
from transforms.bigquery.target import claim_run, prepare_target, release_run, settle_interrupted
from transforms.core.outputs import CONFLICTS_PREFIX, DEAD_LETTERS_PREFIX, ROWS_DIR
from transforms.core.records import ImportContext
from transforms.core.settings import is_local_runner, to_micros
from transforms.sources.files import REPLAY_FORMAT, InputError, expand_patterns, plan_reads

log = logging.getLogger("importer")
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_TARGET, EXIT_UNUSABLE = 0, 1, 2, 3, 4
def new_run_id(started: datetime) -> str:
    return f"import-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _remove_previous_outputs(output_dir: str) -> None:
    """The importer owns these names under --output_dir; a re-run replaces them."""
    patterns = [FileSystems.join(output_dir, ROWS_DIR, "part-*.parquet"),
                FileSystems.join(output_dir, DEAD_LETTERS_PREFIX + "*"),
                FileSystems.join(output_dir, CONFLICTS_PREFIX + "*")]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)


def _check_writable_folder(path: str) -> None:
    """``path`` is a folder this process can write in, or could create: raises ``OSError`` otherwise.
    Creates nothing."""
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(20, f"{folder} is a file")
    if folder == os.path.abspath(path):
        with tempfile.TemporaryFile(dir=folder):
            pass
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(13, f"Permission denied in {folder}")


def check_output_paths(checked: CheckedOptions) -> None:
    """Every local output path can be written, checked before anything is read or written (a bad
    --report_path used to be found after the rows were in BigQuery); a non-empty --output_dir is
    refused unless --overwrite (a re-run used to replace the previous run's files silently). gs://
    paths are checked for content only: writing needs the bucket's credentials, the first write says."""
    for flag, report in (("--report_path", checked.report_path), ("--report_html", checked.report_html)):
        if not report or "://" in report:
            continue
        if os.path.isdir(report):
            raise ValueError(f"{flag} {report} is a folder: give a file name, e.g. {report}/import_report"
                             f"{'.html' if flag == '--report_html' else '.json'}")
        try:
            _check_writable_folder(os.path.dirname(os.path.abspath(report)))
            if os.path.exists(report) and not os.access(report, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as err:
            raise ValueError(f"{flag} {report} cannot be written ({err.strerror or err}): give a path the "
                             f"import can write to") from err
    if checked.output_dir:
        out = checked.output_dir
        if "://" in out:
            present = [m.path for r in FileSystems.match([FileSystems.join(out, "**")]) for m in r.metadata_list]
        else:
            if os.path.exists(out) and not os.path.isdir(out):
                raise ValueError(f"--output_dir {out} is a file, not a folder: give a folder (new or empty)")
            present = sorted(os.listdir(out)) if os.path.isdir(out) else []
        if present and not checked.overwrite:
            shown = ", ".join(os.path.basename(p.rstrip("/")) for p in present[:3])
            shown += ", …" if len(present) > 3 else ""
            raise ValueError(f"--output_dir {out} is not empty ({shown}): choose a new or empty folder, or give "
                             f"--overwrite to replace the import's files there (rows/, dead_letters/, conflicts/, "
                             f"import_report.json)")
        if "://" not in out:
            try:
                _check_writable_folder(out)
            except OSError as err:
                raise ValueError(f"--output_dir {out} cannot be written ({err.strerror or err}): give a folder "
                                 f"the import can write to") from err
    payloads = checked.dead_letter_payloads
    # given by its flag (the default lies in --output_dir, checked above); else the first over-long line
    # would fail its file's read
    if payloads and "://" not in payloads and not payloads.startswith(checked.output_dir or "\0"):
        if os.path.exists(payloads) and not os.path.isdir(payloads):
            raise ValueError(f"--dead_letter_payloads {payloads} is a file, not a folder: give a folder")
        _require_writable_folder("--dead_letter_payloads", payloads)


def _check_temp_location(path: str) -> None:
    """An unwritable local --temp_location stops the run here, with a message, before any work (inside
    the pipeline it would surface as a worker traceback, after the tables were prepared)."""
    if "://" in path:
        return  # gs://: checking needs the bucket's credentials; the first write reports it
    _require_writable_folder("--temp_location", path)


def _require_writable_folder(flag: str, path: str) -> None:
    """Create the local folder ``path`` if needed and write a file in it, or raise a ``ValueError`` naming ``flag``."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {path} cannot be written ({err.strerror or err}): "
                         f"give a folder the import can write to") from err


def disk_full(err: BaseException) -> str | None:
    """What ran out of room, when ``err`` (or an error it wraps, or a worker's error Beam re-raised as
    text) is a full disk or quota: the error's own first line; None otherwise."""
    seen: BaseException | None = err
    for _ in range(32):  # the chain of causes, however it loops
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return str(seen).splitlines()[0]
        text = str(seen)
        for line in text.splitlines():
            if "No space left on device" in line or "Disk quota exceeded" in line:
                return line.strip().removeprefix("RuntimeError: ")
        seen = seen.__cause__ or seen.__context__
    return None


def _is_target_failure(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}"
    return any(k in text for k in ("google.api_core", "GoogleAPI", "RetryError", "ConnectionError",
                                   "ServiceUnavailable", "InternalServerError", "BadRequest", "NotFound",
                                   "Forbidden", "TargetError", "Max retries exceeded"))


def _remove_work_files(work_dir: str) -> None:
    """Staged and shuffled rows are not needed once the run is over (success or not). A cleanup that
    fails must not hide how the run ended: it is logged with the folder to remove by hand."""
    from transforms.core.workfiles import remove_tree

    for name in ("staging", "shuffle"):
        path = FileSystems.join(work_dir, name)
        try:
            log.debug("removed %d work file(s) under %s", remove_tree(path), path)
        except Exception as err:
            log.warning("could not remove the work files under %s: %s", path, err)


def _remove_examples(accounting_prefix: str) -> None:
    """A failed run's reason examples (``pipeline.graph.EXAMPLES_SUFFIX``): no report will read them."""
    path = accounting_prefix + EXAMPLES_SUFFIX
    try:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    except Exception as err:
        log.warning("could not remove %s: %s", path, err)


def _remove_work_folder(path: str) -> None:
    """The run's whole work folder (what is left: the accounting), once the report is built."""
    from transforms.core.workfiles import remove_tree

    try:
        remove_tree(path)
    except Exception as err:
        log.warning("could not remove the work folder %s: %s", path, err)


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


def run(argv: list[str] | None = None) -> tuple[int, dict | None]:
    """Run one import; returns (exit code, report)."""
    check_import_flags(normalize_argv(list(argv or [])))  # a misspelled flag must not run an import
    options = PipelineOptions(normalize_argv(list(argv or [])))
    started = datetime.now(UTC)
    checked: CheckedOptions = check_options(options, to_micros(started))
    check_output_paths(checked)
    run_id = checked.run_id or new_run_id(started)
    launch = secrets.token_hex(4)  # this launch of the run: names its staging tables, work folder and jobs
    ctx = ImportContext(run_id, to_micros(started), checked.datasource_id, launch=launch)
    local_runner = is_local_runner(options.view_as(StandardOptions).runner)
    local_runner_defaults(options, list(argv or []))
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    if temp_location:
        _check_temp_location(temp_location)
    temp_root = temp_location or tempfile.mkdtemp(prefix="importer-")
    work_dir = FileSystems.join(temp_root, f"{run_id}-{launch}" if temp_location else "work")
    accounting_prefix = FileSystems.join(work_dir, "accounting")
    tables = None
    claimed = False
    input_bytes: dict[str, int] = {}
    if checked.stream is not None:
        sources = [checked.stream.subscription]
        log.info("writing to %s: %s", checked.target.where, checked.target.events)
        tables = prepare_target(checked.target, checked.stream.landing)
        claim_run(checked.target, run_id, launch)
        claimed = True
        pull = checked.pubsub_reader == "pull" or (checked.pubsub_reader == "auto" and local_runner)
        if pull:
            options.view_as(DirectOptions).direct_num_workers = 1  # one reader loop
            options.view_as(DirectOptions).direct_running_mode = "in_memory"
        else:
            options.view_as(StandardOptions).streaming = True
        p = beam.Pipeline(options=options)
        build_subscription_pipeline(p, checked, ctx, accounting_prefix, local=pull)
        log.info("import %s from %s (MERGE every %.0f s)", run_id, sources[0], checked.stream.merge_interval)
    else:
        files = expand_patterns(checked.inputs)
        checked = with_derived_buckets(checked, files, local_runner)  # before the sinks: they name files after it
        sources = [uri for uri, _ in files]
        input_bytes = dict(files)
        tasks = plan_reads(files, checked.input_format, checked.split_bytes)
        # a replay's file of payloads is not a source: its records are reported under their own files
        sources = [uri for uri in sources if uri not in {t.uri for t in tasks if t.format == REPLAY_FORMAT}]
        if checked.dry_run:
            pass
        elif checked.target is not None:
            log.info("writing to %s: %s", checked.target.where, checked.target.events)
            tables = prepare_target(checked.target)
            claim_run(checked.target, run_id, launch)
            claimed = True
        else:
            _remove_previous_outputs(checked.output_dir)
        sink = sink_for(checked, work_dir, run_id, launch, started)
        p = beam.Pipeline(runner=warm_runner(options), options=options)
        build_pipeline(p, checked, tasks, ctx, accounting_prefix, sink, shuffle_folder(work_dir, local_runner))
        log.info("import %s: %d file(s), %d read task(s)", run_id, len(files), len(tasks))

    clock = time.monotonic()
    template = options.view_as(GoogleCloudOptions).template_location
    watched = _progress(checked, tasks if checked.stream is None else [], local_runner and not template)
    try:
        with watched:
            result = p.run()
            result.wait_until_finish()
    except BaseException as err:
        _remove_examples(accounting_prefix)  # written beside the accounting, whatever became of the sink
        if isinstance(err, Interrupted):
            _settle(err, checked, run_id, launch, work_dir)
            _remove_work_files(work_dir)
            _remove_work_folder(work_dir if temp_location else temp_root)
            err.outcome += "; temporary files removed"
        if claimed:
            release_run(checked.target, run_id, launch)
        if isinstance(err, Exception) and checked.target is not None and _is_target_failure(err):
            raise TargetError(f"writing to {checked.target.where} failed: {err}. The write is one transaction, "
                              f"so the target holds none or all of this run's new rows; run the same "
                              f"import again to complete it (it adds only what is missing)") from err
        raise
    finally:
        if not template:  # a template's job has not even started: its work folder is the job's to clean
            _remove_work_files(work_dir)
    wall = time.monotonic() - clock
    if claimed and checked.stream is not None and not template:
        release_run(checked.target, run_id, launch, status="finished")
    if template:  # only the job graph was written: there is nothing to report yet
        return EXIT_OK, {"run_id": run_id, "template_location": template}
    report = run_report.assemble(_read_counts(accounting_prefix), sources)
    examples = None if checked.stream is not None else read_examples(accounting_prefix)
    _remove_work_folder(work_dir if temp_location else temp_root)
    report.update({
        "run_id": run_id,
        "started_at": started.isoformat(),
        "dry_run": checked.dry_run,
        "wall_seconds": round(wall, 3),
        "records_per_second": round(report["total"]["read"] / wall) if wall else None,
        "stage_seconds": _stage_seconds(result),
        "event_time_bounds": [checked.policy.min_micros, checked.policy.max_micros],
    })
    report["unusable_files"] = unusable_files(report)
    code = EXIT_UNUSABLE if report["unusable_files"] else (EXIT_OK if report["ok"] else EXIT_BAD_INPUT)
    run_history.finish(report, run_history.RunContext(  # completeness, HTML report, the run's history record
        checked, run_id, launch, started, list(argv or []), input_bytes,
        "local" if local_runner else str(options.view_as(StandardOptions).runner),
        result.job_id() if hasattr(result, "job_id") else None, examples), code)
    _write_report(report, checked, tables)
    return code, report


def _progress(checked: CheckedOptions, tasks: list, local: bool):
    """The progress display of a local file import (``pipeline.progress``); Dataflow shows its own."""
    if not local or not tasks:
        return contextlib.nullcontext()
    staging = {"write_rows": "staging the rows for BigQuery"} if checked.target is not None else {}
    return progress.shown(progress.Progress(tasks, phase_names=staging))


def unusable_files(report: dict) -> dict[str, str]:
    """Files that gave no usable record, and why: every record rejected (a wrong export, a wrong
    --input_format…), or a ``.json`` file that is not JSON. Each makes the run exit 4: a run that
    loads nothing of a file is not a success, even when every record is accounted for."""
    from transforms.sources.read import NOT_JSON

    out = {}
    for uri, entry in report["files"].items():
        not_json = [m for m in entry["file_errors"] if m.startswith(NOT_JSON)]
        if not_json:
            out[uri] = not_json[0]
        elif entry["read"] and entry["dead_lettered"] == entry["read"]:
            top = max(entry["dead_letter_reasons"].items(), key=lambda kv: kv[1], default=("?", 0))[0]
            out[uri] = f"every one of its {entry['read']:,} record(s) was rejected (most often {top})"
    return out


def _settle(err: Interrupted, checked: CheckedOptions, run_id: str, launch: str, work_dir: str) -> None:
    """What an interrupted run was doing and what it leaves, in ``err.phase`` and ``err.outcome``."""
    staged = bool(FileSystems.match([FileSystems.join(work_dir, "staging", "*")])[0].metadata_list)
    err.phase = "reading, validating and deduplicating the rows"
    if checked.stream is not None:  # SIGTERM (Ctrl-C is the reader's own: it ends with a MERGE and the report)
        err.phase = f"the import from {checked.stream.subscription}"
        err.outcome = (f"rows merged before it stay in {checked.target.events}; rows landed since are merged by the "
                       f"next run or ./run.sh merge-landed; messages not acknowledged are delivered again")
    elif checked.dry_run:
        err.outcome = "nothing was written (dry run)"
    elif checked.target is not None:
        if staged:
            err.phase = "staging the rows for BigQuery"
        reached, err.outcome = settle_interrupted(checked.target, run_id, launch, err)
        if reached:
            err.phase = reached
    else:
        out = checked.output_dir
        written = [m.path for r in FileSystems.match([FileSystems.join(out, ROWS_DIR, "*"),
                                                      FileSystems.join(out, DEAD_LETTERS_PREFIX + "*"),
                                                      FileSystems.join(out, CONFLICTS_PREFIX + "*")])
                   for m in r.metadata_list]
        if written:
            err.phase = "writing the output files"
            err.outcome = (f"{out} holds an incomplete set of files ({len(written)}): run the import again with "
                           f"--overwrite")
        else:
            err.outcome = f"nothing was written to {out}"


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
    configure_logging()
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(import_help())
        return EXIT_OK
    for problem in (clashes := foreign_package_problems()):
        print(f"error: {problem}", file=sys.stderr)
    if clashes:
        return EXIT_USAGE
    try:
        with interruptible():
            code, report = run(argv)
    except Interrupted as err:
        print(err.line(), file=sys.stderr, flush=True)
        return err.exit_code
    except TargetError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_TARGET
    except (ValueError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:
        if not disk_full(err):
            raise
        print(f"error: the disk is full ({disk_full(err)}): this run's output is incomplete. Free some space, "
              f"or write to another disk (--output_dir, --temp_location, --report_path), and run the import "
              f"again", file=sys.stderr)
        return EXIT_BAD_INPUT
    if "template_location" in report:
        print(f"template written to {report['template_location']}; each job it starts reports on its own")
        return code
    print(run_report.summary(report))
    for uri, why in report.get("unusable_files", {}).items():
        print(f"  NO USABLE RECORD in {uri}: {why}")
    return code
