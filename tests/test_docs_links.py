"""Every relative link of README.md and docs/*.md leads somewhere: the file exists, and a #anchor names a
heading of the page it points to (GitHub's rule for heading ids)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The page without its code blocks and code spans (a `[x](y)` there is no link)."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's id of a heading: lower case, punctuation dropped (not - or _), spaces as hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    ids = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", m.group(1))]  # http:, https:, mailto: are not checked here


def test_slugs_follow_github():
    assert slug("What holds on Dataflow and real BigQuery, and why") == \
        "what-holds-on-dataflow-and-real-bigquery-and-why"
    assert slug("Pub/Sub") == "pubsub"
    assert slug("`transforms/stages/urls.py`") == "transformsstagesurlspy"
    assert slug("Dataflow, the Flex Template and scheduling") == "dataflow-the-flex-template-and-scheduling"


def test_the_pages_have_links_to_check():
    assert sum(len(links(p)) for p in PAGES) > 20
    assert "docs/options.md" in links(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page: Path):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


CODE_PATH = re.compile(r"\b((?:pipeline|transforms|schemas|scripts|bench|tests|deploy)/[\w/]+\.(?:py|sh))\b")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_a_page_names_exists(page: Path):
    """`transforms/stages/parse.py` on a page is a file of the tree (a moved module leaves no stale map)."""
    named = set(CODE_PATH.findall(page.read_text()))
    assert not {p for p in named if not (ROOT / p).exists()}, f"{page.relative_to(ROOT)} names missing files"


def committed_modules() -> list[Path]:
    """The modules of pipeline/, transforms/ and schemas/ that git tracks (a module being written is not
    on the map yet); every one on disk outside a git checkout."""
    tops = ("pipeline", "transforms", "schemas")
    try:
        listed = subprocess.run(["git", "ls-files", *tops], cwd=ROOT, capture_output=True, text=True, check=True)
        paths = [ROOT / line for line in listed.stdout.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for top in tops for p in (ROOT / top).rglob("*.py")]
    return [p for p in paths if p.suffix == ".py" and p.name != "__init__.py" and p.exists()]


def test_the_map_of_the_tree_names_every_module():
    """docs/design.md's "Where things are" names each module of pipeline/, transforms/ and schemas/."""
    page = (ROOT / "docs" / "design.md").read_text()
    tree = page[page.index("## Where things are"):page.index("## What happens to an event")]
    modules = committed_modules()
    unnamed = sorted(str(p.relative_to(ROOT)) for p in modules if p.name not in tree)
    assert not unnamed, f"add them to docs/design.md, Where things are: {unnamed}"
