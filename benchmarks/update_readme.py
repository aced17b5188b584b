"""Copy committed benchmark tables into README.md between ``<!-- NAME:begin/end -->`` markers.

    python benchmarks/update_readme.py          # rewrite README.md
    python benchmarks/update_readme.py --check  # exit 1 if README.md is out of date

The README never carries hand-typed figures: every number in a marked block comes from a
file under benchmarks/results/.  What is generic is read from the common record every suite
writes (``benchmarks/_suite.py``: command, date, completeness, quick flag): a quote from an
incomplete or a ``--quick`` run says so.  Only the verdict table reads suite-specific keys, one
function per suite (:data:`VERDICT_ROWS`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: marker name (= the suite) -> the ``## `` sections of ``<suite>.md`` quoted, or None for the whole
#: body.  The README quotes the solver benchmarks; the secondary subpackages' results are linked
#: from it and shown in full on the documentation site's benchmark pages.
BLOCKS = {"speed": None, "ode": ["Targets"], "pde": ["Targets", "Reading the numbers"], "neural_ode": ["Headline"]}
#: blocks computed from a results JSON rather than copied from its Markdown
COMPUTED = ("verdict", "user_verdict")


def _x(value, kind: str | None = None, std=None) -> str:
    """A speed-up as the benchmark tables print it (``≤`` an upper bound, ``≳`` extrapolated,
    ``~`` seeds of different kinds), with its spread over seeds when given."""
    if value is None or not isinstance(value, (int, float)) or value != value:
        return "n/a"
    mark = {"cheapest": "≤", "extrapolated": "≳"}.get(kind or "", "~" if (kind or "").startswith("mixed") else "")
    ok = isinstance(std, (int, float)) and std == std and std > 0
    spread = (f" ± {std:.2g}" if std < 100 else f" ± {std:.0f}") if ok else ""
    return f"{mark}{value:.3g}{spread}×"


def _kolmogorov_rows(k: dict) -> list[str]:
    """The 2-D Kolmogorov-flow benchmark's best corrected solver (bootstrap 5-95 % in brackets);
    its ladders are the finite-difference (`fd`) and the spectral solver on finer grids."""
    rows = []
    for name, ladders in k.get("speedups", {}).items():
        try:
            same = ladders["spectral" if name.startswith("spectral") else "fd"]
            best_name = min(ladders, key=lambda lad: ladders[lad]["speedup"])
            rows.append((ladders[best_name]["speedup"], name, same, best_name, ladders[best_name]))
        except (KeyError, TypeError, ValueError):
            continue
    if not rows:
        return []
    value, name, same, best_name, best = max(rows, key=lambda r: r[0])
    setup = k.get("setup", {})

    def band(v):
        return f"{_x(v['speedup'], v.get('how'))} [{v['p05']:.2g}, {v['p95']:.2g}]" if "p05" in v else _x(v["speedup"])

    n = setup.get("coarse_n", "?")
    return [f"| kolmogorov (2-D) | {n}² grid | {name}, {setup.get('n_train', '?')} traj. | {band(same)} | "
            f"{band(best)} ({best_name} ladder) | {'**yes**' if value > 1 else 'no'} |"]


def record(name: str) -> dict:
    """The common record of ``<name>.json`` (files written before it existed: complete, not quick)."""
    path = RESULTS / f"{name}.json"
    rep = json.loads(path.read_text()) if path.exists() else {}
    return {"complete": rep.get("complete", True), "quick": rep.get("quick", False), **rep}


def _ode_rows(ode: dict) -> list[str]:
    """Per ODE case the corrected configuration with the best speed-up against the best classical
    solver (mean over seeds) and the same configuration against its own method refined."""
    lines = []
    for case, spec in ode.get("cases", {}).items():
        rows = [a for a in ode.get("aggregates", []) if a.get("case") == case
                and isinstance(a.get("speedup_best"), (int, float))]
        if not rows:
            continue
        best = max(rows, key=lambda a: a["speedup_best"])
        d = spec.get("definition", spec)
        setting = f"{best['corrector']}, {best['n_train']} traj., noise {best['noise']:g}"
        seeds = [r.get("speedup_best") for r in ode.get("rows", []) if r.get("case") == case
                 and (r.get("corrector"), r.get("n_train"), r.get("noise"))
                 == (best["corrector"], best["n_train"], best["noise"])]
        every_seed = bool(seeds) and all(isinstance(v, (int, float)) and v > 1 for v in seeds)
        pays = "**yes**" if best["speedup_best"] > 1 and every_seed else "no"
        lines.append(f"| {case} | {d.get('method', '?')} h={d.get('step', '?')} | {setting} | "
                     f"{_x(best.get('speedup_same'), best.get('speedup_same_kind'), best.get('speedup_same_std'))} | "
                     f"{_x(best['speedup_best'], best.get('speedup_best_kind'), best.get('speedup_best_std'))} | "
                     f"{pays} |")
    return lines


def _pde_rows(pde: dict) -> list[str]:
    """The PDE benchmark's closest row to its 4x-grid target."""
    row = pde.get("verdicts", {}).get("grid4x", {}).get("closest_row")
    if not row:
        return []
    g = row.get("grid4x", {})
    reached = "reached" if g.get("accuracy_met") else "not reached"
    return [f"| {row['problem']} | coarse spectral grid | {row['corrector']}, {row['n_train']} traj., "
            f"noise {row['noise']:g}: nRMSE {row['corrected_nrmse']:.3g} | | "
            f"{_x(g.get('time_ratio'))} against {g.get('label', 'a 4× finer grid')} "
            f"(nRMSE {g.get('nrmse', float('nan')):.3g}; accuracy {reached}) | no |"]


