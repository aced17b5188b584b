"""mkdocs hook: links written for the repository (``../benchmarks/results/X`` from a page in
docs/) point at the site's copies (``benchmarks/X``; docs/benchmarks links to
benchmarks/results), so a page reads correctly both on the forge and on the site."""

from __future__ import annotations

import posixpath
import re

_REPO_RESULTS = re.compile(r"\]\((?P<up>(?:\.\./)+)benchmarks/results/")


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    depth = page.file.src_uri.count("/")          # folders between docs/ and the page

    def fix(m: re.Match) -> str:
        ups = m.group("up").count("../")
        if ups != depth + 1:                      # not a link from docs/ up to the repository root
            return m.group(0)
        return "](" + posixpath.join("../" * depth, "benchmarks/") if depth else "](benchmarks/"

    return _REPO_RESULTS.sub(fix, markdown)
