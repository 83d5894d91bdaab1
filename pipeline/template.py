"""What the Flex Template's entry point (``template_main.py``) checks before it runs the import.

The template launcher runs ``python template_main.py --runner=DataflowRunner --template_location=…
--sdk_container_image=IMAGE --PARAMETER=VALUE…``: the same import as ``python -m pipeline``, with the
template's parameters as flags (an on/off flag arrives as ``--drop_bots=true``, which the options
themselves accept: ``pipeline.flags.on_off``). Beam writes the job graph for the launcher to submit
instead of submitting it.

The workers run the template's own image (``--sdk_container_image``), where the package and its pins
were installed when the image was built: nothing is pip-installed when a worker starts, so workers
need no package index (private networks and VPC Service Controls have none). Hence the job must name
that image, and must not stage anything a worker would pip-install (``job_flags`` refuses, exit 2).
"""

from __future__ import annotations

import sys

EXIT_USAGE = 2

WORKER_INSTALLS = {"setup_file": "--setup_file", "requirements_file": "--requirements_file",
                   "extra_packages": "--extra_package"}
"""Beam's SetupOptions that stage packages for each worker to pip-install at start-up (a
FLEX_TEMPLATE_PYTHON_SETUP_FILE / _REQUIREMENTS_FILE / _EXTRA_PACKAGES in the image becomes one)."""
SDK_IN_THE_IMAGE = ("default", "container", "")
"""``--sdk_location`` values that stage no Beam SDK (any other is a tarball every worker installs)."""


class TemplateError(ValueError):
    """The job the template would build cannot start its workers from the image alone."""


def check_worker_image(flags: list[str]) -> None:
    """The job's workers run the image, with nothing to install: ``--sdk_container_image`` is given
    (whenever the job runs on remote workers) and no flag stages a package for them."""
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    from transforms.core.settings import is_local_runner

    options = PipelineOptions(flags)
    setup = options.view_as(SetupOptions)
    staged = [flag for dest, flag in WORKER_INSTALLS.items() if getattr(setup, dest)]
    if setup.sdk_location not in SDK_IN_THE_IMAGE:
        staged.append("--sdk_location")
    if staged:
        raise TemplateError(
            f"{', '.join(staged)}: the template's workers run its image with the importer and its pins already "
            f"installed, and install nothing at start-up (they may have no package index); remove "
            f"{'them' if len(staged) > 1 else 'it'} (in the image: FLEX_TEMPLATE_PYTHON_SETUP_FILE, "
            f"_REQUIREMENTS_FILE and _EXTRA_PACKAGES stay unset)")
    remote = (options.view_as(GoogleCloudOptions).template_location
              or not is_local_runner(options.view_as(StandardOptions).runner))
    if remote and not options.view_as(WorkerOptions).sdk_container_image:
        raise TemplateError(
            "no --sdk_container_image: without it Dataflow starts the workers from Beam's stock image, which "
            "lacks the importer; launch the template with the parameter sdk_container_image=IMAGE, the "
            "template's own image (scripts/dataflow.sh template-run passes $IMAGE)")


def job_flags(argv: list[str]) -> list[str]:
    """The import's flags for the job the launcher asked for, once checked (``TemplateError``): the
    parameters as given."""
    check_worker_image(argv)
    return list(argv)


def main(argv: list[str]) -> int:
    """The template's import: refused with exit 2 when its workers could not start from the image."""
    try:
        flags = job_flags(argv)
    except TemplateError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    from pipeline.launcher import main as launch

    return launch(flags)