#: the verdict table's rows: results file -> the function that reads its suite's keys
VERDICT_ROWS = {"ode": _ode_rows, "pde": _pde_rows, "kolmogorov": _kolmogorov_rows}


def verdict_text() -> str:
    """The "when does a corrector pay?" table: one or more rows per suite of :data:`VERDICT_ROWS`,
    then the summary line."""
    if not (RESULTS / "ode.json").exists():
        return "_No committed result yet: run `attsolver bench ode` to produce `benchmarks/results/ode.json`._"
    ode = record("ode")
    lines = [
        "Speed-up = wall time of the classical solver at the corrected solver's accuracy ÷ wall time of the "
        "corrected solver (> 1× pays). Per problem, the corrected configuration (corrector, training "
        "trajectories, noise) with the best speed-up against the **best classical solver** (the same method at "
        "any smaller step, RK4 at any step, dopri5 at any tolerance; for the PDEs the classical solver on finer "
        "grids); mean ± std over seeds, for Kolmogorov flow the bootstrap 5–95 % interval over initial conditions. "
        "It pays only when **every seed** of that configuration is above 1× (the best of many configurations "
        "is a selected maximum; its seeds are the check). "
        "Quoted by `benchmarks/update_readme.py` from [`ode.json`](benchmarks/results/ode.json), "
        "[`pde.json`](benchmarks/results/pde.json) and [`kolmogorov.json`](benchmarks/results/kolmogorov.json).",
        "",
        "| problem | coarse solver | best corrected configuration | vs the same method refined | "
        "vs the best classical solver | pays? |",
        "|---|---|---|---:|---:|---|",
    ]
    for name, rows_of in VERDICT_ROWS.items():
        if (RESULTS / f"{name}.json").exists():
            lines += rows_of(record(name))
    rows = lines[4:]
    wins = [ln.split(" | ")[0].lstrip("| ") for ln in rows if "**yes**" in ln]
    losses = [ln.split(" | ")[0].lstrip("| ") for ln in rows if "**yes**" not in ln]
    if wins:
        summary = (f"**A corrector pays in {len(wins)} of {len(rows)} problems ({', '.join(wins)}), and loses to the "
                   f"best classical solver in the others ({', '.join(losses)}).** Read the margins and spreads "
                   "before relying on a win; `attsolver compare` measures your own problem the same way.")
    else:
        summary = ("**In these benchmarks no corrector beats the best classical solver at equal accuracy.** "
                   "Against its own method refined (the comparison the NeurVec paper makes) a corrector can win "
                   "by a large factor; the best classical solver is a different step or method, cheaper still.")
    same = [a for a in ode.get("aggregates", []) if isinstance(a.get("speedup_same"), (int, float))]
    if same:
        top = max(same, key=lambda a: a["speedup_same"])
        summary += (f" Against its own method refined (the comparison the NeurVec paper makes) the largest "
                    f"speed-up is {_x(top['speedup_same'], top.get('speedup_same_kind'), top.get('speedup_same_std'))} "
                    f"({top['case']}, {top['corrector']}, {top['n_train']} traj., noise {top['noise']:g}), "
                    f"where that configuration is at {_x(top.get('speedup_best'), top.get('speedup_best_kind'))} "
                    "against the best classical solver.")
    lines += ["", summary]
    return "\n".join(lines)


