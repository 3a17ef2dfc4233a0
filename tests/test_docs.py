"""README.md and docs/ stay true to the repository: short README, links that resolve, no machine paths or
documents from outside the repo, every registered trainer in the methods table, every command it names
runnable, CI's install and test lines as README spells them, and every docs page in the index."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

import trainers  # noqa: F401  (registers every trainer)
from dassl.engine import TRAINER_REGISTRY

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 250  # a newcomer reads it in five minutes

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home)/")
TMP_PATH = re.compile(r"(?<![\w.~-])/tmp/")
OUTSIDE_DOCS = re.compile(
    r"\b(?:SPEC|DESIGN|REVIEW|USER_PAINS|BASELINES|ADAPTERS|ROUND2|GUIDE)\.md\b|(?<![\w./-])(?:\.\./)*shared/"
)
PYTHON_M = re.compile(r"python3?\s+-m\s+([\w.]+)")
NOT_OURS = {"pytest", "pip", "venv"}  # python -m modules of other projects
SCRIPT = re.compile(r"(?<![\w/.<>-])((?:[\w.*+-]+/)*[\w*+-]+\.(?:sh|py|yaml))(?![\w/])")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file (code blocks and code spans left out)."""
    return LINK.findall(prose(path.read_text()))


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}: move detail to docs/"


def test_relative_links_resolve() -> None:
    """Every relative link (anchor aside) names a file or folder of the repository; the failure lists each
    missing target once, with the pages that link to it."""
    missing: dict[str, list[str]] = {}
    for path in markdown_files():
        for target in links(path):
            if SCHEME.match(target) or target.startswith("#"):
                continue
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                where = name(resolved) if resolved.is_relative_to(REPO) else str(resolved)
                missing.setdefault(where, []).append(name(path))
    report = [f"{target} (linked from {', '.join(sorted(set(pages)))})" for target, pages in sorted(missing.items())]
    assert not missing, "links to files that are not in the repository:\n" + "\n".join(report)


def test_links_find_relative_targets_and_skip_code() -> None:
    """The link reader itself: relative targets found, code blocks and spans ignored."""
    text = "See [a](docs/a.md#x) and [b](https://x.org).\n```\n[c](c.md)\n```\n`[d](d.md)`\n"
    assert LINK.findall(prose(text)) == ["docs/a.md#x", "https://x.org"]


@pytest.mark.parametrize("path", markdown_files(), ids=name)
def test_no_machine_paths_or_outside_documents(path: Path) -> None:
    text = path.read_text()
    found = MACHINE_PATH.findall(text) + TMP_PATH.findall(prose(text)) + OUTSIDE_DOCS.findall(text)
    assert not found, f"{name(path)} names paths of a machine or documents outside the repository: {found}"


def methods_table_trainers() -> set[str]:
    """The names in the `--trainer` column of README's methods table."""
    section = README.read_text().split("\n## Methods\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    column = header.index("`--trainer`")
    names: set[str] = set()
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        names.update(re.findall(r"`([^`]+)`", cells[column]))
    return names


def test_every_registered_trainer_is_in_the_methods_table() -> None:
    # The repository's trainers (other tests register stand-ins of their own in the same registry).
    registered = TRAINER_REGISTRY.registered_names()
    ours = {n for n in registered if TRAINER_REGISTRY.get(n).__module__.startswith("trainers.")}
    assert {"CoOp", "MMRL", "MMRLpp", "CLIP_Adapter"} <= ours
    missing = sorted(ours - methods_table_trainers())
    assert not missing, f"registered trainers missing from README's methods table: {missing}"


def module_exists(module: str) -> bool:
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (base / "__main__.py").is_file()


def test_python_modules_named_in_readme_exist() -> None:
    modules = {m for m in PYTHON_M.findall(README.read_text()) if not m.endswith(".")}  # "tools.<name>": a pattern
    assert {"tools.report", "datasets.prepare"} <= modules  # the reader finds them
    missing = sorted(m for m in modules - NOT_OURS if not module_exists(m))
    assert not missing, f"README names python -m modules that do not exist: {missing}"


def test_scripts_and_config_files_named_in_readme_exist() -> None:
    """Every .sh / .py file README names, and every .yaml path, is in the repository (globs match one)."""
    named = set(SCRIPT.findall(README.read_text()))
    assert {"train.py", "demo.sh", "configs/datasets/dtd.yaml"} <= named  # the reader finds them
    missing = []
    for path in sorted(named):
        if path.endswith(".yaml") and "/" not in path:
            continue  # a config file named inside its folder's context ("MMRL's vit_b16.yaml")
        if not glob.glob(str(REPO / path)):
            missing.append(path)
    assert not missing, f"README names files that are not in the repository: {missing}"


def test_readme_spells_ci_install_and_test_lines() -> None:
    """.ci/run installs "exactly as README says" and runs README's test command: both lines appear in README."""
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    commands = [ci[i + 1].strip() for i, line in enumerate(ci) if line.startswith('# README "')]
    assert len(commands) == 2, ".ci/run marks its set-up and test lines with '# README \"...\"' comments"
    readme = README.read_text()
    for command in commands:
        assert command in readme, f"README.md does not spell CI's line: {command}"


def test_every_docs_page_is_in_the_index() -> None:
    index = DOCS / "README.md"
    linked = {(index.parent / t.split("#", 1)[0]).resolve() for t in links(index) if not SCHEME.match(t)}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p != index}
    unlisted = sorted(name(p) for p in pages - linked)
    assert not unlisted, f"docs pages missing from docs/README.md: {unlisted}"
