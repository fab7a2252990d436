"""The Markdown docs hold together: links and anchors resolve, code blocks are Python, and the
README links every page of docs/."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
# api.md's code blocks are signatures, not statements.
SIGNATURES = {"api.md"}


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_anchors_resolve(page: Path) -> None:
    text = page.read_text("utf-8")
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        missing_anchor = (
            target.exists()
            and bool(fragment)
            and target.suffix == ".md"
            and fragment not in anchors(target.read_text("utf-8"))
        )
        if not target.exists() or missing_anchor:
            broken.append(link)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.name not in SIGNATURES], ids=lambda p: p.name
)
def test_python_blocks_compile(page: Path) -> None:
    text = page.read_text("utf-8")
    # A block inside a list item is indented like the item: dedent it.
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
        block = textwrap.dedent(block)
        try:
            compile(block, f"{page.name} block {i}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            pytest.fail(f"{page.name}, python block {i}: {exc}\n{block}")


def test_readme_links_every_doc_page() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    linked = set(re.findall(r"\]\(docs/([^)#\s]+)", readme))
    missing = sorted(p.name for p in DOCS if p.name not in linked)
    assert not missing, f"README.md does not link {missing}"
