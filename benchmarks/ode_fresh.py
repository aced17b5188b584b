"""Does the ODE benchmark's "pays" hold out of sample?  (issue 22, item 3)

``benchmarks/results/ode.json`` (``attsolver bench ode``) is the **validation** run: training
seeds ``TRAIN_SEED + s`` (1000-1004) and the test set of ``TEST_SEED`` (10007).  Per case this
suite

1. selects one configuration (corrector, training-set size, noise) on that run, by the rule the
   README used for its verdict (:func:`select_config`): the largest mean over seeds of the
   speed-up against the best classical solver; on validation it "pays" when that mean and
   every seed are above 1x;
2. re-trains that configuration, with the validation run's recipe, on **fresh** training seeds
   ``FRESH_TRAIN_SEED + i`` (71000-71004; the noise draw and the network's initial draw use the
   same fresh seed) that no other part of the project uses (``tests/test_ode_fresh.py`` checks
   the constants), and scores it on a **fresh** test set (``FRESH_TEST_SEED`` = 77003, the same
   size, horizon and reference as the validation one);
3. measures each fresh seed's speed-up with the library's own :func:`attsolver.compare`: process
   CPU time, interleaved rounds until the 95 % interval is within ±10 % (or the time budget is
   spent), a paired bootstrap over rounds and test trajectories, and every classical ladder of
   the method registry (the method refined, RK4, dopri5 / dopri8 / SciPy DOP853 down to rtol
   1e-10).  Each seed gets a point speed-up, its 95 % interval, the outcome (pays / does not
   pay / inconclusive) and the strongest classical contender (the cheapest classical run at
   least as accurate);
4. re-trains validation seed 0 once and scores it on the validation test set (the "replay"): its
   error must match the committed row, so a difference between validation and fresh figures is
   the data's, not a change in the code.

A case **pays on fresh data** when the pooled 95 % interval over the fresh seeds
(:func:`pooled_interval`: the seeds resampled, each seed's own ``compare`` interval drawn from)
lies above 1x and no seed's own interval lies below 1x; it does not pay when the pooled interval
lies below 1x, or every seed's own interval does; anything else is "not confirmed".

The PDE rows (``pde.json``) and 2-D Kolmogorov flow are not re-run here: neither pays on the
validation data, so there is no "pays" to confirm.

    attsolver bench ode_fresh                         # ~40 min on a loaded 2-core machine
    attsolver bench ode_fresh --quick --out out/fresh # 2 seeds, short training, short timing

Every finished seed is appended to ``ode_fresh_progress.jsonl`` in the output folder; a rerun
into the same folder resumes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

import attsolver
from attsolver._io import atomic_write_text
from attsolver.cli.common import positive_float, positive_int
from attsolver.evaluate.metrics import speedups_at_equal_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks import ode  # noqa: E402
from benchmarks._suite import Progress, Run, code_commit, fingerprint, parser, provenance_lines, read_report, write_report  # noqa: E402

SCHEMA = 1
PROGRESS = "ode_fresh_progress.jsonl"
#: fresh training seeds: seed i draws its trajectories, noise and initial weights with FRESH_TRAIN_SEED + i
FRESH_TRAIN_SEED = 71_000
#: the fresh test set's initial states
FRESH_TEST_SEED = 77_003
#: the families of the validation run's classical sweep (benchmarks/ode.py): the method refined, RK4,
#: dopri5 down to rtol 1e-8; compare adds dopri8, SciPy DOP853 and finer tolerances
VALIDATION_FAMILIES = ("same", "rk4", "dopri5")
VALIDATION_MIN_RTOL = 1e-8


# --------------------------------------------------------------------------- selection


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def select_config(rows: list[dict[str, Any]], case: str) -> dict[str, Any] | None:
    """The configuration the README's verdict chose for ``case`` from the validation ``rows``.

    Rule (the one ``benchmarks/update_readme.py`` applied to ``ode.json`` before this suite):
    group the case's rows by (corrector, training-set size, noise); a group's score is the mean
    of its seeds' ``speedup_best`` (the speed-up against the best classical solver; seeds
    without one left out, a group with none left out); the largest mean wins (the first group in
    row order on a tie).  On validation it pays when that mean is > 1 and every seed is > 1.

    Returns ``None`` when the case has no scored row, else the configuration, its mean and
    sample standard deviation, its seeds (``seed``, ``speedup_best``, ``speedup_best_kind``,
    ``err_match``) and ``pays``.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("case") == case:
            groups.setdefault((r["corrector"], r["n_train"], r["noise"]), []).append(r)
    scored = []
    for key, rs in groups.items():
        values = [r.get("speedup_best") for r in rs if _num(r.get("speedup_best"))]
        if values:
            scored.append((statistics.fmean(values), key, rs, values))
    if not scored:
        return None
    mean, (corrector, n_train, noise), rs, values = max(scored, key=lambda s: s[0])
    seeds = [{"seed": r.get("seed"), "speedup_best": r.get("speedup_best"),
              "speedup_best_kind": r.get("speedup_best_kind"), "err_match": r.get("err_match"),
              "best_classical_reaching": r.get("best_classical_reaching")} for r in rs]
    every = all(_num(s["speedup_best"]) and s["speedup_best"] > 1 for s in seeds)
    return {"corrector": corrector, "n_train": n_train, "noise": noise, "speedup_mean": mean,
            "speedup_std": statistics.stdev(values) if len(values) > 1 else None, "seeds": seeds,
            "pays": mean > 1 and every}


