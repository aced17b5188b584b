"""``attsolver train`` and ``attsolver solve``: train a corrector from a data file, and solve
with (or without) one.

Examples::

    attsolver data generate lorenz63 --n 32 --dt 0.05 --t-final 5 --noise 0.01 -o l63.h5
    attsolver train lorenz63 --data l63.h5 --method rk4 --step 0.05 --corrector attsolver -o model.pt
    attsolver data generate lorenz63 --n 8 --dt 0.05 --t-final 2 --seed 1 -o test.h5
    attsolver solve lorenz63 --data test.h5 --method rk4 --step 0.05 --corrector model.pt -o pred.h5

Periodic 1-D fields (Burgers, Kuramoto-Sivashinsky) take the convolutional correctors; the
grid (``nx``) and the domain length come from the data file's system (states on a lattice,
Lorenz-96 and the spring chain, also take the local correctors ``neurvec-local``,
``hypersolver-local``, ``attsolver-local``, whose lattice is the system's declaration)::

    attsolver data generate burgers --n 32 --param nx=64 --param nu=0.001 --dt 0.01 -o b.h5
    attsolver train burgers --data b.h5 --method etdrk4 --corrector attsolver-conv -o conv.pt
    attsolver solve burgers --data b.h5 --method etdrk4 --corrector conv.pt
    attsolver solve burgers --data b256.h5 --method etdrk4 --corrector conv.pt --allow-other-grid
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

import torch

from ..correctors import REGISTRY, create, load_corrector, names
from ..data import TrajectoryDataset, save_h5
from ..evaluate.metrics import HORIZONS, relative_l2
from ..integrate import solve
from ..systems import make_system
from ..training import FitCheckWarning, fit
from ..training.loss import LOSSES
from .common import (
    CLIError, check_system_choice, guarded, load_data, nonneg_int, output_file, output_times, parse_params,
    positive_float, positive_int,
)
from .user_rhs import check_rhs, load_rhs, load_sampler, sample_states

__all__ = ["add_train_parser", "add_solve_parser"]


def _cmd_train(args) -> int:
    output_file(args.output)
    if args.checkpoint:
        output_file(args.checkpoint, "--checkpoint")
    data = load_data(args.data, args.system)
    if data.n_times < 2:
        raise CLIError(f"{args.data} has a single time point per trajectory; training needs at least two")
    check_system_choice(args)
    user_f = load_rhs(args.rhs) if args.rhs else None
    if user_f is not None:
        check_rhs(user_f, data.y[:, 0].to(torch.float64))
    step = args.step if args.step is not None else float(data.t[1] - data.t[0])
    kw = parse_params(args.param)  # the name's own arguments (attsolver-mul: combine) win in create()
    kw["dtype"] = torch.float64 if args.float64 else torch.float32
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise CLIError(f"{output} exists; pass --overwrite to replace it or choose another -o")
    torch.manual_seed(args.seed)
    layout = REGISTRY[args.corrector].layout.name  # the factory's names are argparse's choices
    if layout == "grid":
        system = user_f if user_f is not None else data.make_system()
        if not hasattr(system, "nx") or len(data.state_shape) != 1:
            raise CLIError(
                f"--corrector {args.corrector} corrects periodic 1-D fields (burgers, "
                f"kuramoto_sivashinsky); {args.system} has states of shape {data.state_shape}: "
                "choose neurvec, hypersolver or attsolver"
            )
        model = create(args.corrector, system=system, method=args.method, step_size=step, **kw)
    elif layout == "lattice":
        try:  # the lattice (axis, periodic, blocks) is the system's declaration
            model = create(args.corrector, system=data.make_system(), method=args.method, step_size=step, **kw)
        except ValueError as e:
            raise CLIError(f"--corrector {args.corrector}: {e}") from None
    else:
        model = create(args.corrector, data.state_shape, method=args.method, step_size=step, **kw)
    with warnings.catch_warnings():  # the summary below prints the check's warnings
        warnings.simplefilter("ignore", FitCheckWarning)
        history = fit(
            model, data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
            rollout_steps=args.rollout_steps, val_fraction=args.val_fraction, loss=args.loss,
            patience=None if args.patience <= 0 else args.patience, seed=args.seed,
            checkpoint=args.checkpoint, resume=args.resume, overwrite=args.overwrite,
            progress=not args.no_progress, system=user_f, check=not args.no_check,
        )
    path = model.save(output)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"trained {args.corrector} ({n_params} parameters) for {args.method} h={step:g} on {len(data)} "
        f"trajectories of {args.system or data.system['name']}: {history.epochs_run} epochs, best "
        f"{history.monitor} loss {history.best_loss:.4g} at epoch {history.best_epoch}"
        f"{' (early stop)' if history.stopped_early else ''}; wrote {path}"
    )
    print(history.summary())
    return 0


def _cmd_solve(args) -> int:
    if args.output:
        output_file(args.output)  # before the integration, not after it
    model = _solve_corrector(args)
    check_system_choice(args)
    user_f = load_rhs(args.rhs) if args.rhs else None
    system, t, y0, reference = _solve_problem(args, user_f)
    if user_f is not None:
        check_rhs(user_f, y0.to(torch.float64))
    dtype = torch.float32 if args.float32 else torch.float64
    if model is not None and model.dtype != dtype:
        model = copy.deepcopy(model).to(dtype)  # every solve runs in one dtype (float64 unless --float32)
    with torch.no_grad():
        sol, stats = solve(system, y0.to(dtype), t, method=args.method, step_size=args.step, corrector=model,
                           return_stats=True, progress=not args.no_progress)
    y = sol.transpose(0, 1).to(torch.float64)
    name = args.system or getattr(system, "name", None) or getattr(system, "__name__", "f")
    what = f"{args.method}" + (f" h={args.step:g}" if args.step else "") + (" + corrector" if model else "")
    line = (f"solved {len(y)} trajectories of {name} with {what} in {str(dtype).replace('torch.', '')}: "
            f"{stats.wall_time_s:.3g} s (first call, includes one-time set-up; `attsolver compare` times the "
            f"steady state), {stats.n_steps if stats.n_steps is not None else '?'} steps, {stats.n_f_evals} f "
            f"evaluations, {stats.n_corrector_calls} corrector calls")
    if reference is not None:
        errs = _horizon_errors(y, reference.to(torch.float64))
        line += (f"; relative L2 error against {args.data}: {errs['err_full']:.4g}; up to 1/4 and 1/2 of the "
                 f"horizon: {errs['err_q1']:.4g}, {errs['err_q2']:.4g}")
    if args.output:
        ds = TrajectoryDataset(
            t=t, y=y, system=system.config() if hasattr(system, "config") else {"name": name, "params": {}},
            config={"produced_by": "attsolver solve", "method": args.method, "step_size": args.step,
                    "corrector": args.corrector, "data": args.data, "rhs": args.rhs},
        )
        line += f"; wrote {save_h5(ds, args.output)}"
    print(line)
    return 0


def _solve_corrector(args):
    """``solve``'s ``--corrector`` (``None`` without one), ``--allow-other-grid`` applied."""
    model = load_corrector(args.corrector) if args.corrector else None
    if args.allow_other_grid:
        if model is not None and hasattr(model, "allow_other_size"):  # a local corrector
            model.allow_other_size = True
        elif model is None or not hasattr(model, "allow_other_grid"):
            raise CLIError("--allow-other-grid applies to a convolutional corrector or a local corrector (--corrector "
                           "*.pt trained with neurvec-conv / attsolver-conv / *-local)")
        else:
            model.allow_other_grid = True
    return model


