"""The docs run: every ```python block of README.md and docs/ executes, and api.md is current.

The blocks of one page run in order in one namespace, as a reader would paste them. A block
preceded by the line ``<!-- no-test -->`` is shown but not run (servers, other libraries,
fragments).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps.procs import ROOT

NO_TEST = "<!-- no-test -->"
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it starts, its code, and whether it is marked no-test."""

    line: int
    code: str
    skipped: bool


def blocks(path: Path) -> list[Block]:
    """Every ```python block of a Markdown file, in order."""
    text = path.read_text()
    found: list[Block] = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].strip() == NO_TEST
        line = text.count("\n", 0, match.start()) + 2
        found.append(Block(line, match.group(1), skipped))
    return found


# api.md shows signatures, not examples; it is checked against docs/gen_api.py instead.
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("**/*.md") if p.name != "api.md"),
]


def _job_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("recurjobs")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each runnable block of the page executes without error and leaves no job thread behind."""
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.skipped:
            continue
        code = compile(block.code, f"{page.relative_to(ROOT)}:{block.line}", "exec")
        exec(code, namespace)
    deadline = time.monotonic() + 5
    while _job_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [] == _job_threads()


def test_readme_opens_with_the_quick_start() -> None:
    """README's first code block is `make demo` then `make test`, and it has a runnable example."""
    text = (ROOT / "README.md").read_text()
    first = re.search(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert first is not None
    assert ["make demo", "make test"] == first.group(1).split("\n")[:2]
    runnable = [b for b in blocks(ROOT / "README.md") if not b.skipped]
    assert 1 <= len(runnable)
    assert len(runnable[0].code.splitlines()) <= 30


def test_block_extraction_honours_no_test(tmp_path: Path) -> None:
    """The extractor finds python blocks with their line and the no-test marker before them."""
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n```python\nx = 1\n```\n\n<!-- no-test -->\n```python\nraise SystemExit\n```\n"
        "\n```bash\nls\n```\n"
    )
    assert [Block(4, "x = 1\n", False), Block(9, "raise SystemExit\n", True)] == blocks(page)


def test_api_reference_is_current() -> None:
    """docs/api.md is exactly what docs/gen_api.py renders from today's docstrings."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None and spec.loader is not None
    gen_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_api)
    expected = gen_api.render()
    actual = (ROOT / "docs" / "api.md").read_text()
    assert expected == actual, "docs/api.md is stale: run `.venv/bin/python docs/gen_api.py`"


@pytest.mark.parametrize(
    "page", [*PAGES, ROOT / "docs" / "api.md"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_cites_no_internal_contract(page: Path) -> None:
    """User docs explain behaviour themselves: none points readers to "SPEC", which they lack."""
    assert [] == re.findall(r".{0,30}\bSPEC\b.{0,30}", page.read_text())
