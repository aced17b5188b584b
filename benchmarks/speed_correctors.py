"""What one corrected step costs, as a multiple of the classical step: every corrector family,
dense and local, eager and compiled (``options={"compile": True}``), float64 and float32.

Cases (the issue-14 table): Lorenz-96 (N = 40), a batch of 1024 states, RK4 at h = 0.125;
the spring chain (20 masses), a batch of 1024, Euler at h = 0.2.  Each corrector has its
package defaults and random weights of the trained scale (its untrained zero head would be
as costly, but a zero correction proves nothing about the outputs check).

Precisions:
* ``float64``: state and corrector in float64 (how the ODE suite scores correctors);
* ``float32``: state and corrector in float32, against the float32 classical step;
* ``mixed``: float64 state, float32 local corrector (``mixed_precision=True``): the
  correction is computed in float32 and cast back, against the float64 classical step.

For every (case, precision, mode) the classical solve and the corrected solves run in one
process, one thread, in interleaved rounds; the shortest time per contender is kept, so
machine noise hits all alike.  The classical step is also timed in the other mode (eager in
a compiled run and vice versa), and a second table gives each corrected step against the
faster of the two.  Before timing, each compiled solution is checked against the eager one,
and each mixed-precision solution against the float64 one, over one compiled chunk (over the
timed steps Lorenz-96's chaos grows rounding differences ~1e7-fold).  Compile time (first
call) is reported apart and is not in the per-step figures.

Under ``torch.compile`` the local correctors run their elementwise form
(``LocalCorrector.pointwise_forward``); eager under ``torch.no_grad`` their folded, in-place
GEMM form.

    python benchmarks/speed_correctors.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

import attsolver
from attsolver.correctors import AttSolver, Hypersolver, LocalAttSolver, LocalHypersolver, LocalNeurVec, NeurVec
from attsolver.integrate.compiled import clear_compile_cache, compile_stats
from attsolver.systems import Lorenz96, SpringChain

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Progress, Run, figure, parser, provenance_lines, timings, write_report  # noqa: E402

PROG = "python benchmarks/speed_correctors.py"
CASES = {
    "lorenz96": {"title": "Lorenz-96 (N=40), batch 1024, RK4, h=0.125", "system": lambda: Lorenz96(N=40),
                 "method": "rk4", "h": 0.125, "target": 1.5},
    "spring_chain": {"title": "spring chain (20 masses), batch 1024, Euler, h=0.2", "system": lambda: SpringChain(n=20),
                     "method": "euler", "h": 0.2, "target": 2.0},
}
#: family -> (dense class, local class); the package defaults of each
FAMILIES = {"NeurVec": (NeurVec, LocalNeurVec), "Hypersolver": (Hypersolver, LocalHypersolver),
            "AttSolver-add": (AttSolver, LocalAttSolver)}
PRECISIONS = ("float64", "float32", "mixed")
BATCH = 1024


def build(form: str, family: str, system, method: str, h: float, precision: str):
    """A corrector with random weights of a trained model's scale, in eval mode."""
    dense, local = FAMILIES[family]
    dtype = torch.float64 if precision == "float64" else torch.float32
    if form == "dense":
        model = dense(system.state_shape, method=method, step_size=h, dtype=dtype)
    else:
        model = local.for_system(system, method=method, step_size=h, dtype=dtype,
                                 mixed_precision=precision == "mixed")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
        model.out_scale.fill_(1e-3)  # a small correction keeps the rollout bounded
    return model.eval()


