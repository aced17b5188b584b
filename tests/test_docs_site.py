"""The documentation site lists every page and notebook (the strict `make docs` build in CI
catches broken links and API references; this catches a page left out of the navigation)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = (ROOT / "mkdocs.yml").read_text()


def test_every_docs_page_and_notebook_is_in_the_nav():
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")
             if not p.is_symlink() and "notebooks" not in p.parts and "benchmarks" not in p.parts]
    notebooks = [f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    missing = [p for p in pages + notebooks if f": {p}\n" not in MKDOCS]
    assert not missing, f"add to the nav of mkdocs.yml: {missing}"


def test_every_benchmark_result_page_is_in_the_nav():
    results = [f"benchmarks/{p.name}" for p in sorted((ROOT / "benchmarks" / "results").glob("*.md"))]
    missing = [p for p in results if f": {p}\n" not in MKDOCS]
    assert not missing, f"add to the nav of mkdocs.yml: {missing}"


def test_make_docs_builds_strict_and_ci_runs_it():
    assert "mkdocs build --strict" in (ROOT / "Makefile").read_text()
    assert "\nmake docs\n" in (ROOT / ".ci" / "run").read_text()


def test_no_citation_of_files_the_project_does_not_ship():
    """Docstrings and docs cite docs/method.md and the guide pages, never the planning notes
    (METHODS.md, DESIGN.md) that live outside the repository."""
    cited = [str(p.relative_to(ROOT)) for folder in ("attsolver", "docs", "benchmarks")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md") and p.is_file()
             and "results" not in p.parts and ("METHODS.md" in p.read_text() or "DESIGN.md" in p.read_text())]
    assert not cited, f"cite docs/method.md or a docs/ page instead: {cited}"