def fresh_train_seeds(n: int) -> list[int]:
    """The training seeds of fresh seeds ``0 .. n-1``."""
    return [FRESH_TRAIN_SEED + i for i in range(n)]


def pooled_interval(seeds: list[dict[str, Any]], n_boot: int = 4000) -> dict[str, Any]:
    """The fresh seeds' pooled speed-up: the geometric mean of their point estimates, with a 95 %
    interval that covers both the spread over training seeds and each seed's own measurement.

    Each bootstrap draw resamples the seeds with replacement and moves each drawn seed's log
    speed-up by its own measurement deviation (``(log high - log low) / (2 * 1.96)`` from its
    ``compare`` interval) times one normal draw shared by all seeds: the seeds are scored on the
    same test set, so their measurement errors are taken as fully correlated (the conservative
    choice: averaging over seeds does not shrink them).  The interval is the 2.5-97.5
    percentiles of the draws' mean, exponentiated.  ``None`` when a seed has no point estimate
    or no interval (it cannot be pooled)."""
    ok = [s for s in seeds if all(_num(s.get(k)) and s[k] > 0 for k in ("speedup_best", "low", "high"))]
    if not seeds or len(ok) < len(seeds):
        return {"point": None, "low": None, "high": None, "n_seeds": len(seeds)}
    centre = np.log([s["speedup_best"] for s in ok])
    sigma = np.array([(math.log(s["high"]) - math.log(s["low"])) / (2 * 1.959964) for s in ok])
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(ok), size=(n_boot, len(ok)))
    draws = centre[pick].mean(axis=1) + sigma[pick].mean(axis=1) * rng.standard_normal(n_boot)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"point": float(np.exp(centre.mean())), "low": float(np.exp(low)), "high": float(np.exp(high)),
            "n_seeds": len(ok), "n_boot": n_boot}


def fresh_verdict(outcomes: list[str], pooled: dict[str, Any]) -> str:
    """A case's verdict on fresh data: ``"pays"`` when the pooled 95 % interval
    (:func:`pooled_interval`) lies above 1x and no seed's own interval lies below 1x;
    ``"does not pay"`` when the pooled interval lies below 1x or every seed's own interval does;
    else ``"not confirmed"``."""
    low, high = pooled.get("low"), pooled.get("high")
    if outcomes and _num(low) and low > 1 and "does not pay" not in outcomes:
        return "pays"
    if outcomes and ((_num(high) and high < 1) or all(o == "does not pay" for o in outcomes)):
        return "does not pay"
    return "not confirmed"