def _sections(body: str, wanted: list[str]) -> str:
    """The ``## Heading`` sections of ``body`` whose heading starts with a wanted title."""
    parts = re.split(r"(?m)^(?=## )", body)
    keep = [p.strip() for p in parts if any(p.startswith(f"## {w}") for w in wanted)]
    return "\n\n".join(keep)


def block_text(name: str) -> str:
    filename, wanted = f"{name}.md", BLOCKS[name]
    path = RESULTS / filename
    if not path.exists():
        return f"_No committed result yet: run the benchmark to produce `benchmarks/results/{filename}`._"
    lines = path.read_text().strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    lead = f"Quoted from [`benchmarks/results/{filename}`](benchmarks/results/{filename})"
    rec = record(name)
    flags = [w for w, on in (("incomplete", not rec["complete"]), ("`--quick`", rec["quick"])) if on]
    if flags:  # a partial run is never quoted as if it were the benchmark
        lead += f" — **not the full benchmark ({', '.join(flags)}): `{rec['command']}`**"
    if wanted:
        body = _sections(body, wanted)
        lead += f" (sections: {', '.join(wanted)}; the file has the full tables and plots)"
    # links relative to the results folder must stay valid from the repository root
    body = re.sub(r"\]\((?![a-z]+:|/|#)([^)]+)\)", rf"](benchmarks/results/{Path(filename).parent.as_posix()}/\1)".replace("/./", "/"), body)
    # demote headings so they nest under the README's "### <benchmark>" headings
    body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", body, flags=re.M)
    return f"{lead}:\n\n{body}"


#: the committed `attsolver compare` runs on user-defined problems (examples/compare_examples.sh)
USER_EXAMPLES = (("forced Duffing oscillator (`examples/duffing.py`)", "compare_duffing/duffing.json"),
                 ("Allen–Cahn, a user `SemilinearPDE` (`examples/allen_cahn.py`)", "compare_allen_cahn/allen_cahn.json"))


def user_verdict_text() -> str:
    """The verdict lines `attsolver compare` printed for the user-defined example problems."""
    lines = []
    for label, rel in USER_EXAMPLES:
        path = RESULTS / rel
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        lines += [f"{label}, from [`{rel}`](benchmarks/results/{rel}) (made by "
                  f"`{result.get('setting', {}).get('command', 'examples/compare_examples.sh')}`):", "",
                  "```text", result["verdict"]["line"], "```", ""]
        v = result["verdict"]
        if isinstance(v.get("error_ratio_vs_coarse"), (int, float)) and isinstance(v.get("time_ratio_vs_coarse"),
                                                                                   (int, float)):
            lines[-1:-1] = [f"(corrected / uncorrected: error {v['error_ratio_vs_coarse']:.3g}×, "
                            f"wall time {v['time_ratio_vs_coarse']:.3g}×)"]
    return "\n".join(lines).strip() or "_No committed example yet: run `bash examples/compare_examples.sh`._"


def render(readme: str) -> str:
    for name in COMPUTED:
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- {name}:begin --> / <!-- {name}:end --> markers")
        text = {"verdict": verdict_text, "user_verdict": user_verdict_text}[name]()
        readme = pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme)
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
