"""Packaging: what Dataflow workers install is complete, and the generic package names are ours.

The slow test (``-m packaging``) builds the sdist that ``--setup_file`` stages for Dataflow workers,
builds the wheel from it as pip does on a worker, installs it in a new virtualenv with ``--no-index``
(so from what it ships, nothing fetched) against the pinned dependency set, and runs an import from a
folder outside the repository. The pinned set is not downloaded and installed again each run (a minute
and a half): the new virtualenv links to the project venv's installed distributions, which ``run.sh``
installed from ``requirements.lock``, and pip must find every requirement of the wheel satisfied there
within the lock's pins, with no index to fetch a different version from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import rlvt_own_packages
from tests.conftest import ROOT
from tests.factory import envelope, line, write_ndjson

SOURCES = ["setup.py", "MANIFEST.in", "requirements.txt", "pyproject.toml", "README.md", "rlvt_own_packages.py",
           "pipeline", "schemas", "transforms"]


def fake_distribution(site: Path, name: str, top_level: list[str], with_top_level_txt: bool = True) -> Path:
    """A minimal installed distribution (a .dist-info folder) that ships the given top-level packages."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{pkg}/__init__.py,,\n" for pkg in top_level))
    if with_top_level_txt:
        (info / "top_level.txt").write_text("".join(f"{pkg}\n" for pkg in top_level))
    return info


def test_this_checkout_owns_its_packages():
    assert rlvt_own_packages.problems() == []


@pytest.mark.parametrize("with_top_level_txt", [True, False])
def test_a_distribution_shipping_one_of_our_names_is_named(tmp_path, with_top_level_txt):
    fake_distribution(tmp_path, "acme-schemas", ["schemas", "acme"], with_top_level_txt)
    assert list(rlvt_own_packages.co_owners([str(tmp_path)])) == ["schemas"]
    found = rlvt_own_packages.problems([str(tmp_path), *sys.path])
    assert len(found) == 1
    assert found[0].startswith(f"the top-level package `schemas` is also shipped by acme-schemas 1.0 "
                               f"(installs {tmp_path / 'schemas'})")


