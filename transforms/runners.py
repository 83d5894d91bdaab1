"""Which Beam runners run the workers on this machine (no Beam import: the launcher's checks use it)."""

from __future__ import annotations

LOCAL_RUNNERS = ("directrunner", "fnapirunner", "bundlebaseddirectrunner")
"""Beam runners (lower case, as Beam resolves ``--runner``) whose workers are this machine's processes,
started from the launcher."""


def is_local_runner(runner: str | None) -> bool:
    """Whether ``--runner`` (None: the importer's local default) runs the workers here. Beam takes
    ``DataflowRunner``, ``dataflow`` or a dotted class path alike; any runner not known to be local is not."""
    if runner is None:
        return True
    name = runner.rsplit(".", 1)[-1].lower()
    return name in LOCAL_RUNNERS or name + "runner" in LOCAL_RUNNERS
