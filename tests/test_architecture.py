"""The layout of transforms/ holds: roles import only the roles before them (transforms/__init__.py),
no sink imports the other, nothing in transforms/ imports pipeline/, and both import paths call the
one batch function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("core", "sources", "stages", "bigquery", "files", "pubsub")
"""The roles in the order transforms/__init__.py gives them (an event meets them in this order)."""
EXCEPTIONS = {("transforms/sources/read_json.py", "stages"), ("transforms/sources/read_replay.py", "stages")}
"""The readers of JSON arrays and replay files decode with the parse stage's own functions."""
SINKS = ("bigquery", "files")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


MODULES = sorted(p for p in (ROOT / "transforms").rglob("*.py"))


def role_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT / "transforms").parts
    return parts[0] if len(parts) > 1 else None


def test_every_module_of_transforms_belongs_to_a_role():
    loose = [p.name for p in MODULES if role_of(p) is None and p.name != "__init__.py"]
    assert not loose, f"modules outside the roles: {loose}"
    assert {role_of(p) for p in MODULES} - {None} == set(ORDER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_role_imports_only_the_roles_before_it(path):
    role = role_of(path)
    rel = str(path.relative_to(ROOT))
    for name in imports(path):
        parts = name.split(".")
        assert parts[0] != "pipeline", f"{rel} imports {name}: transforms/ must not depend on pipeline/"
        if parts[0] != "transforms" or len(parts) < 2 or parts[1] not in ORDER or role is None:
            continue
        other = parts[1]
        if other == role or (rel, other) in EXCEPTIONS:
            continue
        assert not {role, other} == set(SINKS), f"{rel} imports {name}: a sink imports the other sink"
        assert ORDER.index(other) < ORDER.index(role), f"{rel} imports {name}: {other} comes after {role}"


def test_the_file_path_and_the_pubsub_path_call_the_same_batch_function():
    def calls(path: Path) -> set[str]:
        return {n.func.id for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}

    assert "process_batch" in calls(ROOT / "transforms" / "stages" / "dofns.py")
    assert "process_batch" in calls(ROOT / "transforms" / "pubsub" / "messages.py")
    # and neither chains the stage functions itself
    for path in (ROOT / "transforms" / "stages" / "dofns.py", ROOT / "transforms" / "pubsub" / "messages.py"):
        assert not {"parse_lines", "validate_batch", "normalize_batch"} & calls(path), path
