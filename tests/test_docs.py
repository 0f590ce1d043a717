"""The docs stay true to the code: docs/cli.md is what scripts/make_cli_docs.py writes now, every relative
link and #anchor of README.md and docs/ resolves, each command's --help opens with one line saying what it
does, and the --help examples that need no network run as written, on tiny data."""

from __future__ import annotations

import csv
import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from fixtures import write_mrpc
from gluebox.cli import EXAMPLES, NEEDS_NETWORK, build_parser, main

DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]


def make_cli_docs():
    spec = importlib.util.spec_from_file_location("make_cli_docs", REPO / "scripts" / "make_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_from_the_code():
    expected = make_cli_docs().render()
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == expected, (
        "docs/cli.md is stale: run `python scripts/make_cli_docs.py`")


def test_cli_reference_has_every_flag_of_every_command():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, parser in build_parser().commands.choices.items():
        assert f"## `gluebox {name}`" in text
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help", "--debug"):
                    assert f"`{option}" in text, f"{option} of {name} is missing from docs/cli.md"


# Links --------------------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str) -> str:
    """The page without its fenced code blocks (a link there is code, not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, inline markup dropped, spaces to hyphens, punctuation gone."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: dict[str, int] = {}
    result = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6} (.+)$", line)
        if match:
            base = slug(match.group(1))
            count = found.get(base, 0)
            result.add(base if count == 0 else f"{base}-{count}")
            found[base] = count + 1
    return result


def test_slug_follows_github():
    assert slug("Schedules, validation within an epoch, early stopping, a time budget") == \
        "schedules-validation-within-an-epoch-early-stopping-a-time-budget"
    assert slug("`gluebox push`: the model on the Hugging Face Hub") == "gluebox-push-the-model-on-the-hugging-face-hub"
    assert slug("bfloat16 on CPUs with AMX: `--precision bf16-mixed`") == "bfloat16-on-cpus-with-amx---precision-bf16-mixed"


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked here
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# A page\n\n## Its part\n")
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](other.md#its-part) [ok](#title) [web](https://example.com/x)\n"
                    "[gone](missing.md) [no anchor](other.md#nothing) [no heading](#nowhere)\n"
                    "```\n[in code](ignored.md)\n```\n")
    assert broken_links(page) == ["missing.md: no file missing.md",
                                  "other.md#nothing: no heading with anchor #nothing in other.md",
                                  "#nowhere: no heading with anchor #nowhere in page.md"]


def test_the_readme_is_short_and_its_test_command_runs_the_doc_tests():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "bash scripts/bootstrap.sh && .venv/bin/python -m pytest\n" in readme  # collects tests/test_docs.py


# --help --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(build_parser().commands.choices))
def test_each_command_help_opens_with_one_line_and_ends_with_examples(name):
    parser = build_parser().commands.choices[name]
    description = parser.description
    assert description and "\n" not in description and description.endswith(".")
    help_text = parser.format_help()
    assert help_text.split("\n\n")[1] == description
    assert help_text.rstrip().endswith("\n".join(f"  {line}" for line in EXAMPLES[name]))
    assert all(line.startswith(f"gluebox {name} ") for line in EXAMPLES[name])


def test_the_top_level_help_opens_with_one_line():
    parser = build_parser()
    assert parser.description and "\n" not in parser.description
    for name, action in parser.commands.choices.items():
        assert name in parser.format_help()


def runnable_examples() -> list[str]:
    """Every --help example that needs no network, in the order the commands list them."""
    return [line for name in EXAMPLES for line in EXAMPLES[name] if not any(m in line for m in NEEDS_NETWORK)]


def test_some_examples_are_run_and_the_others_are_marked():
    runnable = runnable_examples()
    assert {line.split()[1] for line in runnable} >= {"train", "evaluate", "predict", "plot", "compare", "glue"}
    skipped = [line for lines in EXAMPLES.values() for line in lines if line not in runnable]
    assert all("#" in line for line in skipped)


def write_reviews(folder: Path) -> None:
    """reviews.csv and reviews_dev.csv: a review column and a pos/neg sentiment column (learnable by a word)."""
    for name, rows in (("reviews.csv", 40), ("reviews_dev.csv", 12)):
        with open(folder / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "review", "sentiment"])
            for i in range(rows):
                good = i % 2 == 0
                writer.writerow([f"r{i}", f"a {'fine good' if good else 'poor bad'} film number {i}", "pos" if good else "neg"])


def test_the_help_examples_run_as_written(tiny_bert, tmp_path, monkeypatch, capsys):
    """In a folder holding the data the examples name (glue_data/MRPC, reviews.csv), with $GLUEBOX_MODEL a tiny
    model in place of the default hub id; runs/mrpc-again is a copy of runs/mrpc, so `compare` finds them equal."""
    write_mrpc(tmp_path / "glue_data" / "MRPC")
    write_reviews(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUEBOX_MODEL", tiny_bert)
    for line in runnable_examples():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "gluebox"
        if argv[1] == "compare" and not Path("runs/mrpc-again").exists():
            shutil.copytree("runs/mrpc", "runs/mrpc-again", symlinks=True)  # wandb's log links may dangle
        code = main([*argv[1:], "--no-progress_bar"] if argv[1] in ("train", "glue") and "--check" not in argv
                    else argv[1:])
        assert code == 0, f"`{line}` exited {code}: {capsys.readouterr().err}"
    assert Path("runs/glue/submission.zip").is_file() and Path("curves.png").is_file()
