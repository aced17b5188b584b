"""Speed of ``attsolver.solve`` against the peers a user would otherwise pick.

Contenders: attsolver eager and compiled (``options={"compile": True}``), diffrax and
exponax under ``jax.jit`` (JAX on the CPU, float64, one thread), torchode, torchdiffeq and a
plain NumPy loop.  A peer that is not installed is skipped with a note (``pip install
attsolver[bench]`` installs them all).

Method: every contender solves the same problem with the same method in float64 in one
process; before any timing, each contender's trajectory is checked equal to attsolver's
(same arithmetic, so to round-off; chaotic systems on a prefix of the steps).  The first call
of each contender (JIT compilation, ``torch.compile``) is timed and reported apart.  Then the
rounds are interleaved (each round runs every contender once) and the minimum per contender
is reported as microseconds per step (the median is in the JSON), with ratios
``peer time / attsolver time`` (< 1 means the peer is faster).

    python benchmarks/speed.py [--quick] [--rounds N] [--cases lorenz63,lorenz96,burgers,ks] [--out benchmarks/results]
"""

from __future__ import annotations

import os

# JAX on the CPU, one thread, float64: set before jax is imported anywhere
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_ENABLE_X64", "1")

import re  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attsolver  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, parser, provenance_lines, read_report, timings, write_report  # noqa: E402

PROG = "python benchmarks/speed.py"
RK4_A = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
RK4_B = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
RK4_C = (0.0, 0.5, 0.5, 1.0)


def _peer(name: str):
    """Import a peer or return ``None`` (the note says which and why)."""
    try:
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
            return jax
        return __import__(name)
    except Exception as e:  # noqa: BLE001 - any import failure means "skip this peer"
        NOTES.append(f"{name} not available ({type(e).__name__}: {e}); its rows are skipped")
        return None


NOTES: list[str] = []


# ----------------------------------------------------------------------------- NumPy floors


def np_rk4(f, y, h, n):
    """Classic RK4, the plain NumPy loop a user would write (the practical floor)."""
    out = np.empty((n + 1,) + y.shape)
    out[0] = y
    for i in range(n):
        k1 = f(y)
        k2 = f(y + 0.5 * h * k1)
        k3 = f(y + 0.5 * h * k2)
        k4 = f(y + h * k3)
        y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out[i + 1] = y
    return out


def np_lorenz63(s):
    sig, rho, beta = s.sigma, s.rho, s.beta

    def f(y):
        x, yy, z = y
        return np.array([sig * (yy - x), x * (rho - z) - yy, x * yy - beta * z])

    return f


def np_lorenz96(s):
    F = s.F

    def f(y):
        return (np.roll(y, -1, -1) - np.roll(y, 2, -1)) * np.roll(y, 1, -1) - y + F

    return f


def np_etdrk4_solver(symbol, nx, cutoff, k, h, n_contour=16):
    """Cox–Matthews ETDRK4 with Kassam–Trefethen contour coefficients for
    ``u_t = L u - (1/2)(u^2)_x`` (2/3-rule dealiased), in NumPy."""
    L = symbol
    mask = np.arange(len(k)) < cutoff
    g = -0.5j * k * mask

    def N(v):
        return g * np.fft.rfft(np.fft.irfft(v * mask, n=nx) ** 2)

    E, E2 = np.exp(h * L), np.exp(h * L / 2)
    r = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    LR = h * L[:, None] + r[None, :]
    Q = h * np.real(np.mean((np.exp(LR / 2) - 1) / LR, axis=1))
    f1 = h * np.real(np.mean((-4 - LR + np.exp(LR) * (4 - 3 * LR + LR**2)) / LR**3, axis=1))
    f2 = h * np.real(np.mean((2 + LR + np.exp(LR) * (-2 + LR)) / LR**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * LR - LR**2 + np.exp(LR) * (4 - LR)) / LR**3, axis=1))

    def run(u0, steps):
        v = np.fft.rfft(u0)
        out = np.empty((steps + 1, nx))
        out[0] = u0
        for i in range(steps):
            Nv = N(v)
            a = E2 * v + Q * Nv
            Na = N(a)
            b = E2 * v + Q * Na
            Nb = N(b)
            c = E2 * a + Q * (2 * Nb - Nv)
            Nc = N(c)
            v = E * v + Nv * f1 + 2 * (Na + Nb) * f2 + Nc * f3
            out[i + 1] = np.fft.irfft(v, n=nx)
        return out

    return run


