"""Kolmogorov flow: the learned interpolation's guard on the suite's trained models (blow-ups,
what it changes, what it costs).

A learned interpolation lives inside the right-hand side; ``solve(system, ..., guard="fallback")``
checks, wherever the model computes its face weights, each trajectory's ``max |omega|`` and its
weights' departure from the base scheme against the training maxima (times 1.5 and 2), and gives
a trajectory outside them the base scheme's weights for the rest of the solve
(:mod:`attsolver.systems.interpolation_guard`).  For every trained model in a Kolmogorov cache
(``li_<regime>_*.pt``, the bench's own; its build read from its record), this suite:

* records the domain from the model's training set (the states ``fit`` records it from);
* rolls the bench's 16 held-out test initial conditions out to ``--t-long`` (20) without and with
  the guard: blow-ups (non-finite, or ``|omega|`` above 5x the reference maximum, the bench's
  rule), the trajectories that fell back and when;
* checks the scored horizon (the test set's frames to t = 8): the guarded rollouts are compared
  with the unguarded ones bit for bit, so a guard that flags nothing there leaves every t95 of
  the suite as it is;
* times the learned step with and without the guard (batch 16, float32, one thread, CPU time of
  a 2-step and a 12-step solve in the same round, the per-step cost their difference; the two
  alternate within each round; end states checked equal first): the ratio, median and quartiles.

    PYTHONPATH=. python benchmarks/kolmogorov_li_guard.py --cache out/kfresh_cache --test-seed 91000 \\
        --train-seed 91500 --out benchmarks/results/kolmogorov_li_guard
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from attsolver import solve
from attsolver.systems.interpolation_guard import DEPARTURE_MARGIN, STATE_MARGIN
from attsolver.systems.interpolation_domain import weight_departure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks import kolmogorov as k  # noqa: E402
from benchmarks._suite import Run, parser, write_report  # noqa: E402

SCHEMA = 1
STEPS = (2, 12)
BATCH = 16
#: the long rollouts' output interval (the same steps as one interval), for :func:`margins_used`
MARGIN_FRAME = 0.25
#: the bench's run sizes -> the letter of its cache tag
SIZES = {"full": "f", "quick": "q", "tiny": "t"}
#: the suite's scored horizon (its t95 are censored there)
SCORED = 8.0


def _seed_matches(stem: str, seed_tag: str) -> bool:
    """Whether a cache name (without its hash) is of the seed of ``seed_tag`` (the default seed: no tag)."""
    return stem.endswith(seed_tag) if seed_tag else re.search(r"_seed\d+$", stem) is None


def models_in(cache: Path, regime: str, train_seed: int) -> list[Path]:
    """The cache's learned interpolations of ``regime`` (the cache tag, e.g. ``re500_f``) trained on
    ``train_seed``'s data (with a record)."""
    tag = k._seed_tag(train_seed, k.TRAIN_SEED)
    return sorted(p for p in cache.glob(f"li_{regime}_*.pt")
                  if p.with_suffix(".json").exists() and _seed_matches(p.stem, tag))


def load_model(path: Path):
    """``(host, record)``: the model of ``path`` built as it was trained (the record's width and
    depth, the saved stencil and base scheme)."""
    record = json.loads(path.with_suffix(".json").read_text())
    state = torch.load(path, weights_only=True)
    meta = json.loads(bytes(state["trained_for_json"].tolist()).decode())
    stencil = {"width": meta["width"], "transverse": meta["transverse"], "base": meta["base"]}
    host = k.build_learned_interpolation(record["hidden"], record["layers"], record["weights_per"], **stencil)
    host.interpolation.load_state_dict(state)
    return host, record


def training_states(cache: Path, regime: str, record: dict[str, Any], train_seed: int) -> torch.Tensor:
    """The model's training set (the bench's cached file), restricted to the base grid."""
    path = cached_set(cache, f"train_li_{regime}_{record['trajectories']}_t{record['t_train']:g}",
                      k._seed_tag(train_seed, k.TRAIN_SEED))
    return k.spectral_restrict(k.load_h5(path).y, k.COARSE_N).to(k.DTYPE)


