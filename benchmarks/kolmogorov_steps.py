"""Kolmogorov flow: the largest step at which each classical ladder keeps its accuracy (the
evidence behind ``attsolver bench kolmogorov --step-scale``).

A benchmark that runs its baselines at a step smaller than they need credits the learned solver
with speed it did not earn.  This suite re-solves the rungs of ``bench kolmogorov``'s two ladders
(finite differences: Arakawa + SSP-RK3; pseudo-spectral: ETDRK4) from the cached test set of a
run of that suite at multiples of its Courant-0.5 step ``dt_for(n)`` and reports each one's
time until the mean vorticity correlation falls below 0.95 (t95), on the full band of the base
grid and on ``|k| <= 10``, against scale 1.  A step the FD system's CFL check refuses (``dt``
above ``dx / max(|u| + |v|)`` of the initial field) is recorded as refused; a step that blows up
or loses accuracy shows as a t95 that falls.  With ``--li`` the same for a cached learned
interpolation (a spatial scheme trained at scale 1).

    attsolver bench kolmogorov_steps --regime re1000 --test CACHE/test_re1000_f_8_t8_f0.2_<key>.h5 \\
        --li CACHE/li_re1000_f_16x2_e48_h4l1_step_es4e1r12v8x4.pt --li-arch 4,1,step \\
        --out benchmarks/results/kolmogorov_steps/re1000

The test file must be one the suite wrote for the same regime (its viscosity is checked).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from attsolver.data import load_h5  # noqa: E402
from benchmarks import kolmogorov as kol  # noqa: E402
from benchmarks._suite import Run, parser, provenance_lines, write_report  # noqa: E402

SCHEMA = 1
SCALES = {"fd": [1.0, 1.25, 1.5, 1.65], "spectral": [1.0, 2.0, 3.0, 4.0]}
RUNGS = {"re500": {"fd": [32, 64, 128], "spectral": [32, 64, 96]},
         "re1000": {"fd": [64, 96, 128], "spectral": [64, 96, 128, 160]}}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _arch(text: str) -> tuple[int, int, str]:
    """``--li-arch``: ``"4,1,step"``."""
    parts = text.split(",")
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()) or parts[2] not in ("step", "stage"):
        raise argparse.ArgumentTypeError(f"{text!r}: give HIDDEN,LAYERS,PER with two whole numbers and step or stage "
                                         "(e.g. 4,1,step: the linear 3x3 map; 8,2,step: bench kolmogorov's "
                                         "--li-hidden 8 --li-layers 2)")
    return int(parts[0]), int(parts[1]), parts[2]


def parse_args(argv):
    ap = parser("kolmogorov_steps", __doc__.split("\n\n")[0], out="out/bench-kolmogorov-steps")
    ap.add_argument("--regime", default="re1000", choices=sorted(kol.REGIMES))
    ap.add_argument("--test", type=Path, required=True, help="a test-set .h5 that bench kolmogorov cached for the regime")
    ap.add_argument("--n-ic", type=int, default=None, help="use the first N initial conditions (default: all)")
    ap.add_argument("--fd", type=_ints, default=None, help="FD rungs (default: the regime's 3 from RUNGS)")
    ap.add_argument("--spectral", type=_ints, default=None, help="spectral rungs (default: the regime's from RUNGS)")
    ap.add_argument("--fd-scales", type=_floats, default=SCALES["fd"], help="multiples of dt_for(n) (default 1,1.25,1.5,1.65)")
    ap.add_argument("--spectral-scales", type=_floats, default=SCALES["spectral"], help="default 1,2,3,4")
    ap.add_argument("--li", type=Path, default=None, help="a cached learned interpolation's state dict (.pt)")
    ap.add_argument("--li-arch", type=_arch, default=(4, 1, "step"), metavar="HIDDEN,LAYERS,PER",
                    help="its build: CNN channels, layers, weights per step or stage (default 4,1,step)")
    args = ap.parse_args(argv)
    for name in ("fd_scales", "spectral_scales"):
        if not all(math.isfinite(s) and s > 0 for s in getattr(args, name)) or 1.0 not in getattr(args, name):
            ap.error(f"--{name.replace('_', '-')}: every scale must be finite and > 0, and 1 (the reference step) "
                     "must be among them, e.g. 1,1.25,1.5")
    if args.n_ic is not None and args.n_ic < 1:
        ap.error("--n-ic must be >= 1")
    return args


def _t95_at(c: dict[str, Any], models: dict[str, Any], ref: torch.Tensor, t: torch.Tensor,
            ref_c: torch.Tensor) -> dict[str, Any]:
    """Contender ``c`` (with its ``"step"``) rolled out as the suite rolls it out and scored; a step
    the FD system's CFL check refuses is recorded as refused (any other error is raised)."""
    t0 = time.perf_counter()
    try:
        pred = kol.predict(c, models, ref, t)
    except ValueError as e:
        if "CFL limit" not in str(e):
            raise
        return {"step": c["step"], "refused": str(e).split(";")[0]}
    s = kol.score(pred, ref_c, t.numpy(), [])
    return {"step": c["step"], "t95": dict(s["t95"]), "censored": dict(s["censored"]),
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    args = parse_args(argv)
    with kol.regime(args.regime):
        return run(args, argv)


def run(args, argv) -> int:
    r = Run("kolmogorov_steps", argv, schema=SCHEMA)
    data = load_h5(args.test)
    nu = data.system.get("params", {}).get("nu")
    if nu is None or not math.isclose(nu, kol.PHYSICS["nu"], rel_tol=1e-9):
        raise SystemExit(f"--test {args.test}: its viscosity is {nu}, not the {args.regime} regime's "
                         f"{kol.PHYSICS['nu']}: pass a test set bench kolmogorov cached for --regime {args.regime}")
    ref = data.y.to(kol.DTYPE)[: args.n_ic]
    t, frame = data.t, float(data.t[1] - data.t[0])
    ref_c = kol.spectral_restrict(ref, kol.COARSE_N)
    rungs = {"fd": args.fd or RUNGS[args.regime]["fd"], "spectral": args.spectral or RUNGS[args.regime]["spectral"]}
    scales = {"fd": args.fd_scales, "spectral": args.spectral_scales}
    contenders = {f"{base}-{n}": {"base": base, "n": n} for base, ns in rungs.items() for n in ns}
    models: dict[str, Any] = {}
    if args.li is not None:
        host = kol.build_learned_interpolation(*args.li_arch)
        host.interpolation.load_state_dict(torch.load(args.li, weights_only=True))
        name = f"fd-{kol.COARSE_N}+learned-interp"
        models[name] = host
        contenders[name] = {"base": "fd", "n": kol.COARSE_N, "model": name}
    rows: dict[str, dict[str, Any]] = {}
    for name, c in contenders.items():
        for sc in scales[c["base"]]:
            e = rows.setdefault(name, {})[f"{sc:g}"] = _t95_at({**c, "step": kol.step_for(c["n"], sc, frame)},
                                                             models, ref, t, ref_c)
            r.log(f"{name} x{sc:g}: {e}")
    report = r.report(setup={"regime": args.regime, "test": str(args.test), "n_ic": len(ref), "frame": frame,
                             "t_eval": float(t[-1]), "dt_coarse": kol.DT32, "coarse_n": kol.COARSE_N,
                             "li": None if args.li is None else str(args.li), "li_arch": list(args.li_arch)},
                      rows=rows, largest_unchanged=largest_unchanged(rows))
    write_report(args.out, "kolmogorov_steps", r.stamp(report, complete=True), to_markdown)
    r.log(f"wrote {Path(args.out) / 'kolmogorov_steps.md'}")
    return 0


def largest_unchanged(rows: dict[str, dict[str, Any]], tol: float = 0.02) -> dict[str, float | None]:
    """Per contender, the largest scale whose t95 (both bands) is within ``tol`` of scale 1's and
    every smaller scale's too (a refused or degraded step ends the run of scales)."""
    out: dict[str, float | None] = {}
    for name, by_scale in rows.items():
        base = by_scale["1"]
        best = None
        for sc in sorted(by_scale, key=float):
            e = by_scale[sc]
            if "refused" in e or any(abs(e["t95"][b] - base["t95"][b]) > tol for b in base["t95"]):
                break
            best = float(sc)
        out[name] = best
    return out


def to_markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    L = ["# Kolmogorov flow: the largest step each ladder takes at unchanged accuracy", ""]
    L += provenance_lines(r)
    scales = sorted({sc for row in r["rows"].values() for sc in row}, key=float)
    L += ["", f"Regime {s['regime']}: {s['n_ic']} test initial conditions of `{s['test']}`, horizon {s['t_eval']:g}, "
          f"frames every {s['frame']:g}. Each cell: t95 on the full {s['coarse_n']}² band / on |k| ≤ 10 (≥: censored "
          f"at the horizon) at that multiple of the Courant-0.5 step dt = {s['dt_coarse']} · {s['coarse_n']} / n, "
          "rounded down to a whole number of steps per frame; 'refused': the FD system's CFL check refused the step "
          "(above dx / max(|u| + |v|) of the initial field). Last column: the largest scale at which neither t95 "
          "moves by more than 0.02 from scale 1's.", "",
          "| contender | " + " | ".join(f"× {sc}" for sc in scales) + " | largest unchanged |",
          "|---|" + "---|" * (len(scales) + 1)]

    def cell(e):
        if e is None:
            return "–"
        if "refused" in e:
            return "refused"
        return " / ".join(("≥" if e["censored"][b] else "") + f"{e['t95'][b]:.2f}" for b in ("full", "k10"))
    for name, row in r["rows"].items():
        big = r["largest_unchanged"][name]
        L.append(f"| {name} | " + " | ".join(cell(row.get(sc)) for sc in scales) + f" | {'–' if big is None else f'{big:g}'} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