# ----------------------------------------------------------------------------- peers


def diffrax_rk4(f_jax, y0: np.ndarray, h: float, steps: int):
    """A jitted diffrax solve with classic RK4 (a custom tableau), constant step, every step saved."""
    jax, diffrax = _peer("jax"), _peer("diffrax")
    if jax is None or diffrax is None:
        return None
    import jax.numpy as jnp
    from diffrax._local_interpolation import ThirdOrderHermitePolynomialInterpolation

    rk4_tableau = diffrax.ButcherTableau(
        a_lower=tuple(np.array(r) for r in RK4_A[1:]), b_sol=np.array(RK4_B),
        b_error=np.array(RK4_B) - np.array([0.0, 0.0, 0.0, 1.0]), c=np.array(RK4_C[1:]))

    class RK4(diffrax.AbstractERK):
        tableau = rk4_tableau
        interpolation_cls = ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    term = diffrax.ODETerm(lambda t, y, args: f_jax(y))
    solver = RK4()

    @jax.jit
    def run(y):
        sol = diffrax.diffeqsolve(term, solver, t0=0.0, t1=steps * h, dt0=h, y0=y,
                                  saveat=diffrax.SaveAt(t0=True, steps=True),
                                  stepsize_controller=diffrax.ConstantStepSize(), max_steps=steps)
        return sol.ys

    y = jnp.asarray(y0)
    return lambda: run(y).block_until_ready()


def torchode_rk4(system, y0: torch.Tensor, t: torch.Tensor, h: float):
    """torchode with classic RK4 (a custom tableau) and a fixed step; the batch is torchode's."""
    to = _peer("torchode")
    if to is None:
        return None
    from torchode.interpolation import ThirdOrderPolynomialInterpolation
    from torchode.single_step_methods.runge_kutta import ButcherTableau, ExplicitRungeKutta

    tab = ButcherTableau.from_lists(c=list(RK4_C), a=[list(r) for r in RK4_A], b=list(RK4_B),
                                    b_low_order=[0.0, 0.0, 0.0, 1.0])

    class RK4(ExplicitRungeKutta):
        def __init__(self, term=None):
            super().__init__(term, tab)

        def convergence_order(self):
            return 4

        def build_interpolation(self, data):
            return ThirdOrderPolynomialInterpolation.from_k(data.t0, data.dt, data.y0, data.y1, data.k)

    batch = y0.reshape(-1, y0.shape[-1]) if y0.ndim > 1 else y0[None]
    term = to.ODETerm(lambda tt, y: system(tt, y))
    solver = to.AutoDiffAdjoint(RK4(term), to.FixedStepController())
    problem = to.InitialValueProblem(y0=batch, t_eval=t.expand(len(batch), -1))
    dt0 = torch.full((len(batch),), h, dtype=torch.float64)

    def run():
        ys = solver.solve(problem, dt0=dt0).ys  # [batch, time, features]
        return ys.transpose(0, 1).reshape(len(t), *y0.shape)

    return run


