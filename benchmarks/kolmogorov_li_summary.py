"""One table of the learned-interpolation runs of the Kolmogorov suite (Re = 500).

Reads the ``kolmogorov.json`` of each run given (``attsolver bench kolmogorov --kinds li ...``)
and writes, per run, the learned interpolation's build (CNN channels and layers, weights per
stage or per step, epochs, training data), its t95, its equivalent FD grid in halvings over 32²
(bootstrap 5–95 %), its cost X in FD 32² steps, its speed-up against the FD ladder at equal t95
for batches of 1, 16 and 64 (bootstrap 5–95 %), the r^h / X accounting at batch 16 and its
blow-ups by t = 20, with the command that made the run and the machine's load.  Every figure is
read from the JSON files, none typed by hand.

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_li/summary.md \\
        benchmarks/results/kolmogorov.json benchmarks/results/kolmogorov_li/*/kolmogorov.json
"""

from __future__ import annotations

import argparse
import json
from math import log2
from pathlib import Path
from typing import Any

LI = "fd-32+learned-interp"


def _build(r: dict[str, Any]) -> str:
    s, tr = r["setup"], r["training"][LI]
    per = s.get("li_weights_per", "stage")
    layers = s.get("li_layers", 3)
    cnn = "1 layer, linear 3×3" if layers == 1 else f"{s.get('li_hidden', 16)} ch × {layers} layers"
    return (f"{cnn} ({tr['parameters']} params), "
            f"weights per {per}, {tr['epochs']} epochs, unroll ≤ {tr.get('unroll', 8)} intervals, "
            f"{tr['trajectories']} traj × {tr['t_train']:g}")


def _speedup(e: dict[str, Any]) -> str:
    mark = "≥" if e["how"] == "above" else ""
    return f"{mark}{e['speedup']:.2f}× [{e['p05']:.2f}, {e['p95']:.2f}]"


def row(path: Path) -> tuple[str, str]:
    """The table row of one run, and its provenance line."""
    r = json.loads(path.read_text())
    ea = r["equal_accuracy"]["full"]
    e16 = ea["16"][LI]["fd"]
    x16 = r["cost_multiples"]["16"][LI]
    h = e16["halvings"]
    rh = e16["speedup"] * x16
    rate = rh ** (1 / h) if h > 1e-9 else float("nan")
    lo, hi = (max(n, 1e-9) for n in e16["n_5_95"])
    b = r["blowups"][LI]
    cells = [_build(r), f"{r['scores'][LI]['t95']['full']:.2f}",
             f"{e16['n']:.0f}² [{lo:.0f}, {hi:.0f}]; {h:.2f} [{log2(lo / 32):.2f}, {log2(hi / 32):.2f}]",
             " / ".join(f"{r['cost_multiples'][k][LI]:.1f}" for k in ("1", "16", "64")),
             _speedup(ea["1"][LI]["fd"]), _speedup(e16), _speedup(ea["64"][LI]["fd"]),
             f"{rate:.2f}^{h:.2f} / {x16:.2f} = {rh:.2f} / {x16:.2f} = {e16['speedup']:.2f}",
             f"{b['blown_up']}/{b['n']} by t = {b['t_long']:g}"]
    m = r["machine"]
    prov = (f"- `{r['command']}` ({r['date']}; load {m['load_start'][0]:.1f} at the start, "
            f"{m['load_end'][0]:.1f} at the end; `{path}`)")
    return "| " + " | ".join(cells) + " |", prov


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="kolmogorov.json files of runs with the learned interpolation")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = [row(p) for p in args.runs]
    lines = ["# Learned interpolation at Re = 500: the levers, measured", "",
             "Each row is one run of the Kolmogorov suite (fixed protocol: 16 held-out initial conditions, horizon 8, "
             "FD ladder 32–128 re-timed in the same run, CPU seconds of one thread, interleaved rounds), full 32² "
             "band; intervals are bootstrap 5–95 % over the initial conditions. X: the learned step's cost in FD 32² "
             "steps (batches 1 / 16 / 64). Speed-up: against the FD ladder at equal t95, per unit simulated time "
             "per trajectory. r^h / X at batch 16: r the FD ladder's cost ratio per halving from 32² to the "
             "equivalent grid, h the halvings. Written by `benchmarks/kolmogorov_li_summary.py` from the JSON "
             "files below.", "",
             "| build | t95 | equivalent FD grid; halvings | X (1 / 16 / 64) | speed-up batch 1 | speed-up batch 16 "
             "| speed-up batch 64 | r^h / X (batch 16) | blow-ups |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [r for r, _ in rows] + ["", "Runs:", ""] + [p for _, p in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
