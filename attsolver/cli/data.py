"""``attsolver data generate`` / ``attsolver data info``.

Examples::

    attsolver data generate lorenz63 --n 64 --noise 0.01 -o lorenz63.h5
    attsolver data generate --rhs duffing.py:rhs --init duffing.py:sample --dt 0.1 --t-final 20 -o d.h5
    attsolver data generate lorenz96 --param N=20 --param F=10 -o l96.h5
    attsolver data generate burgers --n 16 --pdebench -o 1D_Burgers_Sols_Nu0.001.hdf5
    attsolver data info lorenz63.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import SYSTEM_DEFAULTS, generate_trajectories, inspect_file, save_h5, write_pdebench
from ..data.generate import default_method
from ..steppers import get_method
from ..systems import make_system
from .common import (
    CLIError, check_param_types, check_system_choice, guarded, nonneg_float, output_file, parse_params, positive_float,
    positive_int,
)
from .user_rhs import check_rhs, describe_spec, load_rhs, load_sampler, sample_states

__all__ = ["add_data_parser"]

# components listed one per line by `info`; larger states are shown head ... tail
_MAX_COMPONENT_LINES = 12


def _default_name(spec: str) -> str:
    """The name recorded for ``--rhs WHERE:F``: the file's stem (``duffing.py:rhs`` -> ``duffing``)
    or, for a module, ``F``."""
    where, _, name = spec.rpartition(":")
    return Path(where).stem if where.endswith(".py") else name


def _generate_user(args) -> int:
    """``data generate --rhs file.py:f [--init file.py:sample]``: a user's own system."""
    check_system_choice(args)
    if args.param:
        raise CLIError("--param sets a built-in system's parameters; with --rhs put them in your file")
    if args.pdebench:
        raise CLIError("--pdebench writes PDEBench's Burgers layout; it does not apply to --rhs")
    if args.dt is None or args.t_final is None:
        raise CLIError("with --rhs give the output grid: --dt and --t-final")
    f = load_rhs(args.rhs)
    if args.init:
        y0 = sample_states(load_sampler(args.init), args.n, args.seed)
    elif hasattr(f, "sample_initial"):
        y0 = f.sample_initial(args.n, generator=torch.Generator().manual_seed(args.seed))
    else:
        raise CLIError(f"--rhs {args.rhs} has no sample_initial: give an initial-state sampler, "
                       "--init file.py:sample (sample(n, generator) -> [n, *state])")
    check_rhs(f, y0)
    method = args.method or default_method(f)
    refine = args.refine
    if get_method(method).kind == "fixed" and args.step_size is None and refine is None:
        refine = 20
    ds = generate_trajectories(
        f, y0, t_final=args.t_final, dt=args.dt, method=method, step_size=args.step_size, refine=refine,
        spin_up=args.spin_up or 0.0, noise_level=args.noise, seed=args.seed, progress=not args.no_progress,
        batch_size=args.batch_size, name=args.name or _default_name(args.rhs),
    )
    ds.config["rhs"] = describe_spec(args.rhs)
    if args.init:
        ds.config["init"] = describe_spec(args.init)
    path = save_h5(ds, args.output, dtype="float32" if args.float32 else "float64")
    print(
        f"wrote {len(ds)} trajectories of {ds.system['name']} ({ds.n_times} times, t in [0, {args.t_final:g}], "
        f"dt {args.dt:g}, state {ds.state_shape}, noise {args.noise:g}, {method}, step {ds.config['step_size']}) "
        f"to {path}"
    )
    return 0


