"""Copy committed benchmark tables into README.md between ``<!-- NAME:begin/end -->`` markers.

    python benchmarks/update_readme.py          # rewrite README.md
    python benchmarks/update_readme.py --check  # exit 1 if README.md is out of date

The README never carries hand-typed figures: every number in a marked block comes from a
file under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: marker name -> (results file, the ``## `` sections quoted, or None for the whole body)
BLOCKS = {
    "speed": ("speed.md", None),
    "vision": ("vision.md", None),
    "ablation": ("ablation.md", None),
    "ode": ("ode.md", ["Targets"]),
    "pde": ("pde.md", ["Targets", "Reading the numbers"]),
    "tickets": ("tickets.md", ["Ticket retrained from scratch"]),
    "guidance": ("guidance.md", ["Conditional generation", "Findings"]),
    "pruning": ("pruning.md", ["50% fewer FLOPs", "75% fewer FLOPs"]),
    "continual": ("continual.md", ["Headline", "Reading the numbers"]),
}


def _sections(body: str, wanted: list[str]) -> str:
    """The ``## Heading`` sections of ``body`` whose heading starts with a wanted title."""
    parts = re.split(r"(?m)^(?=## )", body)
    keep = [p.strip() for p in parts if any(p.startswith(f"## {w}") for w in wanted)]
    return "\n\n".join(keep)


def block_text(name: str) -> str:
    filename, wanted = BLOCKS[name]
    path = RESULTS / filename
    if not path.exists():
        return f"_No committed result yet: run the benchmark to produce `benchmarks/results/{filename}`._"
    lines = path.read_text().strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    lead = f"Quoted from [`benchmarks/results/{filename}`](benchmarks/results/{filename})"
    if wanted:
        body = _sections(body, wanted)
        lead += f" (sections: {', '.join(wanted)}; the file has the full tables and plots)"
    # demote headings so they nest under the README's "Benchmarks" section
    body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 1) + " ", body, flags=re.M)
    return f"{lead}:\n\n{body}"


def render(readme: str) -> str:
    for name in BLOCKS:
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- {name}:begin --> / <!-- {name}:end --> markers")
        readme = pattern.sub(lambda m: m.group(1) + block_text(name) + "\n" + m.group(2), readme)
    return readme


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    path = ROOT / "README.md"
    current = path.read_text()
    new = render(current)
    if args.check:
        if new != current:
            print("README.md is out of date with benchmarks/results: run python benchmarks/update_readme.py")
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