def exponax_etdrk4(kind: str, system, h: float, steps: int, u0: np.ndarray):
    jax, exponax = _peer("jax"), _peer("exponax")
    if jax is None or exponax is None:
        return None
    import jax.numpy as jnp

    # the same dealiasing as attsolver's (modes m < nx/3 kept: exponax keeps |m| <= fraction *
    # (nx/2) - 1) and the same 32-point contour as Kassam-Trefethen's (ours: 16 on the upper half)
    common = dict(order=4, num_circle_points=32,
                  dealiasing_fraction=(system.dealias_cutoff + 0.5) / (system.nx // 2))
    if kind == "burgers":
        stepper = exponax.stepper.Burgers(1, system.length, system.nx, h, diffusivity=system.nu,
                                          conservative=True, **common)
    else:
        stepper = exponax.stepper.KuramotoSivashinskyConservative(1, system.length, system.nx, h, **common)
    run = jax.jit(exponax.rollout(stepper, steps, include_init=True))
    u = jnp.asarray(u0)[None]  # exponax's channel axis
    return lambda: run(u).block_until_ready()


# ----------------------------------------------------------------------------- timing


def _as_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().numpy()
    return np.asarray(x, dtype=np.float64)


def timed(contenders: dict, reference: dict, prefix: int, tol: float, rounds: int, steps: int) -> dict:
    """Every contender's first call (compilation, JIT) timed apart, its output checked against
    ``reference[name]`` (the attsolver trajectory doing the same arithmetic) on the first
    ``prefix`` outputs, then ``rounds`` interleaved rounds: microseconds per step, min and median."""
    def check(name, out):
        ref = reference.get(name)
        if ref is not None:
            a, b = _as_np(out).reshape(_as_np(ref).shape)[:prefix], _as_np(ref)[:prefix]
            err = float(np.abs(a - b).max() / (np.abs(b).max() + 1e-300))
            if not err <= tol:
                raise AssertionError(f"{name}: differs from attsolver by {err:.2e} (relative) on the first "
                                     f"{prefix} outputs: the benchmark would not compare equal work")

    t = timings(contenders, rounds, first=check)
    return {"first_call_s": {k: v.first_s for k, v in t.items()},
            "us_per_step": {k: {"min": v.min() / steps * 1e6, "median": v.median() / steps * 1e6}
                            for k, v in t.items()}}


# ----------------------------------------------------------------------------- cases


def case_rk4(key: str, title: str, system, y0: torch.Tensor, h: float, steps: int, f_np, f_jax,
             rounds: int, use_compile: bool, prefix: int, tol: float) -> dict:
    import torchdiffeq

    t = torch.linspace(0, steps * h, steps + 1, dtype=torch.float64)
    ref = attsolver.solve(system, y0, t, method="rk4")
    ref38 = attsolver.solve(system, y0, t, method="rk38")
    contenders = {
        "attsolver rk4 (eager)": lambda: attsolver.solve(system, y0, t, method="rk4"),
        "torchdiffeq rk4 (3/8 rule)": lambda: torchdiffeq.odeint(system, y0, t, method="rk4"),
        "numpy rk4 loop": lambda: np_rk4(f_np, y0.numpy(), h, steps),
    }
    reference = {"torchdiffeq rk4 (3/8 rule)": ref38, "numpy rk4 loop": ref}
    if use_compile:
        contenders["attsolver rk4 (compile)"] = lambda: attsolver.solve(system, y0, t, method="rk4",
                                                                        options={"compile": True})
        reference["attsolver rk4 (compile)"] = ref
    dfx = diffrax_rk4(f_jax, y0.numpy(), h, steps)
    if dfx is not None:
        contenders["diffrax rk4 (jit)"] = dfx
        reference["diffrax rk4 (jit)"] = ref
    tod = torchode_rk4(system, y0, t, h)
    if tod is not None:
        contenders["torchode rk4"] = tod
        reference["torchode rk4"] = ref
    return {"case": key, "title": title, "steps": steps, **timed(contenders, reference, prefix, tol, rounds, steps)}


def case_spectral(kind: str, nx: int, rounds: int, steps: int, use_compile: bool) -> dict:
    if kind == "burgers":
        system = attsolver.systems.Burgers(nu=0.01, nx=nx, length=1.0)
        h = 1e-3
        title = f"Burgers (nu=0.01), nx={nx}, one field, ETDRK4, h={h:g}, {steps} steps"
    else:
        system = attsolver.systems.KuramotoSivashinsky(nx=nx)
        h = 0.05
        title = f"Kuramoto–Sivashinsky (L=32π), nx={nx}, one field, ETDRK4, h={h:g}, {steps} steps"
    u0 = system.sample_initial(1, generator=torch.Generator().manual_seed(0))[0]
    t = torch.linspace(0, steps * h, steps + 1, dtype=torch.float64)
    ref = attsolver.solve(system, u0, t, method="etdrk4")
    k = 2 * np.pi * np.fft.rfftfreq(nx, d=system.length / nx)
    symbol = system.linear_symbol(torch.float64, "cpu").numpy()
    np_run = np_etdrk4_solver(symbol, nx, system.dealias_cutoff, k, h)
    contenders = {
        "attsolver etdrk4 (eager)": lambda: attsolver.solve(system, u0, t, method="etdrk4"),
        "numpy etdrk4 loop": lambda: np_run(u0.numpy(), steps),
    }
    reference = {"numpy etdrk4 loop": ref}
    if use_compile:
        contenders["attsolver etdrk4 (compile)"] = lambda: attsolver.solve(system, u0, t, method="etdrk4",
                                                                           options={"compile": True})
        reference["attsolver etdrk4 (compile)"] = ref
    exx = exponax_etdrk4(kind, system, h, steps, u0.numpy())
    if exx is not None:
        contenders["exponax etdrk4 (jit)"] = exx
        reference["exponax etdrk4 (jit)"] = ref
    return {"case": f"{kind}_{nx}", "title": title, "steps": steps,
            **timed(contenders, reference, steps + 1, 1e-8, rounds, steps)}


# ----------------------------------------------------------------------------- report


def summary_row(case: dict) -> dict:
    us = {k: v["min"] for k, v in case["us_per_step"].items()}
    ours = {k: v for k, v in us.items() if k.startswith("attsolver")}
    eager = next(v for k, v in ours.items() if "(eager)" in k)
    compiled = next((v for k, v in ours.items() if "(compile)" in k), None)
    peers = {k: v for k, v in us.items() if not k.startswith("attsolver")}
    best_name = min(peers, key=peers.get)
    row = {"case": case["title"], "attsolver_eager": eager, "attsolver_compile": compiled,
           "best_peer": best_name, "best_peer_us": peers[best_name],
           "ratio_eager": peers[best_name] / eager,
           "ratio_compile": None if compiled is None else peers[best_name] / compiled}
    for name in peers:
        row[f"ratio_vs {name}"] = peers[name] / min(ours.values())
    return row


def to_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Speed: attsolver.solve against diffrax, exponax, torchode, torchdiffeq and NumPy",
        "",
        *provenance_lines(report, software=f", numpy {m['numpy']}, jax {m.get('jax') or '—'}"),
        f"JAX: CPU, float64, `XLA_FLAGS={m.get('xla_flags', '')}`. The machine's cores are shared with other jobs: "
        "absolute times are noisy, ratios less so.",
        "",
        "Every contender's trajectory was checked equal to attsolver's before timing.  Figures are "
        "µs per solver step, the minimum over interleaved rounds (median in the JSON); first-call "
        "times (JIT / `torch.compile` compilation) are listed apart and are not in the per-step "
        "figures.  `ratio` = best peer's time / attsolver's (< 1: the peer is faster).  For the "
        "ETDRK4 cases `compile` runs the eager loop and says so (inductor generates no code for "
        "complex arithmetic, and compiling made those steps 2-3x slower), so its row times the eager loop.",
        "",
        "| case | attsolver eager | attsolver compile | best peer | ratio (eager) | ratio (compile) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for c in report["cases"]:
        r = c["summary"]
        comp = f"{r['attsolver_compile']:.1f}" if r["attsolver_compile"] is not None else "—"
        rc = f"{r['ratio_compile']:.2f}" if r["ratio_compile"] is not None else "—"
        lines.append(f"| {r['case']} | {r['attsolver_eager']:.1f} | {comp} | {r['best_peer']} "
                     f"{r['best_peer_us']:.1f} | {r['ratio_eager']:.2f} | {rc} |")
    lines.append("")
    for c in report["cases"]:
        ours = min(v["min"] for k, v in c["us_per_step"].items() if k.startswith("attsolver"))
        made = f"Made by `{c['command']}`.  " if c.get("command") else ""
        lines += [f"## {c['title']}", "", made + "Sorted by time:", "",
                  "| contender | µs/step (min) | µs/step (median) | time / fastest attsolver | first call, s |",
                  "|---|---:|---:|---:|---:|"]
        for name, v in sorted(c["us_per_step"].items(), key=lambda kv: kv[1]["min"]):
            lines.append(f"| {name} | {v['min']:.2f} | {v['median']:.2f} | {v['min'] / ours:.2f}× | "
                         f"{c['first_call_s'][name]:.2f} |")
        lines.append("")
    if report["notes"]:
        lines += ["Notes:", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def plot(report: dict):
    """``speed.png``: per case, microseconds per step of every contender (minimum over rounds)."""
    cases = report["cases"]
    fig, ax = figure(figsize=(8, 0.5 + 0.45 * sum(len(c["us_per_step"]) for c in cases)))
    y, ticks = 0, []
    for i, c in enumerate(cases):
        for name, v in sorted(c["us_per_step"].items(), key=lambda kv: -kv[1]["min"]):
            ax.barh(y, v["min"], color="C0" if name.startswith("attsolver") else "0.6")
            ticks.append((y, f"{c['case']}: {name}"))
            y += 1
        y += 0.6
    ax.set_yticks([t for t, _ in ticks], [lab for _, lab in ticks], fontsize=7)
    ax.set(xscale="log", xlabel="µs per step (minimum over interleaved rounds; blue: attsolver)")
    yield "speed.png", fig


def _case_order(case: dict) -> tuple:
    """lorenz63, lorenz96 by batch, burgers by nx, ks by nx."""
    name = case["case"]
    kind = next(i for i, k in enumerate(("lorenz63", "lorenz96", "burgers", "ks")) if name.startswith(k))
    size = re.findall(r"(\d+)$", name)
    return kind, int(size[0]) if size and kind else 0


def main(argv=None) -> int:
    ap = parser("speed", __doc__, prog=PROG, quick="fewer steps and rounds, no compile rows")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--cases", default="all", help="comma-separated subset: lorenz63,lorenz96,burgers,ks")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    use_compile = not (args.no_compile or args.quick)
    want = set(args.cases.split(",")) if args.cases != "all" else {"lorenz63", "lorenz96", "burgers", "ks"}
    jax = _peer("jax")
    # NumPy's elementwise loops and JAX (XLA_FLAGS) run one thread too
    run = Run("speed", argv, prog=PROG, quick=args.quick, jax=None if jax is None else jax.__version__,
              xla_flags=os.environ.get("XLA_FLAGS", ""))
    jnp = None if jax is None else jax.numpy
    cases = []
    if "lorenz63" in want:
        s = attsolver.systems.Lorenz63()
        sig, rho, beta = s.sigma, s.rho, s.beta
        f_jax = None if jnp is None else (lambda y: jnp.stack(
            [sig * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]]))
        steps = 500 if args.quick else 2000
        cases.append(case_rk4("lorenz63_single", f"Lorenz-63, one trajectory, RK4, {steps} steps", s,
                              torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), 0.01, steps,
                              np_lorenz63(s), f_jax, rounds, use_compile, prefix=100, tol=1e-11))
    if "lorenz96" in want:
        s = attsolver.systems.Lorenz96(N=40, F=8.0)
        F = s.F
        f_jax = None if jnp is None else (
            lambda y: (jnp.roll(y, -1, -1) - jnp.roll(y, 2, -1)) * jnp.roll(y, 1, -1) - y + F)
        steps = 100 if args.quick else 400
        for batch in ((1024,) if args.quick else (256, 1024, 4096)):
            y0 = s.sample_initial(batch, generator=torch.Generator().manual_seed(0))
            cases.append(case_rk4(f"lorenz96_batch{batch}", f"Lorenz-96 (N=40), batch {batch}, RK4, {steps} steps",
                                  s, y0, 0.01, steps, np_lorenz96(s), f_jax, rounds, use_compile,
                                  prefix=50, tol=1e-11))
    for kind in ("burgers", "ks"):
        if kind in want:
            for nx in (256, 1024):
                cases.append(case_spectral(kind, nx, rounds, 100 if args.quick else 400, use_compile))
    for c in cases:
        c["summary"] = summary_row(c)
        c["command"] = run.record["command"]
    out = Path(args.out)
    if args.cases != "all" and (out / "speed.json").exists():  # keep the cases not rerun
        rerun = {c["case"] for c in cases}
        kept = [c for c in read_report(out / "speed.json")["cases"] if c["case"] not in rerun]
        cases = sorted(kept + cases, key=_case_order)
    report = run.report(rounds=rounds, cases=cases, notes=sorted(set(NOTES)))
    write_report(out, "speed", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        sys.exit(main())