def _cmd_generate(args) -> int:
    output_file(args.output)
    if args.rhs:
        return _generate_user(args)
    if args.init:
        raise CLIError("--init goes with --rhs (a built-in system samples its own initial states)")
    check_system_choice(args)
    params = parse_params(args.param, example="F=8.0")
    check_param_types(make_system(args.system).config().get("params", {}), params)
    system = make_system(args.system, params)
    defaults = system.run_defaults.as_dict()
    dt = args.dt if args.dt is not None else defaults.get("dt")
    t_final = args.t_final if args.t_final is not None else defaults.get("t_final")
    if dt is None or t_final is None:
        raise CLIError(f"no default output grid for system {system.name!r}: pass --dt and --t-final")
    spin_up = args.spin_up if args.spin_up is not None else defaults.get("spin_up", 0.0)
    method = args.method or default_method(system)
    refine = args.refine
    if get_method(method).kind == "fixed" and args.step_size is None and refine is None:
        refine = int(defaults.get("refine", 20))
    if args.pdebench and system.name != "burgers":
        raise CLIError(f"--pdebench writes PDEBench's 1-D Burgers layout; system {system.name!r} is not burgers")

    ds = generate_trajectories(
        system, args.n, t_final=t_final, dt=dt, method=method, step_size=args.step_size,
        refine=refine, spin_up=spin_up, noise_level=args.noise, seed=args.seed,
        progress=not args.no_progress, batch_size=args.batch_size,
    )
    if args.pdebench:
        if ds.y_clean is not None:
            print("note: the PDEBench layout stores the noisy values only (no y_clean)", file=sys.stderr)
        path = write_pdebench(ds, args.output)
        layout = "PDEBench layout, float32"
    else:
        path = save_h5(ds, args.output, dtype="float32" if args.float32 else "float64")
        layout = "float32" if args.float32 else "float64"
    print(
        f"wrote {len(ds)} trajectories of {system.name} ({ds.n_times} times, t in "
        f"[0, {t_final:g}], dt {dt:g}, state {ds.state_shape}, noise {args.noise:g}, "
        f"{method}, step {ds.config['step_size']}) to {path} ({layout})"
    )
    return 0


def _fmt(v: float) -> str:
    return f"{v: .6g}"


def _component_label(i: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return str(i)
    return str(tuple(int(k) for k in np.unravel_index(i, shape)))


def _print_stats(stats: dict[str, np.ndarray], out) -> None:
    shape = tuple(np.shape(stats["mean"]))
    flat = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in stats.items()}
    n = len(flat["mean"])
    print(f"per-component statistics of y over trajectories and times ({n} components):", file=out)
    print(f"  {'component':>10s} {'mean':>13s} {'std':>13s} {'min':>13s} {'max':>13s}", file=out)
    if n <= _MAX_COMPONENT_LINES:
        rows: list[int | None] = list(range(n))
    else:
        rows = [0, 1, 2, 3, None, n - 2, n - 1]
    for i in rows:
        if i is None:
            print(f"  {'...':>10s}", file=out)
            continue
        print(f"  {_component_label(i, shape):>10s} " + " ".join(
            f"{_fmt(flat[k][i]):>13s}" for k in ("mean", "std", "min", "max")), file=out)
    if n > _MAX_COMPONENT_LINES:
        print(f"  {'all':>10s} mean of means {_fmt(flat['mean'].mean())}, std range "
              f"[{_fmt(flat['std'].min())}, {_fmt(flat['std'].max())}], min {_fmt(flat['min'].min())}, "
              f"max {_fmt(flat['max'].max())}", file=out)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _cmd_info(args) -> int:
    info = inspect_file(args.file)
    out = sys.stdout
    if args.json:
        print(json.dumps(_jsonable(info), indent=2), file=out)
        return 0
    tm = info["time"]
    step = f", step {tm['step']:g}" if tm["step"] is not None else ", non-uniform"
    print(f"file: {info['path']}", file=out)
    if info["format"] == "attsolver":
        print(f"format: attsolver trajectory file, schema {info['schema']!r} version "
              f"{info['schema_version']} (created by {info['created_by']})", file=out)
    else:
        extra = " (t-coordinate holds one extra final time, dropped on read)" if info["t_coordinate_extra"] else ""
        print(f"format: PDEBench 1-D file (tensor [samples, nt, nx]){extra}; read it with "
              "attsolver.data.read_pdebench", file=out)
        nu = info["pdebench_nu"]
        if nu is None:
            print("Nu: missing (no 'Nu' attribute or _Nu<value> in the file name)", file=out)
        else:
            print(f"Nu: {nu:g}  (PDEBench convention u_t + (u^2/2)_x = (Nu/pi) u_xx: "
                  f"physical viscosity nu = {nu / np.pi:.6g})", file=out)
    system = info.get("system")
    if system is not None:
        print(f"system: {system['name']}  params {json.dumps(system['params'])}", file=out)
    shapes = "  ".join(f"{k} {list(v)}" for k, v in info["shapes"].items())
    print(f"shapes: {shapes}", file=out)
    print(f"dtype: {info['dtype']}", file=out)
    print(f"time: {tm['start']:g} .. {tm['end']:g} ({tm['n']} times{step})", file=out)
    clean = ""
    if info["format"] == "attsolver":
        clean = " (clean values stored in y_clean)" if info["has_clean"] else " (no y_clean)"
    print(f"noise level: {info['noise_level']:g}{clean}", file=out)
    if info["format"] == "attsolver":
        print("config: " + json.dumps(info["config"], indent=2, sort_keys=True).replace("\n", "\n  "), file=out)
    else:
        print(f"attributes: {info['attrs']}", file=out)
    _print_stats(info["stats"], out)
    return 0


