"""One table of the learned-interpolation runs of the Kolmogorov suite, per regime.

Reads the ``kolmogorov.json`` of each run given (``attsolver bench kolmogorov --kinds li ...``,
all of one regime: Re = 500 on a 32² base or ``--regime re1000`` on 64²) and writes, per run,
the learned interpolation's build (CNN channels and layers, weights per stage or per step,
epochs, or the early stop on validation t95, training data), its t95, its equivalent FD grid in halvings over the base grid
(bootstrap 5–95 %), its cost X in FD base steps, its speed-up against the FD ladder at equal t95
for batches of 1, 16 and 64 (bootstrap 5–95 %), the r^h / X accounting at batch 16, its
blow-ups by t = 20, its equivalent spectral grid and speed-up against the spectral ladder at
batches of 1, 16 and 64 and its training seconds, with the command that made the run and the
machine's load; under the table, the yardstick of the first run: the Galerkin truncation of the
base grid (spectral at 1.5 n) placed on its FD ladder (:func:`galerkin_line`).  Every figure is
read from the JSON files, none typed by hand.

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_li/summary.md \\
        benchmarks/results/kolmogorov_li/stage_h16l3_full/kolmogorov.json \\
        benchmarks/results/kolmogorov_li_data32/kolmogorov.json benchmarks/results/kolmogorov_li/step_*/kolmogorov.json \\
        benchmarks/results/kolmogorov.json   # the page lists its runs in the order given

(``stage_h16l3_full`` is the full suite's earlier run, whose default learned interpolation was the
per-stage 16-channel CNN; ``benchmarks/results/kolmogorov.json`` is the full suite since the
early-stopping round, whose default is the linear map trained until its validation t95 stops
improving.)
    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_li/summary_re1000.md \\
        benchmarks/results/kolmogorov_re1000/kolmogorov.json \\
        benchmarks/results/kolmogorov_re1000_li_step{,_e12,_e24,_e48,_e96}/kolmogorov.json

The Re = 1000 levers with 16 training trajectories and early stopping on validation seed 13800
(the first row: the earlier 8-trajectory, 96-epoch map, its epoch count read off the test set):

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_re1000_levers/summary.md \\
        benchmarks/results/kolmogorov_re1000_li_step_e96/kolmogorov.json \\
        benchmarks/results/kolmogorov_re1000_levers/{l1_t16_es,h8l2_s4x3_t16_es,h8l2_s4x3_u16_t16_es}/kolmogorov.json \\
        benchmarks/results/kolmogorov_re1000_levers/{l1_t16_es,h8l2_s4x3_u16_t16_es,l1_t16_es_stage}_n16/kolmogorov.json \\
        benchmarks/results/kolmogorov_re1000_levers/{l1_t16_es,h8l2_s4x3_u16_t16_es}_n16_steps/kolmogorov.json \\
        "benchmarks/results/kolmogorov_re1000_levers/l1_t16_es_n16_steps_fasthost/kolmogorov.json::$N" \\
        "benchmarks/results/kolmogorov_re1000_levers/h8l2_s4x3_u16_t16_es_n16_steps_fasthost/kolmogorov.json::$N" \\
        benchmarks/results/kolmogorov_re1000_levers/h8l4_t16_es_n16_steps/kolmogorov.json \\
        "benchmarks/results/kolmogorov_re1000_levers/h8l4_t16_es_n16_steps_alone/kolmogorov.json::re-timed alone from the cached model (load 1.0)" \\
        benchmarks/results/kolmogorov_re1000_levers/{h16l4_e40,h32l4_e32}_t16_es_n16_steps/kolmogorov.json \\
        "benchmarks/results/kolmogorov_re1000_levers/h16l4_e40_t16_es_n16_steps_alone/kolmogorov.json::re-timed alone from the cached model (load 1.0)"

(the two ``_n16`` runs after the first four: the same cached models re-scored on 16 test initial
conditions, ``--n-test 16``; runs that differ only in their test-set size share a table, each row
naming its size; then the linear map with its weights chosen in every Runge–Kutta stage; the last:
the linear map's and the 16-interval CNN's 16-IC runs again with each ladder at its largest accurate
step, ``--step-scale``'s default, their build cells naming the steps; the two ``_fasthost`` rows: those two
runs again after the learned host's cost work, ``N="the host reads its stencils from one wrapped copy
(58cea3c)"``: a ``PATH::NOTE`` argument ends its row's build cell with the note; the last row: an
8-channel 4-layer CNN, the depth lever of the Re = 500 capacity table, on the same protocol, trained
beside another job, then re-timed alone from its cached model; after it, the width lever: 16 and 32
channels × 4 layers, trained side by side with epoch caps of 40 and 32; the last row: the
16-channel build re-timed alone from its cached model.)

The Re = 1000 builds chosen on the validation seed, scored on a fresh test set (test seed 91000,
16 initial conditions; the 8-channel build, then the 32-channel one, the best validation t95, then
the linear map, the best payer on the comparison set, retrained from its seeds):

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_re1000_fresh/summary.md \\
        benchmarks/results/kolmogorov_re1000_fresh/{h8l4,h32l4_e32,l1}_t16_es_n16_steps/kolmogorov.json \\
        benchmarks/results/kolmogorov_re1000_fresh/{h8l4,l1,h16l4}_t64_es_n16_steps/kolmogorov.json

(the last three rows: the data lever, the 8-channel build and the linear map trained on 64
trajectories × 2 time units instead of 16, epoch cap 16 with the window at 8 intervals from
epoch 4, ``--li-train 64 --li-epochs 16 --li-ramp 6``, trained side by side; then the 16-channel
build on the same data, trained beside the reference check of ``bench kolmogorov_reference`` and
timed alone.)

The Re = 500 fresh test set's table (test seed 91000: the runs' test set must be one, the script refuses a mix):

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_li_fresh_levers/summary.md \\
        benchmarks/results/kolmogorov_li_fresh/kolmogorov.json benchmarks/results/kolmogorov_li_fresh_es_r5/kolmogorov.json \\
        benchmarks/results/kolmogorov_li_fresh_es/kolmogorov.json \\
        benchmarks/results/kolmogorov_li_fresh_levers/{stage_l1,step_l1_c4,step_l1_s4x3,step_l1_s4x3c4,step_h8l2_s4x3}/kolmogorov.json

Depth, data and the training loss on the same fresh test set (the first row: the README row):

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_li_capacity/summary.md \\
        benchmarks/results/kolmogorov_li_fresh_es_fasthost/kolmogorov.json \\
        benchmarks/results/kolmogorov_li_capacity/{l1_corr,h4l4,h4l6,h8l4,h16l4,h16l6,h16l4_t128,h32l4,h32l6,h32l6_e40}/kolmogorov.json

The README row's model re-timed: its run, the same architecture trained on the correlation loss,
and three more runs of the README row's command with ``--rounds 5``, one after another, alone:

    python benchmarks/kolmogorov_li_summary.py --out benchmarks/results/kolmogorov_li_repeat/summary.md \\
        benchmarks/results/kolmogorov_li_fresh_es_fasthost/kolmogorov.json \\
        benchmarks/results/kolmogorov_li_capacity/l1_corr/kolmogorov.json \\
        "benchmarks/results/kolmogorov_li_repeat/rep1/kolmogorov.json::repeat 1" \\
        "benchmarks/results/kolmogorov_li_repeat/rep2/kolmogorov.json::repeat 2" \\
        "benchmarks/results/kolmogorov_li_repeat/rep3/kolmogorov.json::repeat 3"
"""

