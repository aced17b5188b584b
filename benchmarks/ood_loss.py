"""The relative loss's floor, measured on the OOD benchmark's calibration trajectories.

``fit(loss="relative")`` divides each sample's squared error by the uncorrected solver's on it
plus a floor, ``FLOOR_FRACTION`` times the median over the training samples
(:mod:`attsolver.training.loss`).  For Lorenz-63 and the Van der Pol neural ODE, with the data,
seeds and corrector of ``benchmarks/ood.py``, this trains the corrector with the mean squared
error and with the relative loss at several floors, and counts on the calibration trajectories
(seed 1, in distribution; never the test sets) the rollouts it makes worse than the classical
solve, those above 1.5x, and the median and largest corrected/classical error ratio.  Then the
trainings ``bench ood`` chose (the relative loss, 300 epochs for both cases) and the mean squared
error at the same epochs, with the network initialised from seeds 0, 1 and 2 (same data): the
calibration figures, and on the in-distribution and the initial-state-shift test sets the
rollouts made worse, those the guard detects (data scores alone) and the fallback's rollouts
above 1.5x the classical error — is the change more than one seed's luck?

    attsolver bench ood_loss            # about 8 minutes on a loaded 2-core machine
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attsolver  # noqa: E402
import attsolver.training.loss as loss_module  # noqa: E402
from attsolver.integrate.guard import OutOfDomainWarning  # noqa: E402
from benchmarks._suite import Run, case_suite, header  # noqa: E402
from benchmarks.ood import (MATERIAL, _data, _rollout_error, _train, calibration_figures, calibration_set,  # noqa: E402
                            cases, data_only, vdp_case)

SUITE = "ood_loss"
#: the floors tried (fractions of the median zero-correction error); the library's is marked
FLOORS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: the seed check: the epochs bench ood chose per case, and the seeds of the initial weights
SEED_EPOCHS = {"lorenz63": 300, "vdp_neural_ode": 300}
SEEDS = (0, 1, 2)


def _test_figures(model, case: dict[str, Any], test) -> dict[str, Any]:
    """Rollouts made worse, detected by the data scores, and the fallback's above 1.5x."""
    system, h = case["system"], case["h"]
    y0, t, scored = test.y[:, 0], test.t, data_only(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        classical = attsolver.solve(system, y0, t, step_size=h)
        corrected = attsolver.solve(system, y0, t, step_size=h, corrector=model)
        _, stats = attsolver.solve(system, y0, t, step_size=h, corrector=scored, guard="warn", return_stats=True)
        fallback = attsolver.solve(system, y0, t, step_size=h, corrector=scored, guard="fallback")
    ec = _rollout_error(classical, test.y)
    worse = _rollout_error(corrected, test.y) > ec
    flagged = np.array(stats.guard.flagged)
    over = _rollout_error(fallback, test.y) / ec
    return {"worse": int(worse.sum()), "detected": int((worse & flagged).sum()), "flagged": int(flagged.sum()),
            "fallback_over_1_5x": int((over > MATERIAL).sum()), "fallback_max": float(over.max())}


def seed_rows(case: dict[str, Any], quick: bool, train, cal, run: Run) -> list[dict[str, Any]]:
    """The chosen training and the mean squared error at its epochs, on three initial seeds."""
    system, h, sampler = case["system"], case["h"], case.get("sampler")
    shift_label, shift_system, shift_map = case["ood"][-1]  # the initial-state shift
    tests = {"in distribution": _data(system, 20 if quick else 100, case["t_test"], h, case["spin_up"], seed=2,
                                      sampler=sampler),
             shift_label: _data(shift_system, 20 if quick else 100, case["t_test"], h, case["spin_up"], seed=2,
                                y0_map=shift_map, sampler=sampler)}
    rows = []
    for loss in ("relative", "mse"):
        for seed in SEEDS:
            model = _train(case, train, quick, loss, SEED_EPOCHS[case["name"]], seed=seed)
            rows.append({"loss": loss, "seed": seed, "epochs": 3 if quick else SEED_EPOCHS[case["name"]],
                         "calibration": calibration_figures(model, case, cal),
                         "tests": {k: _test_figures(model, case, v) for k, v in tests.items()}})
            run.log(f"{case['name']}: seed check {loss} {seed}")
    return rows


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
    return {"case": case["name"], "rows": rows, "seeds": seed_rows(case, quick, train, cal, run)}


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
    lines += _seed_lines(report)
    return "\n".join(lines) + "\n"


def _seed_lines(report: dict[str, Any]) -> list[str]:
    """The seed check's table."""
    out = ["", "Seed check: the training `bench ood` chose (relative loss, 300 epochs) and the mean squared error "
           "at the same epochs, the network initialised from three seeds (same data). Calibration: rollouts "
           "made worse, median and largest ratio; per test set: rollouts made worse, of those detected by the "
           "data scores (`guard='warn'`), and `guard='fallback'` rollouts above 1.5x the classical error (the "
           "largest ratio):", "",
           "| case | loss | seed | calibration: worse, median, max | in distribution: worse, detected, fallback > 1.5x "
           "(max) | shift: worse, detected, fallback > 1.5x (max) |", "|---|---|---|---|---|---|"]
    for c in report["cases"]:
        for r in c.get("seeds", []):
            k = r["calibration"]
            cells = [f"{v['worse']}, {v['detected']}, {v['fallback_over_1_5x']} ({v['fallback_max']:.2f})"
                     for v in r["tests"].values()]
            out.append(f"| {c['case']} | {r['loss']} | {r['seed']} | {k['worse']}, {k['median_ratio']:.3f}, "
                       f"{k['max_ratio']:.2f} | " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    return case_suite(SUITE, __doc__, argv, quick="a smoke run: few trajectories, 3 epochs",
                      cases=lambda quick: (cases(quick)[0], vdp_case(quick)), run_case=run_case, markdown=markdown,
                      library_floor=loss_module.FLOOR_FRACTION)


if __name__ == "__main__":
    raise SystemExit(main())
