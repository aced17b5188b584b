"""A user's own right-hand side and initial-state sampler on the command line.

``--rhs module:function`` or ``--rhs path/to/file.py:function`` names ``f(t, y) -> dy/dt``
(torchdiffeq's convention, batch dimensions first), for ODEs and periodic 1-D PDEs alike.
The attribute may be

* a plain function ``f(t, y)``;
* an instance of a :class:`attsolver.systems.System` (e.g. a user subclass of
  :class:`attsolver.systems.SemilinearPDE`, which also reaches the spectral steppers);
* a ``System`` subclass, built with its default arguments.

``--init file.py:sample`` names ``sample(n, generator) -> [n, *state]``, the initial-state
sampler (default: the system's own ``sample_initial`` when the right-hand side is a System).
Each failure — a file or module that does not import, a name it lacks, something not
callable, a result of the wrong shape — is a :class:`ValueError` with one line that names the
option and the fix.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.generate import _sample  # the data layer's sampler check; it has no public name yet
from ..systems import System

__all__ = ["load_object", "load_rhs", "load_sampler", "check_rhs", "sample_states", "describe_spec"]


def _split(spec: str, option: str) -> tuple[str, str]:
    where, sep, name = str(spec).rpartition(":")
    if not sep or not where or not name or not name.isidentifier():
        raise ValueError(
            f"{option} must be MODULE:NAME or path/to/file.py:NAME (e.g. {option} my_model.py:rhs), got {spec!r}"
        )
    return where, name


def _import(where: str, option: str):
    path = Path(where)
    try:
        if where.endswith(".py") or path.suffix == ".py":
            if not path.is_file():
                raise ValueError(f"{option}: no file {where}; give an existing .py file (path relative to the "
                                 "current folder) or an importable module name")
            mod_name = f"_attsolver_user_{abs(hash(str(path.resolve())))}"
            if mod_name in sys.modules:
                return sys.modules[mod_name]
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module  # dataclasses look their module up while a class is built
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[mod_name]
                raise
            return module
        return importlib.import_module(where)
    except ValueError:
        raise
    except SystemExit as e:
        raise ValueError(f"{option}: importing {where} called sys.exit({e.code}); guard its script part with "
                         "if __name__ == '__main__':") from None
    except Exception as e:  # noqa: BLE001 - any error in the user's file is reported in one line
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ValueError(f"{option}: cannot import {where} ({type(e).__name__}: {msg}); fix the file or the "
                         "module name") from None


def load_object(spec: str, option: str = "--rhs") -> Any:
    """The attribute ``NAME`` of ``MODULE`` or ``file.py`` in ``spec = "WHERE:NAME"``."""
    where, name = _split(spec, option)
    module = _import(where, option)
    if not hasattr(module, name):
        names = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise ValueError(f"{option}: {where} has no {name!r}; it defines: {', '.join(names) or '(no functions)'}")
    return getattr(module, name)


def load_rhs(spec: str, option: str = "--rhs"):
    """The right-hand side named by ``spec``: a function, a System instance, or a System
    subclass (built with its defaults)."""
    obj = load_object(spec, option)
    if isinstance(obj, type):
        if issubclass(obj, System):
            try:
                obj = obj()
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{option}: cannot build {obj.__name__}() with its defaults ({type(e).__name__}: "
                                 f"{e}); give the fields defaults or name an instance") from None
        else:
            raise ValueError(f"{option}: {spec} is a class, not a function f(t, y) or a System")
    if not callable(obj):
        raise ValueError(f"{option}: {spec} is a {type(obj).__name__}, not a callable f(t, y)")
    if isinstance(obj, types.FunctionType):
        return _UsersRHS(obj, spec, option)
    return obj


class UserFunctionError(ValueError):
    """An exception (or ``sys.exit``) raised inside the user's ``f``: the user's error (exit 2)."""


class _UsersRHS:
    """The user's plain function ``f``, whose exceptions — ``SystemExit`` included — become a
    :class:`UserFunctionError` naming ``f``, the time and the exception (not an "internal
    error", and never a silent exit 0)."""

    def __init__(self, f, spec: str, option: str):
        self.f, self.spec, self.option = f, spec, option
        functools.update_wrapper(self, f)

    def __call__(self, t, y):
        try:
            return self.f(t, y)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code, reported as theirs
            if isinstance(e, UserFunctionError):
                raise
            when = float(t.detach().reshape(-1)[0]) if isinstance(t, Tensor) else t
            what = f"called sys.exit({e.code!r})" if isinstance(e, SystemExit) else \
                f"raised {type(e).__name__}: {str(e).strip()[:300]}"
            raise UserFunctionError(f"{self.option} {self.spec}: your f(t, y) {what} at t={when:.6g}; "
                                    "fix f (this is not an attsolver error)") from e


def load_sampler(spec: str, option: str = "--init"):
    obj = load_object(spec, option)
    if not callable(obj):
        raise ValueError(f"{option}: {spec} is a {type(obj).__name__}, not a callable sample(n, generator)")
    return obj


def sample_states(sampler, n: int, seed: int, option: str = "--init") -> Tensor:
    """``sampler(n, generator=torch.Generator().manual_seed(seed))`` as float64, its shape checked."""
    gen = torch.Generator().manual_seed(int(seed))
    try:
        return _sample(sampler, n, gen, torch.float64, None)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{option}: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{option}: calling the sampler failed ({type(e).__name__}: {e})") from None


def check_rhs(f, y0: Tensor, option: str = "--rhs", t0: float = 0.0) -> None:
    """Call ``f(t0, y0[:2])`` once: it must return a tensor of ``y0``'s shape and dtype."""
    y = y0[:2]
    t = torch.tensor(float(t0), dtype=y.dtype)
    try:
        with torch.no_grad():
            out = f(t, y)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ValueError(f"{option}: f(t, y) failed on states of shape {tuple(y.shape)} ({type(e).__name__}: "
                         f"{msg}); f must take a batch of states [batch, *state]") from None
    if not isinstance(out, Tensor):
        raise ValueError(f"{option}: f(t, y) returned a {type(out).__name__}, not a torch.Tensor")
    if out.shape != y.shape:
        raise ValueError(f"{option}: f(t, y) returned shape {tuple(out.shape)} for states of shape {tuple(y.shape)}; "
                         "it must return dy/dt with y's shape (batch dimensions first)")
    if out.dtype != y.dtype:
        raise ValueError(f"{option}: f(t, y) returned dtype {out.dtype} for {y.dtype} states; build its constants "
                         "with y's dtype")


def describe_spec(spec: str) -> str:
    """``spec`` with a file path made absolute (recorded in data and reports)."""
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        return f"{Path(where).resolve()}:{name}"
    return spec
