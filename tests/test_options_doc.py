"""docs/options.md is generated from the options class: the committed page is what the generator writes,
and it documents every flag of the import (ImportOptions and Beam's --dry_run)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_options_doc = load("make_options_doc")
make_metadata = load("make_metadata")


def test_the_page_is_what_the_generator_writes():
    assert make_options_doc.DOC.read_text() == make_options_doc.render(), \
        "docs/options.md is stale: run .venv/bin/python scripts/make_options_doc.py"


def test_check_says_whether_the_page_is_stale(tmp_path, monkeypatch, capsys):
    page = tmp_path / "options.md"
    monkeypatch.setattr(make_options_doc, "DOC", page)
    assert make_options_doc.main(["--check"]) == 1  # absent
    page.write_text(make_options_doc.render() + "edited by hand\n")
    assert make_options_doc.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert make_options_doc.main([]) == 0
    assert make_options_doc.main(["--check"]) == 0


def test_every_flag_of_the_import_has_its_row_with_its_help():
    page = make_options_doc.DOC.read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(--\w+)` \|.*$", page, re.M)}
    flags = [a for a in make_metadata.pipeline_flags() if a.option_strings and a.dest != "help"]
    assert any(a.dest == "dry_run" for a in flags)
    missing = [a.option_strings[-1] for a in flags if a.option_strings[-1] not in rows]
    assert not missing, f"flags missing from docs/options.md: {missing}"
    extra = sorted(set(rows) - {a.option_strings[-1] for a in flags})
    assert not extra, f"rows for flags the import does not have: {extra}"
    for a in flags:
        if a.dest != "dry_run":  # Beam declares it with its own help; the import's is in pipeline.options
            first_words = " ".join(a.help.split()[:4]).replace("*", "\\*")
            assert first_words in rows[a.option_strings[-1]], f"{a.option_strings[-1]}: its help is not on the page"


def test_a_flag_shows_its_choices_and_default():
    page = make_options_doc.DOC.read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `--input_format` |"))
    assert "`auto` · `ndjson` · `json` · `csv` · `parquet` | `auto` |" in row
    row = next(line for line in page.splitlines() if line.startswith("| `--batch_size` |"))
    assert "| integer | `50000` |" in row


def test_each_group_of_the_help_is_a_section_in_its_order():
    from pipeline.flags import FLAG_GROUPS

    page = make_options_doc.DOC.read_text()
    headings = [line[3:] for line in page.splitlines() if line.startswith("## ")]
    groups = [h for h in headings if h.endswith(" options")]
    assert [g[: -len(" options")].lower() for g in groups] == [t.lower() for t in FLAG_GROUPS]