def add_data_parser(sub) -> argparse.ArgumentParser:
    """Add ``data generate`` and ``data info`` to the ``attsolver`` command's subparsers."""
    p = sub.add_parser("data", help="generate and inspect trajectory datasets",
                       description="Generate reference-trajectory datasets and inspect HDF5 files.")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    g = dsub.add_parser(
        "generate", help="integrate reference trajectories and write an HDF5 file",
        description="Integrate reference trajectories of a built-in system (fine step, "
                    "sampled every --dt), add relative noise and write them atomically to an "
                    "HDF5 file.  Per-system defaults: " + "; ".join(
                        f"{k} dt {v['dt']:g} t_final {v['t_final']:g} spin-up {v['spin_up']:g}"
                        for k, v in SYSTEM_DEFAULTS.items()),
    )
    g.add_argument("system", nargs="?", default=None, help="system name (see `attsolver systems`), or use --rhs")
    g.add_argument("--rhs", default=None, metavar="MODULE:F",
                   help="your own right-hand side f(t, y): module:function or path/to/file.py:function "
                        "(a function, a System instance or class; ODEs and periodic 1-D PDEs)")
    g.add_argument("--init", default=None, metavar="MODULE:SAMPLE",
                   help="with --rhs: initial-state sampler sample(n, generator) -> [n, *state]")
    g.add_argument("--name", default=None, help="with --rhs: the system name recorded in the file")
    g.add_argument("--n", type=positive_int, default=64, help="number of trajectories (default 64)")
    g.add_argument("--noise", type=nonneg_float, default=0.0,
                   help="relative noise level sigma: y + sigma * std_component * N(0, 1) (default 0)")
    g.add_argument("-o", "--output", required=True, help="output file (.h5)")
    g.add_argument("--t-final", type=positive_float, default=None, help="final time (default: per system)")
    g.add_argument("--dt", type=positive_float, default=None, help="output time step (default: per system)")
    g.add_argument("--method", default=None, help="reference integrator (default rk4; etdrk4 for PDEs)")
    g.add_argument("--refine", type=positive_int, default=None,
                   help="reference steps per output step (step = dt / refine; default per system, 20 for ODEs)")
    g.add_argument("--step-size", type=positive_float, default=None, help="reference step (instead of --refine)")
    g.add_argument("--spin-up", type=nonneg_float, default=None,
                   help="time integrated and discarded first (default: per system)")
    g.add_argument("--seed", type=int, default=0, help="seed of initial conditions and noise (default 0)")
    g.add_argument("--float32", action="store_true", help="store values as float32 (default float64)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="system parameter, repeatable; VALUE parsed as JSON (number, list...)")
    g.add_argument("--pdebench", action="store_true",
                   help="write PDEBench's 1-D layout (burgers only; tensor/x-coordinate/t-coordinate, Nu = pi*nu)")
    g.add_argument("--batch-size", type=positive_int, default=256, help="trajectories integrated together (default 256)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g.set_defaults(func=guarded("data generate", _cmd_generate))

    i = dsub.add_parser("info", help="describe an attsolver or PDEBench HDF5 file",
                        description="Print the schema, system, shapes, dtype, time grid, noise "
                                    "level, config and per-component statistics of a file.")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=guarded("data info", _cmd_info))
    return p

