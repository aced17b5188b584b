"""Adaptive reference solvers, delegated to well-kept libraries rather than rewritten.

* ``dopri5`` / ``dopri8``: torchdiffeq's embedded Dormand–Prince pairs (autograd works); with
  ``options={"per_sample": True}`` or a ``[batch, n_t]`` grid, the same pairs with per-sample
  step-size control (:mod:`.embedded`).
* ``scipy_dop853`` / ``scipy_radau`` / ``scipy_lsoda``: ``scipy.integrate.solve_ivp`` on the
  flattened state (batch included), for high-accuracy or stiff references.  No autograd:
  the result is a new tensor with no graph.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validate import boolean
from ._errors import StepSizeUnderflow
from .embedded import erk_solve, get_pair, solver_options
from .registry import MethodSpec, register_method

DEFAULT_RTOL = 1e-7
DEFAULT_ATOL = 1e-9
_TORCHDIFFEQ_PASSTHROUGH = frozenset({"first_step", "max_num_steps", "dtype", "safety", "ifactor", "dfactor"})
_SCIPY_PASSTHROUGH = frozenset({"first_step", "max_step"})
#: default cap on right-hand-side evaluations of the SciPy path: an unstable problem makes
#: solve_ivp shrink its step without end, and this turns that into an error.
DEFAULT_MAX_EVALUATIONS = 2_000_000
#: default cap on torchdiffeq's accepted steps (its own default, 2^31, never ends in practice)
DEFAULT_MAX_NUM_STEPS = 1_000_000


class _Budget(Exception):
    pass


def _backend_options(options: dict) -> tuple[dict, float, float]:
    """``(rest, rtol, atol)`` from ``solve``'s options: the tolerances (with this module's
    defaults) taken out of a copy, and ``check_finite`` (``solve``'s own) dropped; ``rest`` goes to the backend."""
    opts = dict(options)
    rtol = opts.pop("rtol", DEFAULT_RTOL)
    atol = opts.pop("atol", DEFAULT_ATOL)
    opts.pop("check_finite", None)
    return opts, rtol, atol


def _torchdiffeq_runner(name: str):
    def run(f, y0, t, options):
        if boolean("options['per_sample']", options.get("per_sample", False)) or t.dim() == 2:  # own steps
            if t.requires_grad and torch.is_grad_enabled():
                raise ValueError(f"{name} with per-sample step control gives no gradient with respect to t; "
                                 "pass t.detach() or drop options['per_sample']")
            grid = t.detach().cpu().double()
            return erk_solve(get_pair(name), f, y0, grid, solver_options(name, options),
                             sample_dims=1 if y0.dim() >= 2 else 0)  # an unbatched y0 is one sample
        import torchdiffeq  # heavy (~0.8 s, it loads SciPy): only an adaptive solve pays for it

        opts, rtol, atol = _backend_options(options)
        opts.pop("per_sample", None)
        if name == "dopri8":
            # torchdiffeq's dopri8 dense output is far less accurate than its steps (1e-4
            # errors at rtol=1e-7 on Lorenz-63); stepping onto every output time avoids it.
            opts["step_t"] = t
        opts.setdefault("max_num_steps", DEFAULT_MAX_NUM_STEPS)
        last = [float(t[0])]

        def g(tt, yy):
            last[0] = tt
            return f(tt, yy)

        try:
            return torchdiffeq.odeint(g, y0, t, rtol=rtol, atol=atol, method=name, options=opts or None)
        except AssertionError as e:  # torchdiffeq's way to say its step size underflowed
            if "max_num_steps" in str(e):
                raise RuntimeError(
                    f"{name} took {opts['max_num_steps']} steps and reached only t={float(last[0]):.6g} of "
                    f"[{float(t[0]):.6g}, {float(t[-1]):.6g}]: the problem may be unstable or very stiff, or "
                    "rtol/atol too tight; check f, loosen the tolerances, or raise options['max_num_steps']"
                ) from None
            if "underflow" not in str(e):
                raise
            when = float(last[0])
            raise StepSizeUnderflow(
                f"{name}'s step size underflowed near t={when:.6g}: the solution most likely blows up in "
                "finite time there (or f is discontinuous/non-finite)", time=when,
            ) from None

    return run


def _scipy_runner(scipy_name: str):
    def run(f, y0, t, options):
        from scipy.integrate import solve_ivp  # heavy (~1 s): only a SciPy solve pays for it

        opts, rtol, atol = _backend_options(options)
        budget = int(opts.pop("max_evaluations", DEFAULT_MAX_EVALUATIONS))
        shape, dtype, device = y0.shape, y0.dtype, y0.device
        t_dtype = y0.real.dtype if y0.is_complex() else y0.dtype  # torchdiffeq's rule for f's t
        t_np = t.detach().cpu().double().numpy()
        count = [0, t_np[0]]
        complex_state = y0.is_complex()
        n = y0.numel()

        # zero-copy bridge: a float64 CPU real state is viewed, not copied, in both directions
        # (torch.from_numpy / Tensor.numpy share memory); one conversion per call of f
        view = dtype == torch.float64 and device.type == "cpu" and not complex_state
        # f's NumPy twin (a built-in system's, or a user's f.numpy_rhs): no torch per call at all
        twin = getattr(f, "numpy_rhs", None) if view else None
        twin = twin if callable(twin) else None

        def fun(tt, yy):
            count[0] += 1
            count[1] = tt
            if count[0] > budget:
                raise _Budget
            if twin is not None:
                out = np.asarray(twin(tt, yy.reshape(shape)), dtype=np.float64)
                if out.size != yy.size:
                    raise ValueError(f"f.numpy_rhs(t, y) returned shape {out.shape} for y of shape {tuple(shape)}; "
                                     "it must return dy/dt with y's shape (or remove numpy_rhs to use the torch f)")
                return out.reshape(-1)
            if view:
                out = f(torch.tensor(tt, dtype=t_dtype), torch.from_numpy(np.ascontiguousarray(yy)).view(shape))
                return out.reshape(-1).numpy()
            if complex_state:  # solved as the real system [Re y, Im y]
                yy = yy[:n] + 1j * yy[n:]
            yt = torch.as_tensor(yy, dtype=dtype, device=device).reshape(shape)
            out = f(torch.as_tensor(tt, dtype=t_dtype, device=device), yt).reshape(-1).cpu()
            if complex_state:
                out = torch.cat((out.real, out.imag))
            return out.double().numpy()

        y_flat = y0.detach().reshape(-1).cpu()
        if complex_state:
            y_flat = torch.cat((y_flat.real, y_flat.imag))
        y_flat = y_flat.double().numpy()
        try:
            with torch.no_grad():
                sol = solve_ivp(fun, (t_np[0], t_np[-1]), y_flat, method=scipy_name, t_eval=t_np,
                                rtol=rtol, atol=atol, **opts)
        except _Budget:
            raise RuntimeError(
                f"scipy solve_ivp({scipy_name}) used its budget of {budget} evaluations of f and "
                f"reached only t={count[1]:.6g} of [{t_np[0]:.6g}, {t_np[-1]:.6g}]: the problem may be "
                "unstable or very stiff; check f, try scipy_radau, or raise options['max_evaluations']"
            ) from None
        def to_torch(y):
            y = np.ascontiguousarray(y.T)
            if complex_state:
                y = y[:, :n] + 1j * y[:, n:]
            return torch.as_tensor(y.reshape(len(y), *shape), dtype=dtype, device=device)

        if sol.status != 0:
            partial = to_torch(sol.y) if sol.y is not None and sol.y.size else None
            if "step size" in str(sol.message).lower() or "spacing" in str(sol.message).lower():
                raise StepSizeUnderflow(
                    f"scipy solve_ivp({scipy_name})'s step size underflowed near t={count[1]:.6g}: the solution "
                    "most likely blows up in finite time there (or f is discontinuous/non-finite)",
                    time=float(count[1]), partial=partial,
                )
            raise RuntimeError(f"scipy solve_ivp({scipy_name}) failed near t={count[1]:.6g}: {sol.message}")
        return to_torch(sol.y)

    return run


for _name, _desc in (("dopri5", "Dormand–Prince 5(4), adaptive (torchdiffeq)"),
                     ("dopri8", "Dormand–Prince 8(7), adaptive (torchdiffeq)")):
    register_method(MethodSpec(
        name=_name, kind="adaptive", order=int(_name[-1]), description=_desc,
        run=_torchdiffeq_runner(_name),
        options=frozenset({"rtol", "atol", "check_finite", "per_sample"}) | _TORCHDIFFEQ_PASSTHROUGH,
        ladders=("tolerance",),
    ))

# the explicit high-order methods join compare's tolerance ladder (the strongest classical
# contenders on smooth non-stiff problems); the stiff solvers do not (they lose there by design)
for _name, _scipy, _order, _desc, _ladders in (
    ("scipy_dop853", "DOP853", 8, "explicit Runge–Kutta 8(5,3), adaptive (SciPy); high-accuracy references",
     ("tolerance",)),
    ("scipy_radau", "Radau", 5, "implicit Radau IIA order 5, adaptive (SciPy); stiff references", ()),
    ("scipy_lsoda", "LSODA", None, "LSODA with stiffness switching, adaptive (SciPy)", ()),
):
    register_method(MethodSpec(
        name=_name, kind="adaptive", order=_order, description=_desc, run=_scipy_runner(_scipy),
        options=frozenset({"rtol", "atol", "check_finite", "max_evaluations"}) | _SCIPY_PASSTHROUGH,
        ladders=_ladders,
        differentiable=False,
    ))