def cached_set(cache: Path, prefix: str, seed_tag: str) -> Path:
    """The bench's cached data set ``<prefix>...<seed_tag>_<hash>.h5`` (the default seed: no tag)."""
    found = sorted(p for p in cache.glob(f"{prefix}*.h5") if _seed_matches(p.stem.rsplit("_", 1)[0], seed_tag))
    if not found:
        raise FileNotFoundError(f"no data set {prefix}*{seed_tag}_*.h5 in {cache} (run attsolver bench kolmogorov "
                                "with this cache first)")
    return found[0]


def rollouts(c, models, ref, t_long, t_eval) -> dict[str, Any]:
    """Blow-ups without and with the guard over ``t_long``, and the scored horizon compared."""
    bound = 5.0 * float(ref.abs().max())
    w0 = k.spectral_restrict(ref[:, 0], k.COARSE_N)
    tl = torch.tensor([0.0, t_long], dtype=torch.float64)

    def blown(end):
        return ~torch.isfinite(end).all(dim=(-2, -1)) | (end.abs().amax(dim=(-2, -1)) > bound)

    frames = torch.arange(0.0, t_long + 1e-9, MARGIN_FRAME, dtype=torch.float64)  # the same steps, more outputs
    long = k.rollout(c, models, w0, frames)
    plain = blown(long[:, -1])
    margins = margins_used(models[c["model"]], long[~plain])
    histories = {int(i): blowup_history(c, models, w0[i], t_long) for i in plain.nonzero().reshape(-1)}
    sol, report = k.rollout(c, models, w0, tl, guard="fallback")
    first = report.first_time[report.flagged]
    te = t_eval[t_eval <= SCORED + 1e-9]
    a = k.rollout(c, models, w0, te)
    b, rep8 = k.rollout(c, models, w0, te, guard="fallback")
    same = [bool(torch.equal(a[i], b[i])) for i in range(len(a))]
    return {"blown_up": int(plain.sum()), "guarded_blown_up": int(blown(sol[:, -1]).sum()), "n": int(len(plain)),
            "bound": bound, "t_long": t_long, "flagged": int(report.flagged.sum()),
            "first_flag_times": [round(float(x), 4) for x in first], "reasons": sorted(set(report.reasons.values())),
            "scored_horizon": float(te[-1]), "flagged_in_scored_horizon": int(rep8.flagged.sum()),
            "scored_rollouts_unchanged": int(sum(same)), "blowup_histories": histories, "margins_used": margins,
            "guarded_end_max_abs_w": [float(x) for x in sol[:, -1].abs().amax(dim=(-2, -1))]}


def margins_used(host, sol: torch.Tensor) -> dict[str, float]:
    """How close the trajectories that did not blow up (``sol [B, nt, n, n]``) came to the guard's
    thresholds: their largest ``max |omega|`` and weights' departure over the training maxima."""
    d = host.interpolation.domain
    fields = sol.reshape(-1, *sol.shape[-2:])
    if len(fields) == 0:
        return {"state": float("nan"), "departure": float("nan")}
    system = host.system()
    dep = max(weight_departure(host.interpolation, system, chunk) for chunk in fields.split(256))
    return {"state": float(fields.abs().max()) / float(d[0]), "departure": dep / float(d[1])}


def blowup_history(c, models, w0: torch.Tensor, t_long: float, frame: float = 0.05) -> dict[str, Any]:
    """How one unguarded trajectory (``w0 [n, n]``) blows up: every ``frame`` from 1.5 time units
    before its first overflow-bound crossing, ``max |omega|``, the largest ``|u| + |v|`` against
    the CFL limit ``dx / step``, and the departure of its weights from the base scheme."""
    host = models[c["model"]]
    system = host.system()
    t = torch.arange(0.0, t_long + 1e-9, frame, dtype=torch.float64)
    sol = k.rollout(c, models, w0[None], t)[0]
    peak = sol.abs().amax(dim=(-2, -1)).nan_to_num(float("inf"))
    over = int(torch.nonzero(peak > 2 * peak[0]).reshape(-1)[0]) if bool((peak > 2 * peak[0]).any()) else len(t) - 1
    rows = []
    for i in range(max(0, over - int(round(1.5 / frame))), min(len(t), over + 4)):
        w = sol[i]
        row = {"t": round(float(t[i]), 4), "max_abs_w": float(peak[i])}
        if bool(torch.isfinite(w).all()):
            u, v = system.velocity(w)
            dep = weight_departure(host.interpolation, system, w[None])
            row.update(max_speed=float((u.abs() + v.abs()).max()), departure=dep)
        rows.append(row)
    return {"cfl_speed": system.dx / k.step_of(c), "frames": rows}


