"""Is ``compare``'s verdict stable under load? (issue 22, item 5)

Trains two correctors once — the demo's (elastic pendulum, RK4 h=0.2, Hypersolver, the demo's
data recipe and seeds) and one on Lorenz-63 (RK4 h=0.1, Hypersolver, 64 clean trajectories) —
then runs ``attsolver.compare`` on each twice with the same inputs: once as the machine is
("base": nothing of ours added) and once beside N = 2 x cores busy processes (pure-Python
spin loops started here and stopped after).  It records both verdicts (pays / does not pay /
inconclusive), the speed-up's point estimate and 95 % interval, the clock the verdict read,
the timing rounds and the load average at the start and the end of each compare.

Target (issue 22): under 2x oversubscription the verdict never flips between "pays" and "does
not pay" (it stays or becomes "inconclusive"), and the point estimate moves <= 15 %.

Run: ``PYTHONPATH=. python benchmarks/verdict_stability.py`` (about 10 minutes on a shared
2-core machine; writes ``benchmarks/results/verdict_stability.{json,md}``).  Standalone for
now; it moves onto ``benchmarks/_suite.py`` when that lands in main.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch

from attsolver.cli.demo import DEMO
from attsolver.correctors import Hypersolver
from attsolver.data import generate_trajectories
from attsolver.evaluate import compare
from attsolver.evaluate.confidence import machine_load
from attsolver.systems import make_system
from attsolver.training import fit

TIME_BUDGET, MAX_ROUNDS, TRAIN_STEPS = 45.0, 40, 800

CASES = {
    # the demo's problem, data seeds and recipe (attsolver/cli/demo.py)
    "demo: elastic_pendulum rk4 h=0.2": dict(system="elastic_pendulum", step=0.2, t_final=10.0, n_train=64,
                                             noise=1e-3, n_test=32, train_seed=DEMO["train_seed"],
                                             test_seed=DEMO["test_seed"], match="err_full", lyapunov="auto"),
    "lorenz63 rk4 h=0.1": dict(system="lorenz63", step=0.1, t_final=4.0, n_train=64, noise=0.0, n_test=32,
                               train_seed=2000, test_seed=20011, match="auto", lyapunov=0.906),
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


def run_compare(system, test, model, case) -> dict:
    res = compare(system, data=test, corrector=model, match=case["match"], lyapunov_exponent=case["lyapunov"],
                  time_budget=TIME_BUDGET, max_rounds=MAX_ROUNDS, progress=False)
    v, s = res.verdict, res.setting
    return {"outcome": v["outcome"], "point": v["speedup_best"], "low": v["interval"]["low"],
            "high": v["interval"]["high"], "best_classical": v["best_classical_reaching"],
            "speedup_evals": (v["evals"] or {}).get("speedup_best_evals"), "clock": s["clock"],
            "rounds": s["timing_rounds"], "stopped": s["timing_stopped"],
            "load_start": s["load_start"]["load_1min"], "load_end": s["load_end"]["load_1min"],
            "line": v["line"]}


def main(argv=None) -> int:
    torch.set_num_threads(1)
    out = Path(os.environ.get("BENCH_OUT", "benchmarks/results"))
    cores = machine_load()["cores"]
    n_busy = 2 * cores
    rows = []
    t0 = time.time()
    for name, case in CASES.items():
        system, test, model = train(case)
        base = run_compare(system, test, model, case)
        print(name, "base", base["line"], flush=True)
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
        print(name, "loaded", loaded["line"], flush=True)
        rows.append({"case": name, "base": base, "loaded": loaded})
        _write(out, cores, n_busy, rows, t0)  # after every case: a stopped run keeps what it measured
    return 0


def _write(out: Path, cores: int, n_busy: int, rows: list, t0: float) -> None:
    report = {"suite": "verdict_stability", "command": "PYTHONPATH=. python benchmarks/verdict_stability.py",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": cores, "busy_processes": n_busy,
              "time_budget_s": TIME_BUDGET, "max_rounds": MAX_ROUNDS, "train_steps": TRAIN_STEPS,
              "wall_s": time.time() - t0, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict_stability.json").write_text(json.dumps(report, indent=1))
    (out / "verdict_stability.md").write_text(markdown(report))
    print(markdown(report))


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}x"


def markdown(r) -> str:
    lines = [f"# compare's verdict, as the machine is vs beside {r['busy_processes']} busy processes ({r['date']})",
             "", f"`{r['command']}` — {r['cores']} cores; each compare: interleaved rounds until the 95 % interval "
             f"is within ±10 % or {r['time_budget_s']:g} s / {r['max_rounds']} rounds; Hypersolver trained "
             f"{r['train_steps']} steps. 'base' adds no load of ours, but the machine is shared: its load average is "
             "in the table.", "",
             "| case | run | load start -> end | clock | rounds | outcome | speed-up (95 % interval) | in f-evals | "
             "best classical |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        for run in ("base", "loaded"):
            x = row[run]
            lines.append(f"| {row['case']} | {run} | {x['load_start']:.2f} -> {x['load_end']:.2f} | {x['clock']} | "
                         f"{x['rounds']} | {x['outcome']} | {_fmt(x['point'])} ({_fmt(x['low'])}-{_fmt(x['high'])}) | "
                         f"{_fmt(x['speedup_evals'])} | {x['best_classical']} |")
        b, lo = row["base"], row["loaded"]
        flip = {b["outcome"], lo["outcome"]} == {"pays", "does not pay"}
        move = abs(lo["point"] / b["point"] - 1) if b["point"] and lo["point"] else None
        lines.append(f"| {row['case']} | change | | | | {'FLIPPED' if flip else 'no flip'} | "
                     f"point moved {'n/a' if move is None else f'{100 * move:.0f} %'} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