from __future__ import annotations

import argparse
import json
import sys
from math import log2
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: attsolver
from attsolver._io import atomic_write_text  # noqa: E402
from attsolver.evaluate.ladder import Rung, place_on_ladder  # noqa: E402

LI = "fd-32+learned-interp"  # the Re = 500 contender; :func:`li_name` gives any run's


def li_name(r: dict[str, Any]) -> str:
    """The learned interpolation's contender name in run ``r`` (on its base grid)."""
    return f"fd-{r['setup']['coarse_n']}+learned-interp"


def _build(r: dict[str, Any]) -> str:
    s, tr = r["setup"], r["training"][li_name(r)]
    per = s.get("li_weights_per", "stage")
    layers = s.get("li_layers", 3)
    cnn = "1 layer, linear 3×3" if layers == 1 else f"{s.get('li_hidden', 16)} ch × {layers} layers"
    v = tr.get("validation")
    epochs = (f"early stop on validation t95 (best {v['best_score']:.2f}): best epoch {v['best_epoch']} of "
              f"{tr['epochs_run']} run (cap "
              f"{tr['epochs']}, patience {v['patience']})" if v else f"{tr['epochs']} epochs")
    if tr.get("diverged"):  # recorded since training keeps its best weights when a rollout blows up
        epochs += f"; training stopped in epoch {tr['diverged']['epoch']} by a non-finite rollout"
    stencil = s.get("li_stencil", "4x1")
    if (stencil, s.get("li_base", "centred2")) != ("4x1", "centred2"):  # recorded since --li-stencil
        cnn += f", stencil {stencil} from {s['li_base']}"
    sc = s.get("step_scale") or {}
    steps = ("" if all(v == 1 for v in sc.values()) else
             f"; steps: FD and learned {sc['fd']:g}×, spectral {sc['spectral']:g}× the Courant-0.5 step")
    loss = "" if tr.get("loss", "mse") == "mse" else f", loss {tr['loss']}"  # recorded since --li-loss
    return (f"{cnn} ({tr['parameters']} params), "
            f"weights per {per}, {epochs}{loss}, unroll ≤ {tr.get('unroll', 8)} intervals, "
            f"{tr['trajectories']} traj × {tr['t_train']:g}{steps}")