def run_case(name: str, precision: str, compiled: bool, rounds: int, steps: int, forms: tuple[str, ...],
             chunk: int = 8) -> dict:
    spec = CASES[name]
    system = spec["system"]()
    method, h = spec["method"], spec["h"]
    state_dtype = torch.float32 if precision == "float32" else torch.float64
    y0 = system.sample_initial(BATCH, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if name == "lorenz96":  # onto the attractor first (from F + noise the coarse step can blow up)
        with torch.no_grad():
            y0 = attsolver.solve(system, y0, torch.tensor([0.0, 5.0], dtype=torch.float64), step_size=0.01)[-1]
    y0 = y0.to(state_dtype)
    t = torch.tensor([0.0, steps * h], dtype=torch.float64)
    models = {}
    for family in FAMILIES:
        for form in forms:
            if precision == "mixed" and form == "dense":
                continue  # the dense correctors take one dtype only
            models[f"{family} {form}"] = build(form, family, system, method, h, precision)

    def solver(model, use_compile, span=t):
        opts = {"check_finite": False, "compile": use_compile, "compile_chunk": chunk}
        return lambda: attsolver.solve(system, y0, span, method=method, step_size=h, corrector=model, options=opts)

    # the classical step in the other mode too: a user would run the faster one
    fns = {"classical": solver(None, compiled), "classical other mode": solver(None, not compiled),
           **{k: solver(m, compiled) for k, m in models.items()}}
    contenders = {"classical": None, "classical other mode": None, **models}
    uses_compile = {k: compiled != (k == "classical other mode") for k in fns}
    compile_s = {}
    # Outputs are checked over one compiled chunk: over the timed 32 steps Lorenz-96's chaos grows
    # rounding-level differences (MKL's summation order depends on buffer alignment) ~1e7-fold
    check_t = torch.tensor([0.0, chunk * h], dtype=torch.float64)
    with torch.no_grad():
        for k, m in contenders.items():  # the first compiled call compiles (the timed calls reuse it)
            ref = solver(m, False, check_t)()
            before = compile_stats()["compile_seconds"]
            out = solver(m, uses_compile[k], check_t)()
            compile_s[k] = compile_stats()["compile_seconds"] - before if uses_compile[k] else 0.0
            if not bool(torch.isfinite(out).all()):
                raise RuntimeError(f"{name} {precision}: {k} is not finite")
            # float32: rounding differs when fused (sums in another order)
            tol = {"float64": 1e-10, "mixed": 1e-6, "float32": 1e-4}[precision]
            torch.testing.assert_close(out, ref, rtol=tol, atol=tol, msg=f"{name} {precision} {k}: compiled != eager")
            if precision == "mixed" and m is not None:
                # the float32 correction on float64 states against the all-float64 corrector
                exact = solver(copy.deepcopy(m).double(), False, check_t)()
                torch.testing.assert_close(ref, exact, rtol=1e-6, atol=1e-6)
        def bounded(k, out):  # the warm-up call: the timed span stays bounded
            if not bool(torch.isfinite(out).all()):
                raise RuntimeError(f"{name} {precision}: {k} is not finite over {steps} steps")

        best = {k: t.min() for k, t in timings(fns, rounds, first=bounded).items()}
    base = best["classical"]
    fastest = min(base, best["classical other mode"])
    rows = []
    for k, m in models.items():
        family, form = k.split()
        rows.append({"family": family, "form": form, "n_params": sum(p.numel() for p in m.parameters()),
                     "us_per_step": best[k] / steps * 1e6, "multiple": best[k] / base,
                     "multiple_vs_fastest_classical": best[k] / fastest, "compile_s": compile_s.get(k, 0.0)})
    return {"case": name, "precision": precision, "mode": "compiled" if compiled else "eager",
            "classical_us_per_step": base / steps * 1e6, "classical_compile_s": compile_s.get("classical", 0.0),
            "classical_other_mode_us_per_step": best["classical other mode"] / steps * 1e6,
            "rows": rows}


def _fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}g}"


