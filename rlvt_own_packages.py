"""Are ``pipeline``, ``schemas`` and ``transforms`` the importer's own packages?

The importer ships three generic top-level names. Two things can go wrong, and neither raises by
itself at the right moment:

- another installed distribution ships a package of the same name: pip puts both into the same
  ``site-packages/<name>/`` folder, where their files and ours overwrite each other silently;
- another folder earlier on ``sys.path`` (the current directory under ``python -m``, ``PYTHONPATH``)
  holds a package of the same name and shadows ours.

This module is the one name that cannot clash (hence its own top-level name), imports nothing but the
standard library, and never imports the packages it checks: ``python -m rlvt_own_packages`` works even
when they are broken. Our "marker" is where the three packages sit: next to this module (the same
``site-packages`` for an installed wheel, the repository for a checkout or an editable install), plus,
for an installed wheel, the sha256 that pip recorded in our ``RECORD`` for one module of each package.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

DISTRIBUTION = "rlvt-bigquery-importer"
#: one module of each package that only ours has
PROBES = {"pipeline": "launcher.py", "schemas": "envelope.py", "transforms": "stages/dofns.py"}
HERE = Path(__file__).resolve().parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_names(dist: metadata.Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text is not None:
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {f.parts[0] for f in dist.files or () if len(f.parts) > 1 and not f.parts[0].endswith(".dist-info")}


def co_owners(search_path: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Installed distributions other than ours that ship one of our top-level names: {name: [dist]}."""
    found: dict[str, list[str]] = {}
    for dist in metadata.distributions(path=list(search_path) if search_path is not None else sys.path):
        dist_name = dist.metadata["Name"] or "?"
        if _canonical(dist_name) == DISTRIBUTION:
            continue
        for name in sorted(_top_level_names(dist) & PROBES.keys()):
            where = Path(str(dist.locate_file(name)))
            label = f"{dist_name} {dist.version} (installs {where})"
            if label not in found.setdefault(name, []):
                found[name].append(label)
    return found


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _recorded_hashes() -> dict[Path, str]:
    """sha256 of each probe module as pip recorded it, when ours is a regular install next to this module."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return {}
    hashes = {}
    for f in dist.files or ():
        if f.hash is None or f.hash.mode != "sha256" or PROBES.get(f.parts[0]) != "/".join(f.parts[1:]):
            continue
        path = Path(str(dist.locate_file(f))).resolve()
        if path == (HERE / f.parts[0] / PROBES[f.parts[0]]).resolve():
            hashes[path] = f.hash.value
    return hashes


def _sha256(path: Path) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()


def problems(search_path: Iterable[str] | None = None) -> list[str]:
    """Every reason to believe ``pipeline``/``schemas``/``transforms`` are not (only) ours; [] when they are."""
    out = []
    owners = co_owners(search_path)
    for name, dists in sorted(owners.items()):
        out.append(f"the top-level package `{name}` is also shipped by {', '.join(dists)}; installed side by side, "
                   f"its files and the importer's overwrite each other in one folder. Install the importer in a "
                   f"virtualenv (or container image) of its own, or uninstall the other distribution.")
    for name, probe in PROBES.items():
        found = _package_dir(name)
        if found is None:
            out.append(f"`import {name}` finds no package: the importer ({DISTRIBUTION}) is not installed here.")
        elif found != HERE / name:
            out.append(f"`import {name}` finds {found}, not the importer's {HERE / name}: a folder earlier on "
                       f"sys.path shadows it (with `python -m`, the current directory comes first; check "
                       f"PYTHONPATH). Run from another directory or rename that package.")
        elif not (found / probe).is_file():
            out.append(f"{found} has no {probe}: it is not the importer's `{name}` package, or a broken install.")
    for path, recorded in sorted(_recorded_hashes().items()):
        if path.is_file() and _sha256(path) != recorded:
            out.append(f"{path} is not the file {DISTRIBUTION} installed (its sha256 differs from the RECORD): "
                       f"another distribution overwrote it. Reinstall the importer in a virtualenv of its own.")
    return out


def main() -> int:
    found = problems()
    for message in found:
        print(f"error: {message}", file=sys.stderr)
    if not found:
        print(f"{DISTRIBUTION}: pipeline, schemas and transforms are the importer's own ({HERE})")
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
