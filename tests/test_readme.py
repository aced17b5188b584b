"""The README quotes the committed benchmark files verbatim (no hand-typed figures)."""

from pathlib import Path

from _scripts import load_script


ROOT = Path(__file__).resolve().parents[1]


def test_readme_benchmark_blocks_match_results():
    mod = load_script("benchmarks/update_readme.py")
    current = (ROOT / "README.md").read_text()
    assert mod.render(current) == current, "run `python benchmarks/update_readme.py` after a benchmark"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "\nmake test\n" in ci
