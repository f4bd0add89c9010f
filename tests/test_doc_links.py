"""Every relative link of the README and docs/ names a file or folder that exists."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
# [text](target) and ![alt](target), the target up to a space, ')' or '#'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]*)(?:#[^)\s]*)?(?:\s+\"[^\"]*\")?\)")


def links(text: str) -> list:
  """The relative targets of a markdown text's links (no URL, no in-page anchor, no code)."""
  text = re.sub(r"```.*?```", "", text, flags=re.S)  # Code blocks are not links.
  text = re.sub(r"`[^`\n]*`", "", text)
  return [t for t in LINK.findall(text) if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_links_finds_relative_targets_only():
  text = ("[a](docs/x.md) ![f](figures/a.png \"t\") [u](https://example.org/y) [s](#top) "
          "[p](b.md#sec) `[c](code.md)`\n```\n[d](block.md)\n```")
  assert links(text) == ["docs/x.md", "figures/a.png", "b.md"]


def test_every_link_of_the_readme_and_docs_resolves():
  pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
  assert len(pages) > 5
  broken = [f"{page.relative_to(REPO)}: {target}" for page in pages
            for target in links(page.read_text()) if not (page.parent / target).exists()]
  assert not broken, broken