def to_markdown(report: dict) -> str:
    lines = ["# What a corrected step costs: dense vs local correctors, eager vs compiled", "",
             *provenance_lines(report), f"One thread; {report['rounds']} interleaved rounds of "
             f"{report['steps']} steps, shortest kept; compiled solves fuse {report.get('compile_chunk', 8)} "
             "steps (classical stages and corrector) per graph.", "",
             "Each cell: the corrected step's time as a multiple of the classical step's (same case, precision "
             "and mode, timed in the same rounds).  `float64`: state and corrector in float64 (as the ODE suite "
             "scores them); `float32`: both in float32; `mixed`: float64 state, float32 local corrector "
             "(`mixed_precision=True`).  Compiled: `options={\"compile\": True}` (compile time apart, below).", ""]
    cols = [(p, m) for p in report["precisions"] for m in ("eager", "compiled") if (p, m) in
            {(r["precision"], r["mode"]) for r in report["results"]}]
    for case in report["cases"]:
        spec = CASES[case]
        res = {(r["precision"], r["mode"]): r for r in report["results"] if r["case"] == case}
        if not res:
            continue
        empty = {"rows": [], "classical_us_per_step": None}
        res = {c: res.get(c, empty) for c in cols}
        lines += [f"## {spec['title']}", "",
                  f"Target (issue 14): the default local corrector of each family <= {spec['target']:g}x.", "",
                  "| corrector | params | " + " | ".join(f"{p} {m}" for p, m in cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        keys = []
        for r in res.values():
            for row in r["rows"]:
                if (row["family"], row["form"]) not in keys:
                    keys.append((row["family"], row["form"]))
        keys.sort(key=lambda k: (k[1] != "dense", list(FAMILIES).index(k[0])))
        for fam, form in keys:
            cells, n_params = [], None
            for c in cols:
                row = next((x for x in res[c]["rows"] if (x["family"], x["form"]) == (fam, form)), None)
                if row is not None:
                    n_params = row["n_params"]
                cells.append("—" if row is None else f"{row['multiple']:.2f}×")
            lines.append(f"| {fam} {form} | {n_params:,} | " + " | ".join(cells) + " |")
        lines.append("| classical step, µs | | " + " | ".join(_fmt(res[c]["classical_us_per_step"]) for c in cols) + " |")
        if any("multiple_vs_fastest_classical" in x for r in res.values() for x in r["rows"]):
            lines += ["", "The same, against the faster classical step of the precision (eager or compiled, timed in "
                      "the same rounds): what a user who picks the quicker classical solve pays for the correction.",
                      "",
                      "| corrector | " + " | ".join(f"{p} {m}" for p, m in cols) + " |", "|---|" + "---:|" * len(cols)]
            for fam, form in keys:
                cells = []
                for c in cols:
                    row = next((x for x in res[c]["rows"] if (x["family"], x["form"]) == (fam, form)), None)
                    v = None if row is None else row.get("multiple_vs_fastest_classical")
                    cells.append("—" if v is None else f"{v:.2f}×")
                lines.append(f"| {fam} {form} | " + " | ".join(cells) + " |")
            lines.append("| faster classical step, µs | " + " | ".join(
                _fmt(None if r["classical_us_per_step"] is None else
                     min(r["classical_us_per_step"], r.get("classical_other_mode_us_per_step", float("inf"))))
                for r in (res[c] for c in cols)) + " |")
        comp = [f"{p}: " + ", ".join(f"{x['family']} {x['form']} {x['compile_s']:.1f} s" for x in r["rows"])
                for (p, m), r in res.items() if m == "compiled" and r["rows"]]
        if comp:
            lines += ["", "Compile time (first call, not in the figures; inductor's on-disk cache may hold graphs "
                      "from earlier runs, and a cold compile takes longer): " + "; ".join(comp) + "."]
        lines.append("")
    return "\n".join(lines)


def plot(report: dict):
    """``speed_correctors.png``: per case, each corrected step as a multiple of the classical step,
    one bar per (precision, mode)."""
    cases = [c for c in report["cases"] if any(r["case"] == c for r in report["results"])]
    fig, axes = figure(1, len(cases), figsize=(6.5 * len(cases), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases):
        res = [r for r in report["results"] if r["case"] == case]
        keys = sorted({(x["family"], x["form"]) for r in res for x in r["rows"]},
                      key=lambda k: (k[1] != "dense", list(FAMILIES).index(k[0])))
        width = 0.8 / len(res)
        for i, r in enumerate(res):
            val = {(x["family"], x["form"]): x["multiple"] for x in r["rows"]}
            ax.bar(np.arange(len(keys)) + i * width, [val.get(k, np.nan) for k in keys], width,
                   label=f"{r['precision']} {r['mode']}")
        ax.axhline(CASES[case]["target"], color="k", ls="--", lw=1, label="target (local)")
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [f"{f} {m}" for f, m in keys], rotation=30, ha="right")
        ax.set(yscale="log", ylabel="corrected step / classical step", title=CASES[case]["title"])
        ax.legend(fontsize=7)
    yield "speed_correctors.png", fig


def main(argv=None) -> int:
    ap = parser("speed_correctors", __doc__.split("\n\n")[0], prog=PROG,
                quick="few rounds and steps, eager only (a smoke run)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    ap.add_argument("--modes", nargs="+", choices=("eager", "compiled"), default=["eager", "compiled"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=48, help="steps per timed solve (a multiple of --compile-chunk)")
    ap.add_argument("--compile-chunk", type=int, default=8, help="steps per compiled graph (solve's compile_chunk)")
    args = ap.parse_args(argv)
    run = Run("speed_correctors", argv, prog=PROG, quick=args.quick)
    # every corrector is a new compiled graph of the same step function: lift dynamo's per-code limit
    torch._dynamo.config.recompile_limit = 256
    torch._dynamo.config.cache_size_limit = 256
    rounds, steps, modes = (2, 8, ["eager"]) if args.quick else (args.rounds, args.steps, args.modes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # one record per (case, precision, mode), appended as it finishes: a run resumes, and runs of
    # different cases may go on side by side
    suffix = f"|{rounds}|{steps}|{args.compile_chunk}"
    log = Progress(out / "speed_correctors_progress.jsonl")
    for case in args.cases:
        for precision in args.precisions:
            for mode in modes:
                def measure():  # called at once, by log.run
                    clear_compile_cache()  # every (case, precision, mode) compiles afresh
                    return run_case(case, precision, mode == "compiled", rounds, steps, ("dense", "local"),  # noqa: B023
                                    args.compile_chunk)

                r, new = log.run(f"{case}|{precision}|{mode}{suffix}", measure)
                if new:
                    run.log(f"{case} {precision} {mode}: classical {r['classical_us_per_step']:.0f} us/step; "
                            + ", ".join(f"{x['family']} {x['form']} {x['multiple']:.2f}x" for x in r["rows"]))
    log = Progress(out / "speed_correctors_progress.jsonl")  # with what other runs added meanwhile
    results = [{k: v for k, v in r.items() if k != "key"} for r in log.records.values() if r["key"].endswith(suffix)]
    report = run.report(rounds=rounds, steps=steps, compile_chunk=args.compile_chunk,
                        cases=[c for c in CASES if any(r["case"] == c for r in results)],
                        precisions=[p for p in PRECISIONS if any(r["precision"] == p for r in results)],
                        results=results)
    write_report(out, "speed_correctors", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
