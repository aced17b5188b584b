"""The relative loss's floor, measured on the OOD benchmark's calibration trajectories.

``fit(loss="relative")`` divides each sample's squared error by the uncorrected solver's on it
plus a floor, ``FLOOR_FRACTION`` times the median over the training samples
(:mod:`attsolver.training.loss`).  For Lorenz-63 and the Van der Pol neural ODE, with the data,
seeds and corrector of ``benchmarks/ood.py``, this trains the corrector with the mean squared
error and with the relative loss at several floors, and counts on the calibration trajectories
(seed 1, in distribution; never the test sets) the rollouts it makes worse than the classical
solve, those above 1.5x, and the median and largest corrected/classical error ratio.

    attsolver bench ood_loss            # a few minutes on a loaded 2-core machine
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attsolver.training.loss as loss_module  # noqa: E402
from benchmarks._suite import Run, header, parser, read_report, write_report  # noqa: E402
from benchmarks.ood import _data, _train, calibration_figures, calibration_set, cases, vdp_case  # noqa: E402

SUITE = "ood_loss"
#: the floors tried (fractions of the median zero-correction error); the library's is marked
FLOORS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def run_case(case: dict[str, Any], quick: bool, run: Run) -> dict[str, Any]:
    system, h, sampler = case["system"], case["h"], case.get("sampler")
    train = _data(system, 8 if quick else 24, case["t_train"], h, case["spin_up"], seed=0, sampler=sampler)
    cal = calibration_set(case, quick)
    epochs = case["training"][0][1]
    rows = []
    library_floor = loss_module.FLOOR_FRACTION
    try:
        for loss, floor in (("mse", None), *(("relative", f) for f in FLOORS)):
            if floor is not None:
                loss_module.FLOOR_FRACTION = floor
            started = time.process_time()
            model = _train(case, train, quick, loss, epochs)
            rows.append({"loss": loss, "floor": floor, "epochs": 3 if quick else epochs,
                         "train_cpu_s": time.process_time() - started, **calibration_figures(model, case, cal)})
            run.log(f"{case['name']}: {loss} {floor}")
    finally:
        loss_module.FLOOR_FRACTION = library_floor
    return {"case": case["name"], "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    lines = header(report, "The relative loss's floor, on the OOD calibration trajectories")
    lines += ["", "Corrector of `benchmarks/ood.py` (NeurVec, RK4, the case's epochs and batch size) trained with "
              "`fit(loss='mse')` or `fit(loss='relative')` with the floor at the given fraction of the median "
              f"zero-correction error (the library's: {report['library_floor']:g}); figures on the 100 calibration "
              "trajectories (seed 1, in distribution): rollouts whose corrected error (RMS over the output times) "
              "is above the classical solve's, above 1.5x it, and the median and largest ratio.", "",
              "| case | loss | floor | epochs | worse | > 1.5x | median ratio | max ratio | training CPU s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in report["cases"]:
        for r in c["rows"]:
            floor = "–" if r["floor"] is None else f"{r['floor']:g}"
            lines.append(f"| {c['case']} | {r['loss']} | {floor} | {r['epochs']} | {r['worse']}/{r['n']} | "
                         f"{r['materially_worse']} | {r['median_ratio']:.3f} | {r['max_ratio']:.2f} | "
                         f"{r['train_cpu_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser(SUITE, __doc__, quick="a smoke run: few trajectories, 3 epochs", render=True)
    args = ap.parse_args(argv)
    if args.render:
        write_report(args.out, SUITE, read_report(Path(args.out) / f"{SUITE}.json"), markdown, None)
        return 0
    run = Run(SUITE, argv, quick=args.quick)
    report = run.report(cases=[], library_floor=loss_module.FLOOR_FRACTION)
    for case in (cases(args.quick)[0], vdp_case(args.quick)):
        report["cases"].append(run_case(case, args.quick, run))
    run.stamp(report, complete=True)
    write_report(args.out, SUITE, report, markdown, None, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