def test_the_launcher_refuses_to_run_beside_a_co_owner(tmp_path):
    fake_distribution(tmp_path / "site", "pipeline-tools", ["pipeline"])
    result = subprocess.run([sys.executable, "-m", "pipeline", "--input", str(tmp_path / "none.ndjson"), "--dry_run"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 2
    assert "`pipeline` is also shipped by pipeline-tools 1.0" in result.stderr
    assert "Import " not in result.stdout, "nothing ran"


def test_a_package_earlier_on_sys_path_is_reported(tmp_path):
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "__init__.py").write_text("")
    # python -m puts the current directory first on sys.path: a project folder with its own `transforms`
    result = subprocess.run([sys.executable, "-m", "rlvt_own_packages"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert f"`import transforms` finds {tmp_path / 'transforms'}, not the importer's {ROOT / 'transforms'}" \
        in result.stderr


def test_the_import_command_names_a_shadowing_package_instead_of_crashing(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "__init__.py").write_text("")  # someone's own `schemas` in the working folder
    result = subprocess.run([sys.executable, "-m", "pipeline", "--input", "x.ndjson", "--dry_run"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert result.returncode == 2, result.stderr
    assert f"`import schemas` finds {tmp_path / 'schemas'}" in result.stderr
    assert "Traceback" not in result.stderr


PROJECT_SITE = Path(sysconfig.get_paths()["purelib"])


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def link_pinned_distributions(site: Path) -> list[str]:
    """Give the virtualenv at ``site`` the pinned set, as installed in the project venv from
    ``requirements.lock``: symbolic links to each pinned distribution's files (its RECORD's top-level
    entries) and to pip, to install with. Not the dev tools, not our own editable install: only the wheel
    provides the importer there. Nothing is written through the links (pip installs only the wheel,
    --no-index). Returns the pinned names that are not installed (none, after ``run.sh setup``)."""
    from importlib import metadata

    assert PROJECT_SITE != site and (PROJECT_SITE / "apache_beam").is_dir(), f"not the project venv: {PROJECT_SITE}"
    pins = {_canonical(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][\w.-]*)==",
                                                        (ROOT / "requirements.lock").read_text(), re.M)}
    found = set()
    for dist in metadata.distributions(path=[str(PROJECT_SITE)]):
        name = _canonical(dist.metadata["Name"] or "")
        if name not in pins | {"pip"}:
            continue
        found.add(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}:
            link = site / top
            if top != "__pycache__" and (PROJECT_SITE / top).exists() and not link.exists():
                link.symlink_to(PROJECT_SITE / top)
    return sorted(pins - found)


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, env=clean, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.packaging
def test_the_package_installs_clean_and_imports_outside_the_repository(tmp_path):
    seconds = {}
    started = time.monotonic()
    src, dist, wheels = tmp_path / "src", tmp_path / "dist", tmp_path / "wheels"
    src.mkdir()
    for name in SOURCES:  # a copy: building writes build/ and *.egg-info next to setup.py
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    # Beam stages `setup.py sdist` for --setup_file; a worker builds it into a wheel and installs that
    run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", dist], cwd=src)
    (sdist,) = dist.glob("*.tar.gz")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, sdist])
    (wheel,) = wheels.glob("rlvt_bigquery_importer-*.whl")
    seconds["build sdist + wheel"] = time.monotonic() - started

    mark = time.monotonic()
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert link_pinned_distributions(site) == [], "pinned but not installed in .venv: run ./run.sh setup"
    # --no-index: the wheel installs from itself, and a requirement outside the pins has nowhere to come from
    run([python, "-m", "pip", "install", "-q", "--no-index", wheel, "-c", ROOT / "requirements.lock"])
    run([python, "-m", "pip", "check"])  # as the Dockerfile does: the pins resolve together
    seconds["venv + install (pinned deps linked)"] = time.monotonic() - mark

    mark = time.monotonic()
    work = tmp_path / "work"  # outside the repository: the source tree is not importable from here
    work.mkdir()
    imports = ("import json, pipeline, schemas, transforms, rlvt_own_packages as g; "
               "print(json.dumps([m.__file__ for m in (pipeline, schemas, transforms, g)]))")
    files = json.loads(run([python, "-c", imports], cwd=work).stdout)
    for file in files:
        assert Path(file).resolve().is_relative_to(site.resolve()), file
    assert run([python, "-m", "rlvt_own_packages"], cwd=work).stdout.startswith("rlvt-bigquery-importer: ")

    src_file = write_ndjson(work / "small.ndjson", [line(envelope(i)) for i in range(20)]
                            + [line(envelope(3)), b'{"key":"zz"}'])
    result = run([python, "-m", "pipeline", "--input", src_file, "--output_dir", work / "out",
                  "--direct_num_workers=1"], cwd=work)
    assert "every record accounted for" in result.stdout
    report = json.loads((work / "out" / "import_report.json").read_text())
    assert report["ok"] and report["total"]["read"] == 22
    total = report["total"]
    assert (total["loaded"], total["duplicate_exact"], total["dead_lettered"]) == (20, 1, 1)
    assert sorted(p.name for p in (work / "out" / "rows").glob("*.parquet"))
    seconds["import outside the repository"] = time.monotonic() - mark

    # the guard notices an installed module another distribution overwrote
    envelope_py = site / "schemas" / "envelope.py"
    envelope_py.write_text(envelope_py.read_text() + "\n# overwritten\n")
    tampered = subprocess.run([python, "-m", "rlvt_own_packages"], capture_output=True, text=True, cwd=work)
    assert tampered.returncode == 2 and "is not the file rlvt-bigquery-importer installed" in tampered.stderr
    print("packaging timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
