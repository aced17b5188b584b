"""Dense vs local correctors in the ODE suite: the issue-14 tables from the rows of a run of
``benchmarks/ode.py`` (its resumable log), side by side for the same (case, size, noise, seed).

* speed-up at equal accuracy against the same method refined and against the best classical
  solver (mean and range over seeds; the ODE suite's own definitions, read from its rows);
* the small-noisy-data comparison: each AttSolver's error over the NeurVec of the same form
  (dense or local) at noise 1e-2 and at most 16 trajectories, seed by seed.

    python benchmarks/ode_local_summary.py [--log benchmarks/results/ode_local/ode_progress.jsonl]
        [--out benchmarks/results/ode_local/summary.md]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

from attsolver._io import AppendLog, atomic_write_text

PAIRS = (("dense", "NeurVec", "Hypersolver", "AttSolver-add"),
         ("local", "LocalNeurVec", "LocalHypersolver", "LocalAttSolver"))


def load_rows(log: Path, cases: list[str]) -> list[dict]:
    rows = [r for r in AppendLog(log).records.values() if r.get("kind") == "row" and r["case"] in cases]
    local_cells = {(r["case"], r["n_train"], r["noise"], r["seed"]) for r in rows if r["corrector"].startswith("Local")}
    # only the (case, size, noise, seed) cells the local correctors ran in, so dense and local compare alike
    return [r for r in rows if (r["case"], r["n_train"], r["noise"], r["seed"]) in local_cells]


def _gm(values):
    v = [x for x in values if x is not None and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, v)) / len(v)) if v else None


def _f(x, d=3):
    return "—" if x is None else f"{x:.{d}g}"


def speedup_table(rows: list[dict]) -> list[str]:
    cells = defaultdict(list)
    for r in rows:
        cells[(r["case"], r["corrector"], r["n_train"], r["noise"])].append(r)
    lines = ["| case | corrector | n train | noise | seeds | error (mean) | speed-up vs same method (mean, min–max) | "
             "speed-up vs best classical (mean, min–max) | params |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    order = [c for _, *names in PAIRS for c in names]
    for key in sorted(cells, key=lambda k: (k[0], order.index(k[1]) if k[1] in order else 99, k[2], k[3])):
        rs = cells[key]
        same = [r["speedup_same"] for r in rs if r["speedup_same"] is not None]
        best = [r["speedup_best"] for r in rs if r["speedup_best"] is not None]
        err = sum(r["err_match"] for r in rs) / len(rs)

        def rng(v):
            return f"{sum(v) / len(v):.3g}× ({min(v):.3g}–{max(v):.3g})" if v else "—"

        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]:g} | {len(rs)} | {err:.3g} | {rng(same)} | "
                     f"{rng(best)} | {rs[0]['n_params']:,} |")
    return lines


def best_table(rows: list[dict]) -> list[str]:
    """Per case and corrector: the best cell (by mean speed-up vs best classical)."""
    cells = defaultdict(list)
    for r in rows:
        cells[(r["case"], r["corrector"], r["n_train"], r["noise"])].append(r)
    best: dict = {}
    for (case, corr, n, noise), rs in cells.items():
        same = [r["speedup_same"] for r in rs if r["speedup_same"] is not None]
        bst = [r["speedup_best"] for r in rs if r["speedup_best"] is not None]
        if not bst:
            continue
        m_best = sum(bst) / len(bst)
        if (case, corr) not in best or m_best > best[(case, corr)][0]:
            best[(case, corr)] = (m_best, sum(same) / len(same) if same else None, n, noise,
                                  sum(r["err_match"] for r in rs) / len(rs))
    lines = ["| case | corrector | best cell (n, noise) | error | speed-up vs same method | speed-up vs best classical | "
             "targets (>= 10x same, > 1x best) |", "|---|---|---|---:|---:|---:|---|"]
    order = [c for _, *names in PAIRS for c in names]
    for (case, corr), (m_best, m_same, n, noise, err) in sorted(best.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]) if kv[0][1] in order else 99)):
        ok = (m_same is not None and m_same >= 10, m_best > 1)
        lines.append(f"| {case} | {corr} | ({n}, {noise:g}) | {err:.3g} | {_f(m_same)}× | {m_best:.3g}× | "
                     f"{'yes' if ok[0] else 'no'} / {'yes' if ok[1] else 'no'} |")
    return lines


def noisy_table(rows: list[dict]) -> list[str]:
    by = {(r["case"], r["corrector"], r["n_train"], r["noise"], r["seed"]): r for r in rows}
    lines = ["| case | form | n train | seeds | NeurVec error | AttSolver error | ratio (geo-mean over seeds) | "
             "AttSolver <= 0.7x NeurVec |", "|---|---|---:|---:|---:|---:|---:|---|"]
    cases = sorted({r["case"] for r in rows})
    for case in cases:
        for form, nv, _, att in PAIRS:
            for n in sorted({r["n_train"] for r in rows if r["n_train"] <= 16}):
                pairs = [(by[(case, nv, n, 0.01, s)], by[(case, att, n, 0.01, s)]) for s in range(100)
                         if (case, nv, n, 0.01, s) in by and (case, att, n, 0.01, s) in by]
                if not pairs:
                    continue
                ratio = _gm([a["err_match"] / b["err_match"] for b, a in pairs])
                e_nv = sum(b["err_match"] for b, _ in pairs) / len(pairs)
                e_att = sum(a["err_match"] for _, a in pairs) / len(pairs)
                lines.append(f"| {case} | {form} | {n} | {len(pairs)} | {e_nv:.3g} | {e_att:.3g} | {_f(ratio)} | "
                             f"{'yes' if ratio is not None and ratio <= 0.7 else 'no'} |")
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", default="benchmarks/results/ode_progress.jsonl")
    ap.add_argument("--cases", nargs="+", default=["lorenz96", "spring_chain"])
    ap.add_argument("--out", default="benchmarks/results/ode_local/summary.md")
    args = ap.parse_args(argv)
    rows = load_rows(Path(args.log), args.cases)
    grid = sorted({(r["case"], r["n_train"], r["noise"], r["seed"]) for r in rows})
    md = ["# ODE suite: dense vs local correctors (issue 14)", "",
          f"Produced by `python benchmarks/ode_local_summary.py {' '.join(argv)}` from the rows of "
          f"`{args.log}` ({len(rows)} rows).  Cells run: "
          + "; ".join(f"{c}: (size, noise) "
                      + ", ".join(f"({n:g}, {z:g})" for n, z in sorted({(g[1], g[2]) for g in grid if g[0] == c}))
                      + f", seeds {sorted({g[3] for g in grid if g[0] == c})}"
                      for c in args.cases) + ".  Dense rows are those of the same cells.",
          "", "Speed-ups are the ODE suite's: the wall time the classical solver needs for the corrected "
          "rollout's error (`err_match`), over the corrected rollout's (timed against the coarse step in the "
          "same rounds).  Local correctors run a float32 network on the float64 states (`mixed_precision`).",
          "", "## Best cell per corrector", "", *best_table(rows),
          "", "## Small noisy data: AttSolver vs NeurVec at noise 1e-2, <= 16 trajectories", "", *noisy_table(rows),
          "", "## Every cell", "", *speedup_table(rows), ""]
    text = "\n".join(md)
    atomic_write_text(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
