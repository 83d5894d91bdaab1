"""Packaging of the importer: the same three packages run on the launcher and on Dataflow workers.

`./run.sh` installs it in editable mode; `--setup_file ./setup.py` ships it to Dataflow workers.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
ROLES = ("core", "sources", "stages", "pubsub", "bigquery", "files")  # the sub-packages of transforms/
RUNTIME = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not line.startswith("-")
]

setup(
    name="rlvt-bigquery-importer",
    version="0.1.0",
    description="Import exported collector events into BigQuery with Apache Beam.",
    packages=["pipeline", "schemas", "transforms", *(f"transforms.{role}" for role in ROLES)],
    py_modules=["rlvt_own_packages"],  # checks that the three generic names above are ours
    python_requires=">=3.11,<3.14",
    install_requires=RUNTIME,
    entry_points={"console_scripts": ["rlvt-import = pipeline.entry:main"]},
)
