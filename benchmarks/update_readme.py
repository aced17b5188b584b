"""Copy committed benchmark tables between ``<!-- NAME:begin/end -->`` markers: the verdict
into README.md, the long result tables into the documentation site's docs/results.md.

    python benchmarks/update_readme.py          # rewrite README.md and docs/results.md
    python benchmarks/update_readme.py --check  # exit 1 if either is out of date

Neither page carries hand-typed figures: every number in a marked block comes from a file
under benchmarks/results/.  What is generic is read from the common record every suite writes
(``benchmarks/_suite.py``: command, date, completeness, quick flag): a quote from an incomplete
or a ``--quick`` run says so.  Only the verdict table reads suite-specific keys, one function per
suite (:data:`VERDICT_ROWS`).
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
#: body.  These solver-benchmark tables are quoted on RESULTS_PAGE (the README's first screens keep
#: the verdict and link there); every results file is shown in full on the site's benchmark pages.
BLOCKS = {"speed": None, "ode": ["Targets"], "pde": ["Targets", "Reading the numbers"], "neural_ode": ["Headline"]}
#: blocks computed from a results JSON rather than copied from its Markdown; README.md carries them
COMPUTED = ("verdict", "user_verdict")
#: the documentation page that carries the BLOCKS; its links are relative to docs/
RESULTS_PAGE = ROOT / "docs" / "results.md"


def _x(value, kind: str | None = None, std=None) -> str:
    """A speed-up as the benchmark tables print it (``≤`` an upper bound, ``≳`` extrapolated,
    ``~`` seeds of different kinds), with its spread over seeds when given."""
    if value is None or not isinstance(value, (int, float)) or value != value:
        return "n/a"
    marks = {"cheapest": "≤", "extrapolated": "≳", "below": "≤", "above": "≥", "between": "≥"}
    mark = marks.get(kind or "", "~" if (kind or "").startswith("mixed") else "")
    ok = isinstance(std, (int, float)) and std == std and std > 0
    spread = (f" ± {std:.2g}" if std < 100 else f" ± {std:.0f}") if ok else ""
    return f"{mark}{value:.3g}{spread}×"


def _kolmogorov_rows(k: dict) -> list[str]:
    """The 2-D Kolmogorov-flow benchmark's best corrected solver (bootstrap 5-95 % in brackets);
    its ladders are the finite-difference (`fd`) and the spectral solver on finer grids.  Schema 2
    (``equal_accuracy``): the full 32^2 band, costs of batches of 16, the equivalent FD grid."""
    ea = k.get("equal_accuracy", {}).get("full", {}).get("16")
    table = ea if ea is not None else k.get("speedups", {})
    rows = []
    for name, ladders in table.items():
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
    trajectories = setup.get("li_train") if "learned-interp" in name else setup.get("n_train")
    config = f"{name}, {trajectories if trajectories is not None else '?'} traj."
    if ea is not None:
        fd = table[name]["fd"]
        mark = {"between": "≥", "above": "≥", "below": "≤"}.get(fd.get("how"), "")
        config += f"; ≈ {mark}{fd['n']:.0f}² FD ({mark}{fd['halvings']:.2f} halvings); batches of 16"
    return [f"| kolmogorov (2-D) | {n}² grid | {config} | {band(same)} | "
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


def block_text(name: str, up: str = "") -> str:
    """Block ``name`` quoted from ``<name>.md``; ``up`` ("../" from docs/) prefixes its links so
    that they reach benchmarks/results/ from the page that carries the block."""
    filename, wanted = f"{name}.md", BLOCKS[name]
    path = RESULTS / filename
    if not path.exists():
        return f"_No committed result yet: run the benchmark to produce `benchmarks/results/{filename}`._"
    lines = path.read_text().strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    lead = f"Quoted from [`benchmarks/results/{filename}`]({up}benchmarks/results/{filename})"
    rec = record(name)
    flags = [w for w, on in (("incomplete", not rec["complete"]), ("`--quick`", rec["quick"])) if on]
    if flags:  # a partial run is never quoted as if it were the benchmark
        lead += f" — **not the full benchmark ({', '.join(flags)}): `{rec['command']}`**"
    if wanted:
        body = _sections(body, wanted)
        lead += f" (sections: {', '.join(wanted)}; the file has the full tables and plots)"
    # links relative to the results folder must stay valid from the page that quotes them
    body = re.sub(r"\]\((?![a-z]+:|/|#)([^)]+)\)", rf"]({up}benchmarks/results/{Path(filename).parent.as_posix()}/\1)".replace("/./", "/"), body)
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


def _fill(text: str, page: str, blocks: dict) -> str:
    """``text`` with each block ``name -> make()`` written between its markers."""
    for name, make in blocks.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{page} has no <!-- {name}:begin --> / <!-- {name}:end --> markers")
        body = make()
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text


def render(readme: str) -> str:
    """README.md with its computed blocks (the verdicts) brought up to date."""
    return _fill(readme, "README.md", {"verdict": verdict_text, "user_verdict": user_verdict_text})


def render_results_page(page: str) -> str:
    """docs/results.md with its quoted result tables brought up to date."""
    return _fill(page, "docs/results.md", {name: (lambda n=name: block_text(n, up="../")) for name in BLOCKS})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    stale = []
    for path, make in ((ROOT / "README.md", render), (RESULTS_PAGE, render_results_page)):
        current = path.read_text()
        new = make(current)
        if new != current:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"{' and '.join(stale)} out of date with benchmarks/results: run python benchmarks/update_readme.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