# --------------------------------------------------------------------------- one seed


def _validation_era_speedup(result, match: str) -> float | None:
    """The fresh seed's speed-up against the validation run's contenders only (the method
    refined, RK4, dopri5 at rtol >= 1e-8), at compare's verdict times: separates what the
    stronger ladders take away from what the fresh data take away."""
    entries = [dict(e, time_s=e["verdict_time_s"]) for e in result.entries]
    corrected = next(e for e in entries if e["family"] == "corrected")
    old = [e for e in entries if e["family"] in VALIDATION_FAMILIES
           and (e["family"] != "dopri5" or (e.get("rtol") or 0) >= VALIDATION_MIN_RTOL)]
    return speedups_at_equal_accuracy(old, corrected[match], corrected["time_s"], match)["speedup_best"]


def fresh_seed(case: ode.Case, config: dict[str, Any], test: ode.TestSet, recipe: ode.Recipe, i: int,
               timing: dict[str, Any], folder: Path | None = None) -> dict[str, Any]:
    """Train ``config`` on fresh seed ``i`` and measure it with :func:`attsolver.compare`
    (its whole result written to ``folder/<case>_seed<train seed>.json`` when given)."""
    seed = FRESH_TRAIN_SEED + i
    pool = ode.make_training_pool(case, config["n_train"], i, base=FRESH_TRAIN_SEED)
    data = ode.training_set(pool, config["n_train"], config["noise"], seed)
    model, info = ode.train_corrector(case, config["corrector"], data, recipe, seed)
    system = ode.case_system(case)
    t0 = time.perf_counter()
    res = attsolver.compare(system, data=test.data, corrector=model, match=case.match,
                            lyapunov_exponent=ode._lyapunov(case, system), refinements=case.fine_ks,
                            **({"rk4_refinements": case.rk4_ks} if case.rk4_ks else {}), progress=False, **timing)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{case.name}_seed{seed}.json", res.to_json())
    v, s = res.verdict, res.setting
    corrected = next(e for e in res.entries if e["family"] == "corrected")
    coarse = next(e for e in res.entries if e["family"] == "same" and e["k"] == 1)
    iv = v.get("interval") or {}
    return {"fresh_index": i, "train_seed": seed, **info, "err_match": corrected[case.match],
            "err_coarse": coarse[case.match], "blowup_rate": corrected.get("blowup_rate"),
            "corrected_time_s": corrected["verdict_time_s"],
            "speedup_best": v["speedup_best"], "speedup_best_kind": v["speedup_best_kind"],
            "low": iv.get("low"), "high": iv.get("high"), "outcome": v["outcome"],
            "best_classical_reaching": v["best_classical_reaching"], "speedup_same": v["speedup_same"],
            "speedup_vs_validation_contenders": _validation_era_speedup(res, case.match),
            "speedup_best_evals": (v.get("evals") or {}).get("speedup_best_evals"),
            "clock": s.get("clock"), "timing_rounds": s.get("timing_rounds"), "timing_stopped": s.get("timing_stopped"),
            "load": [s.get("load_start"), s.get("load_end")], "line": v["line"],
            "compare_wall_s": time.perf_counter() - t0, "code_commit": code_commit()}


