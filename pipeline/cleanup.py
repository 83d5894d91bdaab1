"""What a run leaves behind, and what it removes: the previous run's files under ``--output_dir``, the
work folder's staged and shuffled rows, and, for an interrupted run, the words that say where it
stopped (``settle_interrupted``).

A clean-up that fails must not hide how the run ended: it is logged, with the path to remove by hand.
"""

from __future__ import annotations

import logging
import os
import shutil

from apache_beam.io.filesystems import FileSystems

from pipeline.graph import EXAMPLES_SUFFIX
from pipeline.interrupts import Interrupted
from pipeline.options import CheckedOptions
from transforms.bigquery import target as bigquery_target
from transforms.core.outputs import CONFLICTS_PREFIX, DEAD_LETTERS_PREFIX, ROWS_DIR

log = logging.getLogger("importer")


def remove_previous_outputs(output_dir: str) -> None:
    """The importer owns these names under --output_dir; a re-run replaces them."""
    stale = _outputs(output_dir, "part-*.parquet")
    if stale:
        FileSystems.delete(stale)


def _outputs(output_dir: str, rows: str) -> list[str]:
    """The import's own files under ``output_dir``: rows matching ``rows``, dead letters, conflicts."""
    patterns = [FileSystems.join(output_dir, ROWS_DIR, rows),
                FileSystems.join(output_dir, DEAD_LETTERS_PREFIX + "*"),
                FileSystems.join(output_dir, CONFLICTS_PREFIX + "*")]
    return [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]


def remove_unfinished_outputs(output_dir: str) -> None:
    """After a file run that failed or was stopped: Beam's temporary folders of the text files it had not
    finalized (``dead_letters/beam-temp-*``, ``conflicts/beam-temp-*``), and the folders they leave empty,
    so that a run that wrote nothing leaves ``--output_dir`` as it found it (not refused as non-empty when
    run again). The import's finished files stay."""
    for prefix in (DEAD_LETTERS_PREFIX, CONFLICTS_PREFIX):
        folder = FileSystems.join(output_dir, prefix.split("/")[0])
        try:
            if "://" in folder:  # no folders on GCS: the temporary objects
                temp = [m.path for r in FileSystems.match([FileSystems.join(folder, "beam-temp-*", "*")])
                        for m in r.metadata_list]
                if temp:
                    FileSystems.delete(temp)
            elif os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith("beam-temp-"):
                        shutil.rmtree(os.path.join(folder, name))
                if not os.listdir(folder):
                    os.rmdir(folder)
        except Exception as err:  # the failure to report is the run's
            log.warning("could not remove Beam's temporary files under %s: %s", folder, err)


def remove_work_files(work_dir: str) -> None:
    """Staged and shuffled rows are not needed once the run is over (success or not)."""
    from transforms.core.workfiles import remove_tree

    for name in ("staging", "shuffle"):
        path = FileSystems.join(work_dir, name)
        try:
            log.debug("removed %d work file(s) under %s", remove_tree(path), path)
        except Exception as err:
            log.warning("could not remove the work files under %s: %s", path, err)


def remove_examples(accounting_prefix: str) -> None:
    """A failed run's reason examples (``pipeline.graph.EXAMPLES_SUFFIX``): no report will read them."""
    path = accounting_prefix + EXAMPLES_SUFFIX
    try:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    except Exception as err:
        log.warning("could not remove %s: %s", path, err)


def remove_work_folder(path: str) -> None:
    """The run's whole work folder (what is left: the accounting), once the report is built."""
    from transforms.core.workfiles import remove_tree

    try:
        remove_tree(path)
    except Exception as err:
        log.warning("could not remove the work folder %s: %s", path, err)


def settle_interrupted(err: Interrupted, checked: CheckedOptions, run_id: str, launch: str, work_dir: str) -> None:
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
        reached, err.outcome = bigquery_target.settle_interrupted(checked.target, run_id, launch, err)
        if reached:
            err.phase = reached
    else:
        out = checked.output_dir
        written = _outputs(out, "*")
        if written:
            err.phase = "writing the output files"
            err.outcome = (f"{out} holds an incomplete set of files ({len(written)}): run the import again with "
                           f"--overwrite")
        else:
            err.outcome = f"nothing was written to {out}"