def _mark(e: dict[str, Any]) -> str:
    """≥ for a lower bound (beyond the finest measured rung), ≤ below the coarsest rung."""
    return {"above": "≥", "between": "≥", "below": "≤"}.get(e["how"], "")


def _speedup(e: dict[str, Any]) -> str:
    return f"{_mark(e)}{e['speedup']:.2f}× [{e['p05']:.2f}, {e['p95']:.2f}]"


def row(path: Path, n_test: bool = False, note: str = "") -> tuple[str, str]:
    """The table row of one run, and its provenance line; ``n_test``: the build cell ends with the
    number of test initial conditions the run was scored on (for a table of several); ``note``: what
    else tells the row apart (e.g. the code a re-timed run ran), at the end of the build cell."""
    r = json.loads(path.read_text())
    li, base = li_name(r), r["setup"]["coarse_n"]
    ea = r["equal_accuracy"]["full"]
    e16, s16 = ea["16"][li]["fd"], ea["16"][li]["spectral"]
    x16 = r["cost_multiples"]["16"][li]
    h = e16["halvings"]
    rh = e16["speedup"] * x16
    rate = rh ** (1 / h) if h > 1e-9 else float("nan")
    lo, hi = (max(n, 1e-9) for n in e16["n_5_95"])
    b = r["blowups"][li]
    cells = [_build(r) + (f"; scored on {r['setup']['n_test']} test ICs" if n_test else "") + (f"; {note}" if note else ""),
             f"{r['scores'][li]['t95']['full']:.2f}",
             f"{e16['n']:.0f}² [{lo:.0f}, {hi:.0f}]; {h:.2f} [{log2(lo / base):.2f}, {log2(hi / base):.2f}]",
             " / ".join(f"{r['cost_multiples'][k][li]:.1f}" for k in ("1", "16", "64")),
             _speedup(ea["1"][li]["fd"]), _speedup(e16), _speedup(ea["64"][li]["fd"]),
             f"{rate:.2f}^{h:.2f} / {x16:.2f} = {rh:.2f} / {x16:.2f} = {e16['speedup']:.2f}",
             f"{b['blown_up']}/{b['n']} by t = {b['t_long']:g}" + (
                 f" (guarded: {b['guarded']['blown_up']}/{b['n']}, {b['guarded']['flagged']} fell back)"
                 if b.get("guarded") else ""),
             f"{_mark(s16)}{s16['n']:.0f}², {_mark(s16)}{s16['halvings']:.2f} h; "
             + " / ".join(_speedup(ea[k][li]["spectral"]) for k in ("1", "16", "64")),
             f"{r['training'][li]['seconds']:.0f}"]
    m = r["machine"]
    prov = (f"- `{r['command']}` ({r['date']}; load {m['load_start'][0]:.1f} at the start, "
            f"{m['load_end'][0]:.1f} at the end; `{path}`)")
    return "| " + " | ".join(cells) + " |", prov


_DEFAULTS = {32: "Commands are quoted as they ran; the suite's default learned interpolation changed with them "
                 "(before the early-stopping round: `--li-weights-per stage --li-hidden 16 --li-layers 3 --li-train 16 "
                 "--li-epochs 12 --li-patience 0`; since: the linear 3×3 map, weights per step, 32 trajectories, early "
                 "stopping on validation t95). ",
             64: "Commands are quoted as they ran; at Re = 1000 the suite's default build is still `--li-weights-per "
                 "stage --li-hidden 16 --li-layers 3 --li-train 8 --li-epochs 4 --li-patience 0`. "}