def guard_cost(c, models, w, rounds: int) -> dict[str, Any]:
    """Per-step CPU time with the guard over without it (module docstring)."""
    h = k.step_of(c)
    system, method, _ = k.system_of(c, models)

    def run(n, guard):
        with torch.no_grad():
            return solve(system, w, torch.tensor([0.0, n * h], dtype=torch.float64), method=method, step_size=h,
                         guard=guard, options={"check_finite": False})[-1]
    if not torch.equal(run(STEPS[1], None), run(STEPS[1], "fallback")):
        raise AssertionError("the guarded and unguarded timed solves differ: the guard flagged a timed state")
    per = {None: [], "fallback": []}
    for r in range(rounds):
        for g in ((None, "fallback") if r % 2 == 0 else ("fallback", None)):
            pair = []
            for n in STEPS:
                c0 = time.process_time()
                run(n, g)
                pair.append(time.process_time() - c0)
            per[g].append((pair[1] - pair[0]) / (STEPS[1] - STEPS[0]))
    ratios = sorted(a / b for a, b in zip(per["fallback"], per[None]))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"unguarded_ms": 1e3 * statistics.median(per[None]), "guarded_ms": 1e3 * statistics.median(per["fallback"]),
            "ratio": statistics.median(ratios), "ratio_q1_q3": [q[0], q[2]], "rounds": rounds, "batch": len(w)}


