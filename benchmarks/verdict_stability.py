"""Is ``compare``'s verdict stable under load? (issue 22, item 5)

Trains the correctors once — the demo's (elastic pendulum, RK4 h=0.2, Hypersolver, the demo's
data recipe and seeds) and the ODE benchmark's Lorenz-63 winner (the best configuration for
``lorenz63`` in ``benchmarks/results/ode.json``: RK4 h=0.1, Hypersolver, 64 clean trajectories,
the benchmark's recipe, training data and test set, via ``benchmarks/ode.py``; training seed 0,
the first, not chosen for its result) — then runs ``attsolver.compare`` on each twice with the
same inputs: once as the machine is ("base": nothing of ours added) and once beside N = 2 x cores busy processes (pure-Python
spin loops started here and stopped after).  It records both verdicts (pays / does not pay /
inconclusive), the speed-up's point estimate and 95 % interval, the clock the verdict read,
the timing rounds and the load average at the start and the end of each compare.

Target (issue 22): under 2x oversubscription the verdict never flips between "pays" and "does
not pay" (it stays or becomes "inconclusive"), and the point estimate moves <= 15 %.

Run: ``PYTHONPATH=. python benchmarks/verdict_stability.py [--cases demo lorenz63]`` (a few
minutes per case on a quiet 2-core machine, 17-19 at load 9-13; writes
``benchmarks/results/verdict_stability.{json,md}``, keeping the rows of cases not run).  The report record (load averages, machine) is
``benchmarks/_suite.py``'s.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite

from attsolver.cli.demo import DEMO
from attsolver.correctors import Hypersolver
from attsolver.data import generate_trajectories
from attsolver.evaluate import compare
from attsolver.evaluate.confidence import machine_load
from attsolver.systems import make_system
from attsolver.training import fit
from benchmarks import ode  # noqa: E402
from benchmarks._suite import Run, parser  # noqa: E402

TIME_BUDGET, MAX_ROUNDS, TRAIN_STEPS = 45.0, 40, 800

CASES = {
    # the demo's problem, data seeds and recipe (attsolver/cli/demo.py)
    "demo": dict(name="demo: elastic_pendulum rk4 h=0.2", system="elastic_pendulum", step=0.2, t_final=10.0,
                 n_train=64, noise=1e-3, n_test=32, train_seed=DEMO["train_seed"], test_seed=DEMO["test_seed"],
                 match="err_full", lyapunov="auto"),
    # the ODE benchmark's winner for lorenz63 (ode.json: Hypersolver, n_train 64, noise 0), trained by ode.py
    "lorenz63": dict(name="lorenz63 winner: rk4 h=0.1, Hypersolver, 64 clean trajectories", ode_case="lorenz63",
                     corrector="Hypersolver", n_train=64, noise=0.0, seeds=(0,)),
}


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2147483648


def train(case: dict):
    system = make_system(case["system"])
    h = case["step"]
    tr = generate_trajectories(system, case["n_train"], t_final=case["t_final"], dt=h, refine=32,
                               noise_level=case["noise"], seed=case["train_seed"], progress=False)
    te = generate_trajectories(system, case["n_test"], t_final=case["t_final"], dt=h, refine=256,
                               seed=case["test_seed"], progress=False)
    torch.manual_seed(0)
    model = Hypersolver(system.state_shape, method="rk4", step_size=h)
    n_fit = round(len(tr.y) * 0.75) * (tr.y.shape[1] - 1)
    epochs = max(5, math.ceil(TRAIN_STEPS / max(1, math.ceil(n_fit / DEMO["batch_size"]))))
    fit(model, tr, epochs=epochs, lr=DEMO["lr"], batch_size=DEMO["batch_size"], val_fraction=0.25,
        patience=max(5, epochs // 4), grad_clip=10.0, min_lr_ratio=0.05, seed=0, progress=False, check=False)
    return system, te, model.eval()


def train_winner(case: dict, seed: int):
    """The ODE benchmark's configuration, trained as ``benchmarks/ode.py`` trains it (its
    recipe, its training pool for ``seed``, its test set of 32 states)."""
    c, recipe = ode.CASES[case["ode_case"]], ode.Recipe()
    system = ode.case_system(c)
    data = ode.training_set(ode.make_training_pool(c, case["n_train"], seed), case["n_train"], case["noise"], seed)
    test = ode.make_test_set(c, 32)
    cls, kw = ode.CORRECTORS[case["corrector"]]
    torch.manual_seed(seed)
    model = cls(data.state_shape, method=c.method, step_size=c.step, **kw)
    n_fit = len(data) - max(1, round(recipe.val_fraction * len(data)))
    epochs = max(recipe.min_epochs, math.ceil(recipe.train_steps / max(1, math.ceil(
        n_fit * (data.n_times - 1) / recipe.batch_size))))
    fit(model, data, epochs=epochs, lr=recipe.lr, batch_size=recipe.batch_size, val_fraction=recipe.val_fraction,
        patience=max(recipe.min_epochs, math.ceil(recipe.patience_frac * epochs)), seed=seed, progress=False,
        grad_clip=recipe.grad_clip, min_lr_ratio=recipe.min_lr_ratio, restore_best=recipe.restore_best,
        rollout_steps=recipe.rollout_steps, weight_decay=recipe.weight_decay,
        system=system, check=False)
    return system, test.data, model.double().eval(), dict(case, match=c.match, lyapunov="auto")


def run_compare(system, test, model, case) -> dict:
    res = compare(system, data=test, corrector=model, match=case["match"], lyapunov_exponent=case["lyapunov"],
                  time_budget=TIME_BUDGET, max_rounds=MAX_ROUNDS, progress=False)
    v, s = res.verdict, res.setting
    return {"outcome": v["outcome"], "point": v["speedup_best"], "low": v["interval"]["low"],
            "high": v["interval"]["high"], "best_classical": v["best_classical_reaching"],
            "speedup_evals": (v["evals"] or {}).get("speedup_best_evals"), "clock": s["clock"],
            "rounds": s["timing_rounds"], "stopped": s["timing_stopped"],
            "load_start": s["load_start"]["load_1min"], "load_end": s["load_end"]["load_1min"],
            "reference_accuracy": (s.get("reference_accuracy") or {}).get("error"),
            "not_credited": v.get("not_credited"), "err_match": res.entries[-1]["err_match"],
            "corrected_verdict_time_s": res.entries[-1]["verdict_time_s"], "line": v["line"]}


def base_and_loaded(system, test, model, case, n_busy: int) -> tuple[dict, dict]:
    """The same compare twice: as the machine is, then beside ``n_busy`` spinning processes."""
    base = run_compare(system, test, model, case)
    print(case["name"], "base", base["line"], flush=True)
    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(n_busy)]
    for p in procs:
        p.start()
    try:
        time.sleep(5)  # let the spinners take their share
        loaded = run_compare(system, test, model, case)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
    print(case["name"], "loaded", loaded["line"], flush=True)
    return base, loaded


def main(argv=None) -> int:
    ap = parser("verdict_stability", __doc__, prog="PYTHONPATH=. python benchmarks/verdict_stability.py")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="the cases to run")
    args = ap.parse_args(argv)
    run = Run("verdict_stability", argv, prog="PYTHONPATH=. python benchmarks/verdict_stability.py")
    out = Path(args.out)
    cores = machine_load()["cores"]
    n_busy = 2 * cores
    old = out / "verdict_stability.json"
    rows = json.loads(old.read_text())["rows"] if old.exists() else []
    for key in args.cases:
        case = CASES[key]
        rows = [r for r in rows if r.get("key") != key]
        if "ode_case" in case:
            for seed in case["seeds"]:
                system, test, model, c = train_winner(case, seed)
                c = dict(c, name=f"{case['name']}, seed {seed}")
                base, loaded = base_and_loaded(system, test, model, c, n_busy)
                rows.append({"key": key, "case": c["name"], "seed": seed, "base": base, "loaded": loaded,
                             "date": run.record["date"]})
                _write(out, run, cores, n_busy, rows)  # after every row: a stopped run keeps what it measured
        else:
            system, test, model = train(case)
            base, loaded = base_and_loaded(system, test, model, case, n_busy)
            rows.append({"key": key, "case": case["name"], "base": base, "loaded": loaded,
                         "date": run.record["date"]})
            _write(out, run, cores, n_busy, rows)
    return 0


def _write(out: Path, run: Run, cores: int, n_busy: int, rows: list) -> None:
    report = run.stamp(run.report(cores=cores, busy_processes=n_busy, time_budget_s=TIME_BUDGET,
                                  max_rounds=MAX_ROUNDS, train_steps_demo=TRAIN_STEPS, rows=rows), complete=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict_stability.json").write_text(json.dumps(report, indent=1))
    (out / "verdict_stability.md").write_text(markdown(report))
    print(markdown(report))


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}x"


def _load(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def markdown(r) -> str:
    m = r.get("machine", {})
    lines = [f"# compare's verdict, as the machine is vs beside {r['busy_processes']} busy processes ({r['date']})",
             "", f"`{r['command']}` — {r['cores']} cores, torch {m.get('torch', '?')}; load average (1, 5, 15 min) "
             f"{m.get('load_start')} at the start and {m.get('load_end')} at the end of the last run. Each compare: "
             f"interleaved rounds until the 95 % interval is within ±10 % or {r['time_budget_s']:g} s / "
             f"{r['max_rounds']} rounds; the verdict reads process CPU time. 'base' adds no load of ours, but the "
             "machine is shared with other jobs (other sessions' tests and benchmarks): its load average is in the "
             "table; 'loaded' adds N = 2 x cores pure-Python spinning processes.", "",
             "| case | run | load start -> end | clock | rounds | outcome | speed-up (95 % interval) | in f-evals | "
             "corrected error / CPU time | reference accuracy | best classical |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        for run in ("base", "loaded"):
            x = row[run]
            err = (f"{x['err_match']:.3g} / {1e3 * x['corrected_verdict_time_s']:.3g} ms"
                   if x.get("err_match") is not None else "")
            ref = "" if x.get("reference_accuracy") is None else f"{x['reference_accuracy']:.2g}"
            lines.append(f"| {row['case']} | {run} | {_load(x['load_start'])} -> {_load(x['load_end'])} | "
                         f"{x['clock']} | {x['rounds']} | {x['outcome']} | {_fmt(x['point'])} "
                         f"({_fmt(x['low'])}-{_fmt(x['high'])}) | {_fmt(x['speedup_evals'])} | {err} | {ref} | "
                         f"{x['best_classical']} |")
        b, lo = row["base"], row["loaded"]
        flip = {b["outcome"], lo["outcome"]} == {"pays", "does not pay"}
        move = lo["point"] / b["point"] - 1 if b["point"] and lo["point"] else None
        lines.append(f"| {row['case']} | change | | | | {'FLIPPED' if flip else 'no flip'} | "
                     f"point moved {'n/a' if move is None else f'{100 * move:+.0f} %'} | | | | |")
    if not any(row.get("key") == "demo" for row in r["rows"]):
        lines += ["", "The demo case's rows are from an earlier, partial run of this script: "
                  "[verdict_stability_partial.md](verdict_stability_partial.md)."]
    lines += ["", "Target (issue 22): no flip between 'pays' and 'does not pay' under 2x oversubscription, and the "
              "point estimate moves <= 15 %."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