def replay(case: ode.Case, config: dict[str, Any], recipe: ode.Recipe, n_test: int) -> dict[str, Any]:
    """Validation seed 0 trained again now and scored on the validation test set."""
    pool = ode.make_training_pool(case, config["n_train"], 0)
    data = ode.training_set(pool, config["n_train"], config["noise"], 0)
    model, info = ode.train_corrector(case, config["corrector"], data, recipe, 0)
    test = ode.make_test_set(case, n_test)
    err = ode.score(case, test, ode.rollout(case, ode.case_system(case), test, corrector=model))["err_match"]
    committed = next((s["err_match"] for s in config["seeds"] if s["seed"] == 0), None)
    return {"seed": 0, "err_match": err, "committed_err_match": committed, "train_time_s": info["train_time_s"],
            "relative_difference": abs(err / committed - 1) if _num(committed) and committed else None}


# --------------------------------------------------------------------------- the run


def run_case(name: str, validation: dict[str, Any], args, progress: Progress, run: Run) -> dict[str, Any] | None:
    case = ode.CASES[name]
    config = select_config(validation["rows"], name)
    if config is None:
        run.log(f"{name}: no scored validation row; skipped")
        return None
    recipe = args.recipe
    n_test = args.n_test
    timing = case_timing(args, name)
    base = fingerprint([SCHEMA, asdict(case), {k: config[k] for k in ("corrector", "n_train", "noise")},
                        asdict(recipe), n_test, FRESH_TEST_SEED, timing])
    test = None
    seeds = []
    for i in range(args.first_seed, args.seeds):
        def compute(i=i):
            nonlocal test
            if test is None:
                test = ode.make_test_set(case, n_test, seed=FRESH_TEST_SEED)
            return fresh_seed(case, config, test, recipe, i, timing, args.out / "ode_fresh")

        rec, new = progress.run(f"fresh|{base}|{i}", compute)
        seeds.append(rec)
        args.counts["computed" if new else "resumed"] += 1
        if new:
            run.log(f"{name} fresh seed {FRESH_TRAIN_SEED + i}: {rec['outcome']} {_fx(rec['speedup_best'])} "
                    f"[{_fx(rec['low'])}, {_fx(rec['high'])}] vs {rec['best_classical_reaching']}, "
                    f"err {rec['err_match']:.3g}, {rec['compare_wall_s']:.0f} s")
    rep, _ = progress.run(f"replay|{base}", lambda: replay(case, config, recipe, n_test))
    points = [s["speedup_best"] for s in seeds if _num(s["speedup_best"])]
    pooled = pooled_interval(seeds)
    errs = [s["err_match"] for s in seeds if _num(s["err_match"])]
    v_errs = [s["err_match"] for s in config["seeds"] if _num(s["err_match"])]
    return {"definition": asdict(case), "config": {k: config[k] for k in ("corrector", "n_train", "noise")},
            "timing": timing,
            "validation": {"train_seeds": [validation["constants"]["train_seed_base"] + s["seed"]
                                           for s in config["seeds"]],
                           "test_seed": validation["constants"]["test_seed"], **config,
                           "err_mean": statistics.fmean(v_errs) if v_errs else None},
            "fresh": {"train_seeds": fresh_train_seeds(args.seeds), "test_seed": FRESH_TEST_SEED, "seeds": seeds,
                      "speedup_median": statistics.median(points) if points else None,
                      "err_mean": statistics.fmean(errs) if errs else None,
                      "outcomes": {o: sum(s["outcome"] == o for s in seeds)
                                   for o in ("pays", "inconclusive", "does not pay")},
                      "pooled": pooled, "verdict": fresh_verdict([s["outcome"] for s in seeds], pooled)},
            "replay": rep}


def case_timing(args, name: str) -> dict[str, Any]:
    """The timing settings of case ``name``: ``args.timing`` with its time budget replaced by the case's
    ``--case-time-budget`` entry, when it has one.  Part of the case's resume key, so one report can keep
    the seeds of some cases from an earlier run and take re-measured seeds for others."""
    budget = args.case_time_budget.get(name)
    return args.timing if budget is None else {**args.timing, "time_budget": budget}