def _solve_problem(args, user_f):
    """``(system, t, y0, reference)`` of ``solve``: from ``--data`` (its clean values the
    reference), else sampled initial states on ``--t-final`` / ``--dt`` (no reference)."""
    if args.data:
        data = load_data(args.data, args.system)
        system = user_f if user_f is not None else data.make_system()
        reference = data.y_clean if data.y_clean is not None else data.y
        return system, data.t, data.y[:, 0], reference
    if args.t_final is None or args.dt is None:
        raise CLIError("without --data, give --t-final and --dt (and --n, --seed for the initial states)")
    t = output_times(args.t_final, args.dt)
    generator = torch.Generator().manual_seed(args.seed)
    if user_f is None:
        system = make_system(args.system)
        return system, t, system.sample_initial(args.n, generator=generator), None
    if args.init:
        y0 = sample_states(load_sampler(args.init), args.n, args.seed)
    elif hasattr(user_f, "sample_initial"):
        y0 = user_f.sample_initial(args.n, generator=generator)
    else:
        raise CLIError("--rhs without --data needs --init file.py:sample (the initial states)")
    return user_f, t, y0, None


def _horizon_errors(y, reference) -> dict[str, float]:
    """Mean relative L2 error of ``y`` against ``reference`` (``[batch, time, *state]``) up to
    each of ``compare``'s horizons (1/4, 1/2 and all of the times; t_0 left out)."""
    nt = reference.shape[1]
    errs = {}
    for label, frac in HORIZONS:
        j = max(2, int(round(frac * (nt - 1))) + 1)
        errs[label] = float(relative_l2(y[:, 1:j], reference[:, 1:j]).mean())
    return errs


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add ``train`` to the ``attsolver`` command's subparsers."""
    p = sub.add_parser(
        "train", help="train a corrector on a trajectory file and save it",
        description="Train a learned corrector (NeurVec, Hypersolver, AttSolver) on the "
                    "trajectories of an HDF5 file from `attsolver data generate`, and save it.",
    )
    p.add_argument("system", nargs="?", default=None,
                   help="the built-in system the data was made for (checked against the file), or use --rhs")
    p.add_argument("--rhs", default=None, metavar="MODULE:F",
                   help="your own right-hand side f(t, y): module:function or path/to/file.py:function")
    p.add_argument("--data", required=True, help="training trajectories (.h5)")
    p.add_argument("--method", default="rk4", help="the fixed-step method to correct (default rk4)")
    p.add_argument("--step", type=positive_float, default=None, help="the step to correct (default: the data's dt)")
    p.add_argument("--corrector", default="attsolver", choices=names(),
                   help="which corrector (default attsolver = additive AttSolver; *-conv for periodic 1-D fields)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="corrector argument, repeatable, VALUE as JSON (e.g. width=64, hidden=[32,32])")
    p.add_argument("-o", "--output", required=True, help="where to save the trained corrector (.pt)")
    p.add_argument("--epochs", type=positive_int, default=100)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--rollout-steps", type=nonneg_int, default=0, help="k-interval rollout loss (default 0: one-step)")
    p.add_argument("--loss", choices=LOSSES, default="mse",
                   help="mse (default); relative: each sample's error over the uncorrected step's; correlation "
                        "(with --rollout-steps >= 1): 1 - the rollout's correlation with the data per frame (see fit)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience (<= 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, split and shuffling")
    p.add_argument("--checkpoint", default=None, help="training checkpoint written every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace existing -o / --checkpoint files")
    p.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-check", action="store_true",
                   help="skip the end-of-training check (validation rollout vs the classical solver)")
    p.set_defaults(func=guarded("train", _cmd_train))
    return p