def galerkin_line(path: Path) -> str:
    """The yardstick of one run: the 2/3-rule spectral solver at 1.5 n keeps every mode of the
    n² grid below its Nyquist mode, alias-free (the Galerkin truncation of the coarse grid);
    its t95 placed on the run's FD ladder (:func:`attsolver.evaluate.ladder.place_on_ladder`;
    the grid depends on the t95 values only, not on the costs).  Empty when the run has no such rung."""
    r = json.loads(path.read_text())
    n = r["setup"]["coarse_n"]
    name = f"spectral-{3 * n // 2}"
    if name not in r["scores"]:
        return ""
    cost = r["timing"]["per_time_per_trajectory"]["16"]
    ladder = [Rung(int(k.split("-")[1]), r["scores"][k]["t95"]["full"], bool(r["scores"][k]["censored"]["full"]),
                   cost[k]) for k in r["ladders"]["fd"]]
    t95, cens = r["scores"][name]["t95"]["full"], bool(r["scores"][name]["censored"]["full"])
    p = place_on_ladder(ladder, t95, cens)
    return (f"Yardstick: the Galerkin truncation of the {n}² grid ({name}, the 2/3 rule at 1.5 n: every mode of "
            f"{n}² below its Nyquist mode, alias-free) has t95 {t95:.2f}, {_mark(p)}{p['n']:.0f}² on the FD ladder, "
            f"{_mark(p)}{log2(p['n'] / n):.2f} halvings (from `{path}`).")


def _header(runs: list[dict[str, Any]]) -> list[str]:
    """The title, the protocol paragraph and the table head, from the runs' own setup; runs of
    different regimes (base grid, viscosity, test set, horizon) are refused."""
    keys = {(r["setup"]["coarse_n"], r["setup"]["physics"]["nu"], r["setup"]["t_eval"],
             r["ladders"]["fd"][0], r["ladders"]["fd"][-1], r["setup"].get("test_seed", 13_000)) for r in runs}
    if len(keys) != 1:
        raise SystemExit(f"runs: pass the runs of one regime and test set per summary (got base grid, nu, "
                         f"horizon, FD ladder, test seed {sorted(keys)}); write one summary per regime")
    n, nu, t_eval, lo, hi, seed = keys.pop()
    counts = sorted({r["setup"]["n_test"] for r in runs})
    n_test = (f"{counts[0]}" if len(counts) == 1 else
              f"{' or '.join(map(str, counts))} (the row's build says which; one seed draws them in order, so a "
              f"larger set holds the smaller one)")
    g = f"{n}²"
    return [f"# Learned interpolation at Re = {1 / nu:.0f}: the levers, measured", "",
            f"Each row is one run of the Kolmogorov suite (fixed protocol: {n_test} held-out initial conditions"
            + ("" if seed == 13_000 else f" (test seed {seed})") + ", "
            f"horizon {t_eval:g}, FD ladder {lo[3:]}–{hi[3:]} re-timed in the same run, CPU seconds of one thread, "
            f"interleaved rounds), full {g} band; intervals are bootstrap 5–95 % over the initial conditions. X: the "
            f"learned step's cost in FD {g} steps (batches 1 / 16 / 64). Speed-up: against the FD ladder at equal t95, "
            f"per unit simulated time per trajectory. r^h / X at batch 16: r the FD ladder's cost ratio per halving "
            f"from {g} to the equivalent grid, h the halvings. Spectral: the equivalent grid on the spectral ladder "
            f"(≤: below its coarsest rung, ≥: beyond its finest measured one), its halvings (at batch 16) and the "
            f"speed-up against it at batches 1, 16 and 64. Training s: the fit's wall seconds (one thread, the "
            f"machine's load in the run's line below). " + _DEFAULTS.get(n, "")
            + "The build column, not the command's defaults, says what ran. Written by "
            f"`benchmarks/kolmogorov_li_summary.py` from the JSON files below.", "",
            "| build | t95 | equivalent FD grid; halvings | X (1 / 16 / 64) | speed-up batch 1 | speed-up batch 16 "
            "| speed-up batch 64 | r^h / X (batch 16) | blow-ups | vs spectral ladder: grid, halvings; speed-up batch "
            "1 / 16 / 64 | training s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="kolmogorov.json files of runs with the learned interpolation, each "
                    "optionally PATH::NOTE (the note ends the row's build cell)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    paths, notes = zip(*((Path(a.split("::", 1)[0]), a.split("::", 1)[1] if "::" in a else "") for a in args.runs))
    args.runs = list(paths)
    runs = [json.loads(p.read_text()) for p in args.runs]
    mixed = len({r["setup"]["n_test"] for r in runs}) > 1  # then each row names its test-set size
    rows = [row(p, n_test=mixed, note=note) for p, note in zip(args.runs, notes)]
    lines = _header(runs)
    lines += [r for r, _ in rows]
    yard = galerkin_line(args.runs[0])
    lines += (["", yard] if yard else []) + ["", "Runs:", ""] + [p for _, p in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