def _case_budgets(items: list[str] | None) -> dict[str, float]:
    """``--case-time-budget CASE=SECONDS ...`` as a dict (a clear error on a bad entry)."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or name not in ode.CASES:
            raise SystemExit(f"--case-time-budget: {item!r} is not CASE=SECONDS with CASE one of {sorted(ode.CASES)}")
        try:
            out[name] = positive_float(value)
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"--case-time-budget: {item!r}: {e}") from None
    return out


def parse_args(argv):
    ap = parser("ode_fresh", __doc__, quick="2 fresh seeds, 300 training steps, 10 s of timing per seed: a smoke run",
                render=True)
    ap.add_argument("--validation", default="benchmarks/results/ode.json",
                    help="the validation run (default benchmarks/results/ode.json)")
    ap.add_argument("--systems", nargs="+", choices=sorted(ode.CASES), default=None,
                    help="cases (default: every case of the validation run)")
    ap.add_argument("--seeds", type=positive_int, default=None, help="fresh seeds per case (default 5)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="start at this fresh seed (to share the seeds of a case between processes writing to "
                         "different folders; merge their progress files, then rerun without it)")
    ap.add_argument("--time-budget", type=positive_float, default=None,
                    help="seconds of timing per compare (default 40)")
    ap.add_argument("--case-time-budget", nargs="+", default=None, metavar="CASE=SECONDS",
                    help="a time budget for some cases only (e.g. lorenz63=90): their seeds are re-measured, the "
                         "other cases keep the seeds already in the progress log")
    ap.add_argument("--max-rounds", type=positive_int, default=40, help="most timing rounds per compare")
    ap.add_argument("--ci-width", type=positive_float, default=0.10, help="interval half-width that stops timing")
    args = ap.parse_args(argv)
    args.out = Path(args.out)
    validation = read_report(args.validation)
    args.seeds = args.seeds or (2 if args.quick else 5)
    args.n_test = validation["grid"]["n_test"]
    known = {f.name for f in fields(ode.Recipe)}
    recipe = {k: v for k, v in validation["recipe"].items() if k in known}
    if args.quick:
        recipe["train_steps"] = 300
    args.recipe = ode.Recipe(**recipe)
    args.timing = {"time_budget": args.time_budget or (10.0 if args.quick else 40.0), "max_rounds": args.max_rounds,
                   "ci_width": args.ci_width}
    args.case_time_budget = _case_budgets(args.case_time_budget)
    args.cases = args.systems or list(validation["grid"]["cases"])
    return args, validation


def main(argv=None) -> int:
    args, validation = parse_args(argv)
    if args.render:
        write_report(args.out, "ode_fresh", read_report(args.out / "ode_fresh.json"), to_markdown)
        return 0
    run = Run("ode_fresh", argv, quick=args.quick, schema=SCHEMA)
    code_commit()  # the code as it is now, before the first seed
    args.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(args.out / PROGRESS)
    cases = {}
    args.counts = {"computed": 0, "resumed": 0}
    for name in args.cases:
        rec = run_case(name, validation, args, progress, run)
        if rec is not None:
            cases[name] = rec
    report = run.report(validation={"file": str(args.validation), "command": validation.get("command"),
                                    "date": validation.get("date"), "constants": validation.get("constants")},
                        fresh_train_seed=FRESH_TRAIN_SEED, fresh_test_seed=FRESH_TEST_SEED, n_seeds=args.seeds,
                        n_test=args.n_test, recipe=asdict(args.recipe), timing=args.timing,
                        seeds_computed=args.counts["computed"], seeds_resumed=args.counts["resumed"],
                        compute_minutes=sum(s["train_time_s"] + s["compare_wall_s"] for c in cases.values()
                                            for s in c["fresh"]["seeds"]) / 60, cases=cases,
                        not_rerun={"pde": "burgers: does not pay on the validation data (pde.json); not re-run",
                                   "kolmogorov": "2-D Kolmogorov flow: does not pay on the validation data "
                                                 "(kolmogorov.json); not re-run"})
    write_report(args.out, "ode_fresh", run.stamp(report, complete=len(cases) == len(args.cases)), to_markdown)
    run.log(f"wrote {args.out / 'ode_fresh.json'}, {args.out / 'ode_fresh.md'}")
    return 0


# --------------------------------------------------------------------------- tables


def _fx(x: Any) -> str:
    return f"{x:.3g}×" if _num(x) else "n/a"


def _interval(s: dict[str, Any]) -> str:
    return f"{_fx(s.get('speedup_best'))} ({_fx(s.get('low'))}–{_fx(s.get('high'))})"


def to_markdown(report: dict[str, Any]) -> str:
    val, t = report["validation"], report["timing"]
    L = ["# Out-of-sample check of the ODE benchmark's \"pays\"", "", *provenance_lines(report, unfinished="case"), "",
         f"This invocation computed {report.get('seeds_computed', '?')} fresh seeds and took "
         f"{report.get('seeds_resumed', '?')} from `{PROGRESS}` (an earlier or a concurrent run into the same "
         f"folder); training and `compare` took {report.get('compute_minutes', 0):.0f} min (wall) summed over "
         "the seeds." + _load_range(report), "",
         "## Summary", "",
         f"Validation: `{val['file']}` (`{val['command']}`, {val['date']}): training seeds "
         f"{val['constants']['train_seed_base']} + s, test seed {val['constants']['test_seed']}. Per case the "
         "configuration with the largest mean speed-up against the best classical solver was selected there "
         "(`select_config` in `benchmarks/ode_fresh.py`, the rule the README used). It was then trained again on "
         f"{report['n_seeds']} fresh training seeds ({report['fresh_train_seed']} + i) with the same recipe "
         f"and scored on a fresh test set (seed {report['fresh_test_seed']}, {report['n_test']} initial states), "
         "each seed measured by `attsolver.compare` (process CPU time, interleaved rounds, 95 % paired bootstrap "
         "interval over rounds and test trajectories, every classical ladder of the registry; timing stops "
         f"at ±{100 * t['ci_width']:g} %, after {t['max_rounds']} rounds or {_budgets(report)} of timing, at least "
         "5 rounds). A case **pays on fresh data** when the pooled 95 % interval over its fresh seeds lies above 1× "
         "and no seed's own interval lies below 1× (pooled: the geometric mean of the seeds' speed-ups; its interval "
         "resamples the seeds and shifts them by one normal draw scaled to each seed's own interval, the seeds sharing "
         "the test set); it "
         "does not pay when the pooled interval lies below 1×, or every seed's own interval does; anything else is "
         "*not confirmed*.", "",
         "| case | configuration | validation speed-up (mean ± std; every seed > 1×?) | fresh: pays / inconclusive / "
         "does not pay | fresh, pooled (95 % interval) | verdict on fresh data | error, validation → fresh | replay of validation "
         "seed 0 (error now / committed) |",
         "|---|---|---:|---|---:|---|---|---|"]
    for name, c in report["cases"].items():
        v, f, cfg, rp = c["validation"], c["fresh"], c["config"], c["replay"]
        o = f["outcomes"]
        std = f" ± {v['speedup_std']:.2g}" if _num(v.get("speedup_std")) else ""
        L.append(f"| {name} | {cfg['corrector']}, {cfg['n_train']} traj., noise {cfg['noise']:g} | "
                 f"{v['speedup_mean']:.3g}{std}× ({'yes' if v['pays'] else 'no'}) | "
                 f"{o['pays']} / {o['inconclusive']} / {o['does not pay']} | {_pooled(f.get('pooled') or {})} | "
                 f"**{f['verdict']}** | {_g(v.get('err_mean'))} → {_g(f.get('err_mean'))} | "
                 f"{_g(rp['err_match'])} / {_g(rp['committed_err_match'])} |")
    L += ["", "## Per fresh seed", "",
          "Speed-up against the best classical contender at equal accuracy (95 % interval), the strongest "
          "contender (the cheapest classical run at least as accurate), the speed-up against the validation "
          "run's contenders only (the method refined, RK4, dopri5 to rtol 1e-8; same timings), the cost in "
          "evaluations of f, and the errors.", ""]
    for name, c in report["cases"].items():
        L += [f"### {name}", "", f"Timing budget {(c.get('timing') or t)['time_budget']:g} s per seed; "
              f"measured by the code at {_commits(c['fresh']['seeds'])}.", "",
              "| training seed | outcome | speed-up (95 % interval) | strongest contender | "
              "vs validation-era contenders | in f-evals | error (coarse) | timing rounds, stop | load 1 min | code |",
              "|---:|---|---:|---|---:|---:|---|---|---|---|"]
        for s in c["fresh"]["seeds"]:
            load = s.get("load") or [None, None]
            loads = "–".join(f"{(x or {}).get('load_1min', float('nan')):.1f}" for x in load if x)
            L.append(f"| {s['train_seed']} | {s['outcome']} | {_interval(s)} | {s['best_classical_reaching']} | "
                     f"{_fx(s['speedup_vs_validation_contenders'])} | {_fx(s['speedup_best_evals'])} | "
                     f"{_g(s['err_match'])} ({_g(s['err_coarse'])}) | {s['timing_rounds']}, {s['timing_stopped']} | "
                     f"{loads} | {s.get('code_commit') or 'not recorded'} |")
        vs = ", ".join(f"{s['seed']}: {_fx(s['speedup_best'])} (err {_g(s['err_match'])})"
                       for s in c["validation"]["seeds"])
        L += ["", f"Validation seeds (wall-time minimum, classical side timed once per case, `ode.json`): {vs}.", ""]
    L += ["## Not re-run", ""] + [f"* {text}." for text in report.get("not_rerun", {}).values()] + [""]
    return "\n".join(L)


def _budgets(report: dict[str, Any]) -> str:
    """The timing budget per seed: one figure, or one per case when cases differ (``--case-time-budget``)."""
    default = report["timing"]["time_budget"]
    per = {name: (c.get("timing") or report["timing"])["time_budget"] for name, c in report["cases"].items()}
    if all(b == default for b in per.values()):
        return f"{default:g} s"
    return "a budget per case (" + ", ".join(f"{name} {b:g} s" for name, b in per.items()) + ")"


def _commits(seeds: list[dict[str, Any]]) -> str:
    """The commits that measured ``seeds`` (``code_commit``), with how many seeds each; seeds from before
    the suite recorded a commit are counted as such."""
    counts: dict[str, int] = {}
    for s in seeds:
        key = f"`{s['code_commit']}`" if s.get("code_commit") else "a commit not recorded (an earlier run)"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} ({n} of {len(seeds)} seeds)" for k, n in counts.items()) or "–"


def _pooled(p: dict[str, Any]) -> str:
    return f"{_fx(p.get('point'))} ({_fx(p.get('low'))}–{_fx(p.get('high'))})" if _num(p.get("point")) else "n/a"


def _load_range(report: dict[str, Any]) -> str:
    """The 1-minute load averages seen at the starts and ends of the seeds' compares."""
    loads = [x["load_1min"] for c in report["cases"].values() for s in c["fresh"]["seeds"]
             for x in (s.get("load") or []) if x and _num(x.get("load_1min"))]
    cpus = (report.get("machine") or {}).get("cpus", "?")
    return (f" The 1-minute load average ranged {min(loads):.1f}–{max(loads):.1f} on the {cpus} cores during the "
            "compares (every job on the machine; `compare` reads process CPU time)." if loads else "")


def _g(x: Any) -> str:
    return f"{x:.3g}" if _num(x) else "–"


if __name__ == "__main__":
    sys.exit(main())