def add_solve_parser(sub) -> argparse.ArgumentParser:
    """Add ``solve`` to the ``attsolver`` command's subparsers."""
    p = sub.add_parser(
        "solve", help="solve a system, optionally with a trained corrector",
        description="Integrate a built-in system from the initial states of a data file (and "
                    "report the error against it) or from sampled initial states.",
    )
    p.add_argument("system", nargs="?", default=None, help="system name (see `attsolver systems`), or use --rhs")
    p.add_argument("--rhs", default=None, metavar="MODULE:F",
                   help="your own right-hand side f(t, y): module:function or path/to/file.py:function")
    p.add_argument("--init", default=None, metavar="MODULE:SAMPLE",
                   help="with --rhs and without --data: initial-state sampler sample(n, generator)")
    p.add_argument("--float32", action="store_true",
                   help="solve in float32 (default float64; a corrector is converted to the solve's dtype)")
    p.add_argument("--data", default=None, help="take t and the initial states from this file (.h5)")
    p.add_argument("--method", default="rk4", help="integration method (default rk4)")
    p.add_argument("--step", type=positive_float, default=None, help="step size (default: one step per output time)")
    p.add_argument("--corrector", default=None, help="a corrector saved by `attsolver train` (.pt)")
    p.add_argument("--allow-other-grid", action="store_true",
                   help="use a convolutional (local) corrector on a grid (lattice) other than the one it was "
                        "trained on")
    p.add_argument("-o", "--output", default=None, help="write the solution here (.h5)")
    p.add_argument("--n", type=positive_int, default=1, help="without --data: number of initial states")
    p.add_argument("--seed", type=int, default=0, help="without --data: seed of the initial states")
    p.add_argument("--t-final", type=positive_float, default=None, help="without --data: final time")
    p.add_argument("--dt", type=positive_float, default=None, help="without --data: output interval")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    p.set_defaults(func=guarded("solve", _cmd_solve))
    return p
