"""Mutation testing of the pure modules with mutmut 3, each module against its own unit tests.

    ./run.sh mutate                          every module below
    ./run.sh mutate transforms/stages/urls.py …     some of them
    ./run.sh mutate --list                   the modules and their test files

For each module a work folder ``mutants/<module>/`` gets a copy of the packages and of that module's
test files, and a ``pyproject.toml`` whose ``[tool.mutmut]`` section mutates only that module and
selects only those tests (mutmut then runs, per mutant, the tests that reached the mutated function).
Mutants listed as equivalent in docs/mutation.md (matched by module, function and the changed
lines, not by mutmut's number, which shifts when the code changes) are left out of the score:

    score = killed ÷ (mutants − equivalent)      timeouts count as killed

Prints one line per module and the surviving mutants' diffs; exits 1 when a module is below
``--min`` (default 95 %).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("MUTATE_SOURCE") or HERE)  # the tree to test (another checkout: a baseline run)
WORK = Path(os.environ.get("MUTATE_WORK") or HERE / "mutants")
DOC = HERE / "docs" / "mutation.md"
PACKAGES = ("transforms", "schemas", "pipeline")
SUPPORT = ("tests/__init__.py", "tests/conftest.py", "tests/services.py", "tests/factory.py", "tests/strategies.py")
UNIT_ONLY = "not e2e and not emulator and not packaging"
HYPOTHESIS_PROFILE = """from hypothesis import Phase, settings

# a mutant that fails a property test is killed on the first failing example: shrinking it to the
# smallest one (seconds to minutes per mutant) tells nothing more here. Derandomized: every mutant
# meets the same examples, and a run's score does not depend on luck
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None,
                          database=None, print_blob=False, derandomize=True)
settings.load_profile("mutation")


def pytest_runtest_setup(item):
    # mutmut forks each mutant's run from a process that already ran the tests: a function cache
    # (lru_cache) filled there would answer without running the mutated code under it
    import sys

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("transforms", "schemas", "pipeline"):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
"""


@dataclass(frozen=True)
class Target:
    module: str  # path of the file to mutate
    tests: tuple[str, ...]  # its unit test files
    functions: tuple[str, ...] = ()  # only these functions (all when empty)


VALIDATION_TESTS = ("tests/test_parse_validate.py", "tests/test_validation_rules.py")
TARGETS = (
    Target("transforms/core/timestamps.py", ("tests/test_timestamps.py",)),
    Target("transforms/stages/urls.py", ("tests/test_urls.py",)),
    Target("transforms/stages/labels.py", ("tests/test_labels.py", "tests/test_labels_properties.py",
                                           "tests/test_labels_batch.py")),
    Target("transforms/stages/dedupe.py", ("tests/test_dedupe.py",)),
    Target("schemas/validation.py", VALIDATION_TESTS),
    Target("transforms/stages/validate.py", VALIDATION_TESTS),
    Target("transforms/stages/wire.py", VALIDATION_TESTS),
    Target("transforms/stages/privacy.py", ("tests/test_privacy_agents.py",)),
    Target("transforms/stages/agents.py", ("tests/test_privacy_agents.py",)),
    Target("transforms/core/sizing.py", ("tests/test_sizing.py",)),
    # summary() is the printed text; assemble() is the accounting every report rests on
    Target("pipeline/report.py", ("tests/test_report.py",), ("assemble", "_file_entry")),
)

_EQUIVALENT = re.compile(r"^- `([^`]+)`, `([^`]+)`: `` (.*?) `` → `` (.*?) `` — (.+)$")


def equivalents() -> set[tuple[str, str, str, str]]:
    """(module, function, removed lines, added lines) of each mutant docs/mutation.md calls equivalent."""
    found = set()
    for line in DOC.read_text().splitlines() if DOC.exists() else []:
        match = _EQUIVALENT.match(line)
        if match:
            found.add(match.groups()[:4])
    return found


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a mutant's diff, each side stripped and joined by ` ⏎ `."""
    removed = [s[1:].strip() for s in diff.splitlines() if s.startswith("-") and not s.startswith("---")]
    added = [s[1:].strip() for s in diff.splitlines() if s.startswith("+") and not s.startswith("+++")]
    return " ⏎ ".join(removed), " ⏎ ".join(added)


def function_of(mutant: str) -> str:
    """``transforms.stages.urls.x_normalize_url__mutmut_3`` → ``normalize_url``; a method (mutmut's
    ``xǁClassǁmethod``) → ``Class.method``."""
    name = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if name.startswith("xǁ"):
        _, cls, method = name.split("ǁ")
        return f"{cls}.{method}"
    return name.removeprefix("x_")