def _run(args, run) -> dict[str, Any]:
    cache = Path(args.cache)
    setting = k.PROTOCOL[args.regime]
    tag = f"{args.regime}_{SIZES[args.size]}"  # the bench's cache tag
    test = k.load_h5(cached_set(cache, f"test_{tag}_", k._seed_tag(args.test_seed, k.TEST_SEED)))
    ref = test.y.to(k.DTYPE)
    step = k.step_for(k.COARSE_N, k.STEP_SCALE[args.regime]["fd"], setting["frame"])
    w = k.spectral_restrict(ref[:, -1], k.COARSE_N).repeat(BATCH // len(ref) + 1, 1, 1)[:BATCH]
    rows = {}
    for path in models_in(cache, tag, args.train_seed):
        host, record = load_model(path)
        states = training_states(cache, tag, record, args.train_seed)
        host.record_interpolation_domain(states)
        c = {"base": "fd", "n": k.COARSE_N, "model": k.LI, "step": step}
        models = {k.LI: host}
        t0 = time.perf_counter()
        row = {"model": path.name, "parameters": record["parameters"], "hidden": record["hidden"],
               "layers": record["layers"], "trajectories": record["trajectories"], "loss": record.get("loss", "mse"),
               "domain": [float(x) for x in host.interpolation.domain], "domain_text": host.interpolation.domain_text,
               **rollouts(c, models, ref, args.t_long, test.t)}
        row["cost"] = guard_cost(c, models, w, args.rounds)
        rows[path.stem] = row
        run.log(f"{path.stem}: blow-ups {row['blown_up']}/{row['n']} -> guarded {row['guarded_blown_up']}/{row['n']}, "
                f"{row['flagged']} fell back {row['first_flag_times']}; scored rollouts unchanged "
                f"{row['scored_rollouts_unchanged']}/{row['n']}; cost x{row['cost']['ratio']:.3f} "
                f"({time.perf_counter() - t0:.0f}s)")
    report = run.report(setup={"regime": args.regime, "size": args.size, "cache": str(cache), "test_seed": args.test_seed,
                               "train_seed": args.train_seed, "t_long": args.t_long, "step": step,
                               "rounds": args.rounds, "batch": BATCH, "steps": list(STEPS),
                               "t_eval": float(test.t[-1])}, models=rows)
    run.stamp(report, complete=True)
    return report


def to_markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    L = ["# The learned interpolation's guard on the trained Kolmogorov models", "",
         f"Regime {s['regime']}, the bench's held-out test initial conditions (seed {s['test_seed']}), step "
         f"{s['step']:.4g}. Blow-ups by t = {s['t_long']:g}: non-finite or |w| above 5× the reference maximum. "
         f"Guarded: `solve(..., guard=\"fallback\")`, a trajectory whose max |w| exceeds {STATE_MARGIN:g}× the "
         f"training maximum, or whose weights depart from the base scheme by more than {DEPARTURE_MARGIN:g}× the "
         "training maximum, takes the base scheme's weights from then on. Scored rollouts: the test frames to "
         f"t = {min(s['t_eval'], SCORED):g}, guarded against unguarded, bit for bit. "
         f"Cost: per-step CPU time with the guard over without it, batch {s['batch']}, one thread, median "
         f"[quartiles] over {s['rounds']} interleaved rounds.", "",
         f"Closest approach: over the trajectories that did not blow up (every {MARGIN_FRAME:g} time units to "
         f"t = {s['t_long']:g}), the largest max |w| and departure over the training maxima; the guard flags above "
         f"{STATE_MARGIN:g} and {DEPARTURE_MARGIN:g}.", "",
         "| model | params | training maxima: max \\|w\\|, departure | closest approach: max \\|w\\|, departure "
         "| blow-ups | guarded blow-ups | fell back (first t) | scored rollouts unchanged | guard cost |",
         "|---|---|---|---|---|---|---|---|---|"]
    for m in r["models"].values():
        c = m["cost"]
        L.append(f"| {_build(m)} (`{m['model']}`) | "
                 f"{m['parameters']} | {m['domain'][0]:.3g}, {m['domain'][1]:.3g} | "
                 f"{m['margins_used']['state']:.2f}×, {m['margins_used']['departure']:.2f}× | {m['blown_up']}/{m['n']} | "
                 f"{m['guarded_blown_up']}/{m['n']} | {m['flagged']}"
                 + (f" ({', '.join(f'{x:.3g}' for x in m['first_flag_times'])})" if m["flagged"] else "")
                 + f" | {m['scored_rollouts_unchanged']}/{m['n']} | {c['ratio']:.3f}× [{c['ratio_q1_q3'][0]:.3f}, "
                 f"{c['ratio_q1_q3'][1]:.3f}] ({c['unguarded_ms']:.3g} ms a step) |")
    reasons = sorted({x for m in r["models"].values() for x in m["reasons"]})
    if reasons:
        L += ["", "What flagged them: " + "; ".join(reasons) + "."]
    for m in r["models"].values():
        for i, h in m.get("blowup_histories", {}).items():
            L += ["", f"How `{m['model']}` blows up on test initial condition {i} without the guard (its largest "
                  f"|u| + |v| against the CFL speed dx / step = {h['cfl_speed']:.3g}; the departure of its weights "
                  f"from the base scheme against the training maximum {m['domain'][1]:.3g}; with the guard its max "
                  f"|w| at t = {s['t_long']:g} is {m['guarded_end_max_abs_w'][int(i)]:.3g}):", "",
                  "| t | max \\|w\\| | max \\|u\\| + \\|v\\| | departure |", "|---|---|---|---|"]
            L += [f"| {f['t']:g} | {f['max_abs_w']:.4g} | " + (f"{f['max_speed']:.3g} | {f['departure']:.3g} |"
                                                              if "max_speed" in f else "— | — |") for f in h["frames"]]
    return "\n".join(L) + "\n"


def _build(m: dict[str, Any]) -> str:
    arch = "linear 3×3 map" if m["layers"] == 1 else f"{m['hidden']} ch × {m['layers']} layers"
    loss = f", loss {m['loss']}" if m.get("loss", "mse") != "mse" else ""
    return f"{arch}, {m['trajectories']} traj{loss}"


def main(argv=None) -> int:
    ap = parser("kolmogorov_li_guard", __doc__.split("\n\n")[0], out="out/bench-kolmogorov-li-guard")
    ap.add_argument("--regime", choices=sorted(k.PROTOCOL), default="re500")
    ap.add_argument("--cache", default="out/kolmogorov_cache", help="the Kolmogorov bench's data and model cache")
    ap.add_argument("--test-seed", type=int, default=k.TEST_SEED)
    ap.add_argument("--train-seed", type=int, default=k.TRAIN_SEED)
    ap.add_argument("--size", choices=sorted(SIZES), default="full",
                    help="which of the bench's runs made the cache: full (default), --quick or the test's tiny one")
    ap.add_argument("--t-long", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.t_long <= 0:
        ap.error(f"--t-long must be > 0, got {args.t_long}")
    run = Run("kolmogorov_li_guard", argv, schema=SCHEMA)
    with k.regime(args.regime):
        report = _run(args, run)
        write_report(args.out, "kolmogorov_li_guard", report, to_markdown)
    run.log(f"wrote {Path(args.out) / 'kolmogorov_li_guard.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
