"""The plan of one import, settled before anything runs: its options checked, its ids, its work folder,
and what it reads (the files and their read tasks, or the subscription).

``read_options`` turns the command line into checked options (exit 2 on anything that cannot work,
before any work); ``make_plan`` names the run and lists its inputs. Neither touches the target.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from pipeline.cli import check_import_flags
from pipeline.flags import normalize_argv
from pipeline.graph import with_derived_buckets
from pipeline.local_runner import local_runner_defaults
from pipeline.options import CheckedOptions, check_options
from transforms.core.records import ImportContext
from transforms.core.settings import is_local_runner, to_micros
from transforms.sources.files import REPLAY_FORMAT, expand_patterns, plan_reads


@dataclass
class RunPlan:
    """One import as it will run. ``checked`` has its buckets derived from the input's size (a file
    import); ``temp_location`` is None when the work folder is a temporary folder of this machine."""

    argv: list[str]
    options: PipelineOptions
    checked: CheckedOptions
    started: datetime
    run_id: str
    launch: str  # this launch of the run: names its staging tables, work folder and jobs
    local: bool  # Beam's local runner, not Dataflow
    temp_location: str | None
    temp_root: str
    work_dir: str
    sources: list[str]  # what the report accounts for: the input files, or the subscription
    input_bytes: dict[str, int] = field(default_factory=dict)
    tasks: list = field(default_factory=list)  # the read tasks of a file import

    @property
    def ctx(self) -> ImportContext:
        return ImportContext(self.run_id, to_micros(self.started), self.checked.datasource_id, launch=self.launch)

    @property
    def accounting_prefix(self) -> str:
        return FileSystems.join(self.work_dir, "accounting")

    @property
    def template(self) -> str | None:
        """Where a template's job graph is written instead of running it (``--template_location``)."""
        return self.options.view_as(GoogleCloudOptions).template_location

    @property
    def work_root(self) -> str:
        """What the run removes when it ends: its own folder under ``--temp_location``, or the whole
        temporary folder it made."""
        return self.work_dir if self.temp_location else self.temp_root

    @property
    def claims_target(self) -> bool:
        """Whether the run prepares and claims a BigQuery target (``transforms.bigquery.target``)."""
        return self.checked.target is not None and not self.checked.dry_run


def new_run_id(started: datetime) -> str:
    return f"import-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def read_options(argv: list[str]) -> tuple[PipelineOptions, CheckedOptions, datetime]:
    """The command line as Beam's options and the import's checked ones, and the run's start."""
    check_import_flags(normalize_argv(argv))  # a misspelled flag must not run an import
    options = PipelineOptions(normalize_argv(argv))
    started = datetime.now(UTC)
    return options, check_options(options, to_micros(started)), started


def make_plan(argv: list[str], options: PipelineOptions, checked: CheckedOptions, started: datetime) -> RunPlan:
    """Name the run, make its work folder and list what it reads (``InputError`` when an input matches
    nothing). Without --runner the run is local (``pipeline.local_runner``), in this process when the files
    are small."""
    local = is_local_runner(options.view_as(StandardOptions).runner)
    files = expand_patterns(checked.inputs) if checked.stream is None else []  # before the work folder exists
    local_runner_defaults(options, argv, files if checked.stream is None else None)
    run_id = checked.run_id or new_run_id(started)
    launch = secrets.token_hex(4)
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    temp_root = temp_location or tempfile.mkdtemp(prefix="importer-")
    work_dir = FileSystems.join(temp_root, f"{run_id}-{launch}" if temp_location else "work")
    plan = RunPlan(argv, options, checked, started, run_id, launch, local, temp_location, temp_root, work_dir,
                   sources=[])
    if checked.stream is not None:
        plan.sources = [checked.stream.subscription]
        return plan
    plan.checked = with_derived_buckets(checked, files, local)  # before the sinks: they name files after it
    plan.input_bytes = dict(files)
    plan.tasks = plan_reads(files, checked.input_format, checked.split_bytes)
    # a replay's file of payloads is not a source: its records are reported under their own files
    replayed = {t.uri for t in plan.tasks if t.format == REPLAY_FORMAT}
    plan.sources = [uri for uri, _ in files if uri not in replayed]
    return plan