@dataclass
class Outcome:
    target: Target
    statuses: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, tuple[str, str]] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: bool = False

    @property
    def counted(self) -> list[str]:
        return [m for m in self.statuses if m not in self.excluded]

    @property
    def killed(self) -> int:
        return sum(self.statuses[m] in ("killed", "timeout") for m in self.counted)

    @property
    def score(self) -> float:
        return self.killed / len(self.counted) if self.counted else 1.0

    @property
    def survivors(self) -> list[str]:
        return [m for m in self.counted if self.statuses[m] not in ("killed", "timeout")]


def prepare(target: Target) -> Path:
    work = WORK / target.module.replace("/", "_").removesuffix(".py")
    shutil.rmtree(work, ignore_errors=True)
    (work / "tests").mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (*SUPPORT, *target.tests):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, work / name)
    (work / "mutation_profile.py").write_text(HYPOTHESIS_PROFILE)
    quoted = ", ".join(f'"{p}"' for p in PACKAGES)
    tests = ", ".join(f'"{t}"' for t in target.tests if (ROOT / t).exists())
    (work / "pyproject.toml").write_text(f"""[tool.mutmut]
source_paths = [{quoted}]
only_mutate = ["{target.module}"]
pytest_add_cli_args_test_selection = [{tests}]
pytest_add_cli_args = ["-p", "mutation_profile", "-p", "no:randomly", "-p", "no:cacheprovider", "-m", "{UNIT_ONLY}"]
also_copy = ["mutation_profile.py"]
# each mutant's process is forked from a server that has not run the tests: forked from a process in
# which polars already ran, its thread pool deadlocks and every mutant would end as a timeout
process_isolation = "forkserver"

[tool.pytest.ini_options]
markers = ["e2e", "emulator", "packaging"]
""")
    return work


def mutmut(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, capture_output=True, text=True)


def run_target(target: Target, children: int, known: set) -> Outcome:
    started = time.monotonic()
    work = prepare(target)
    dotted = target.module.removesuffix(".py").replace("/", ".")
    names = [f"{dotted}.x_{f}__mutmut_*" for f in target.functions]  # module-level functions only
    done = mutmut(work, "run", "--max-children", str(children), *names)
    outcome = Outcome(target)
    if done.returncode != 0:  # e.g. a test fails without any mutant: no score
        print(f"mutmut run failed for {target.module}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", file=sys.stderr)
        outcome.error = True
        return outcome
    for line in mutmut(work, "results", "--all", "true").stdout.splitlines():
        name, _, status = line.strip().partition(": ")
        if not name.startswith(dotted + ".") or status == "not checked":
            continue
        if target.functions and function_of(name) not in target.functions:
            continue
        outcome.statuses[name] = status
    for name, status in outcome.statuses.items():
        if status in ("killed", "timeout"):
            continue
        outcome.diffs[name] = changed_lines(mutmut(work, "show", name).stdout)
        if (target.module, function_of(name), *outcome.diffs[name]) in known:
            outcome.excluded.append(name)
    outcome.seconds = time.monotonic() - started
    print(f"{target.module}: {len(outcome.statuses)} mutants, {len(outcome.diffs)} not killed "
          f"({outcome.seconds:.0f} s)", file=sys.stderr, flush=True)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module files (default: all of them)")
    parser.add_argument("--min", type=float, default=95.0, help="lowest passing score, %% (default 95)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant runs (default 2)")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    args = parser.parse_args()
    by_module = {t.module: t for t in TARGETS}
    if args.list:
        for t in TARGETS:
            only = f"  (only {', '.join(t.functions)})" if t.functions else ""
            print(f"{t.module:<28} {' '.join(t.tests)}{only}")
        return 0
    unknown = [m for m in args.modules if m not in by_module]
    if unknown:
        parser.error(f"not a mutation target: {', '.join(unknown)} (see --list)")
    known = equivalents()
    outcomes = [run_target(by_module[m], args.max_children, known) for m in args.modules or by_module]
    failed = False
    print(f"\n{'module':<28} {'mutants':>7} {'equiv.':>6} {'killed':>6} {'survived':>8} {'score':>7} {'time':>6}")
    for o in outcomes:
        if o.error:
            failed = True
            print(f"{o.target.module:<28} mutmut failed (see above)")
            continue
        low = o.score * 100 < args.min
        failed |= low
        print(f"{o.target.module:<28} {len(o.statuses):>7} {len(o.excluded):>6} {o.killed:>6} {len(o.survivors):>8} "
              f"{o.score:>7.1%} {o.seconds:>5.0f}s{'  BELOW ' + str(args.min) + ' %' if low else ''}")
    for o in outcomes:
        for name in o.survivors:
            removed, added = o.diffs[name]
            print(f"\n{o.statuses[name]}: {name}\n- `{o.target.module}`, `{function_of(name)}`: `` {removed} `` → "
                  f"`` {added} `` — WHY")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
