"""An evolutionary search over calibration factors α (points of the probability simplex).

Only the ratios of the α's change a blended ranking, so every candidate is kept normalised
to ``Σ α = 1``, ``α >= 0``.  One generation:

1. **elitism**: the ``elite`` fittest candidates pass unchanged;
2. **selection**: each further child has two parents, each the fitter of ``tournament``
   candidates drawn at random;
3. **crossover** (probability ``crossover_rate``): the child is a random convex combination
   ``w·a + (1-w)·b`` of its parents (else a copy of the first);
4. **mutation**: Gaussian noise of standard deviation ``mutation_sigma`` on every gene,
   clipped at 0 and renormalised (an all-zero child becomes uniform).

The first population holds every one-hot vector (each single criterion), the uniform blend,
and random Dirichlet(1) points, so the search never ends below the best single criterion on
its own fitness.  Everything random comes from one ``numpy`` generator seeded by ``seed``,
and fitness values are cached per candidate, so a run is reproducible.  With ``log=path``
each evaluated candidate is appended (fsynced) to a JSON-lines file; a rerun with the same
settings reads the finished evaluations back instead of recomputing them (resume).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import AppendLog
from .._validate import integer, nonnegative_number, positive_int

__all__ = ["evolve", "EvolutionResult"]


@dataclass
class EvolutionResult:
    """Attributes:
        best: the fittest α found (on the simplex), ``[n]``.
        best_fitness: its fitness.
        history: per generation ``{"generation", "best", "mean", "best_alpha"}``.
        evaluations: number of distinct candidates whose fitness was computed (or read back).
        reused: of those, how many came from the ``log`` of an earlier run.
        wall_time_s: seconds spent.
    """

    best: np.ndarray
    best_fitness: float
    history: list[dict] = field(default_factory=list)
    evaluations: int = 0
    reused: int = 0
    wall_time_s: float = 0.0


def _project(v: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(v, float), 0.0, None)
    s = v.sum()
    return np.full_like(v, 1.0 / v.size) if s <= 0 or not math.isfinite(s) else v / s


def _key(alpha: np.ndarray) -> str:
    return ",".join(f"{a:.6f}" for a in alpha)


def evolve(fitness: Callable[[np.ndarray], float], n_params: int, *, population: int = 8, generations: int = 5,
           mutation_sigma: float = 0.1, crossover_rate: float = 0.7, elite: int = 2, tournament: int = 2,
           seed: int = 0, log: str | Path | None = None, progress: Callable[[dict], None] | None = None,
           ) -> EvolutionResult:
    """Maximise ``fitness(α)`` over the simplex ``{α >= 0, Σ α = 1}`` in ``n_params`` dimensions.

    Args:
        fitness: α ``[n_params]`` -> a finite float (larger is better).
        population: candidates per generation (>= 2).
        generations: generations after the first population (>= 0).
        mutation_sigma: standard deviation of the Gaussian mutation (>= 0).
        crossover_rate: probability that a child mixes two parents, in [0, 1].
        elite: fittest candidates kept unchanged each generation, in [0, population).
        tournament: candidates drawn per parent selection (>= 1).
        seed: seeds the only random generator used.
        log: optional JSON-lines file of evaluated candidates (resume / audit).
        progress: called with each generation's history record.
    """
    n_params = positive_int("n_params", n_params)
    population = integer("population", population, low=2)
    generations = integer("generations", generations, low=0)
    tournament = positive_int("tournament", tournament)
    elite = integer("elite", elite, low=0)
    if elite >= population:
        raise ValueError(f"elite must be smaller than population ({population}), got {elite}")
    nonnegative_number("mutation_sigma", mutation_sigma)
    if not (isinstance(crossover_rate, (int, float)) and 0.0 <= crossover_rate <= 1.0):
        raise ValueError(f"crossover_rate must lie in [0, 1], got {crossover_rate!r}")
    rng = np.random.default_rng(seed)
    score = _MemoFitness(fitness, log)
    t0 = time.perf_counter()
    seeds_pop = [np.eye(n_params)[i] for i in range(n_params)]
    if n_params > 1:
        seeds_pop.append(np.full(n_params, 1.0 / n_params))
    pop = [_rounded(v) for v in seeds_pop[:population]]
    while len(pop) < population:
        pop.append(_rounded(rng.dirichlet(np.ones(n_params))))
    fit = [score(a) for a in pop]
    result = EvolutionResult(best=pop[0], best_fitness=-math.inf)
    for gen in range(generations + 1):
        if gen > 0:
            pop = _next_generation(pop, fit, rng, elite=elite, tournament=tournament,
                                   crossover_rate=crossover_rate, mutation_sigma=mutation_sigma)
            fit = [score(a) for a in pop]
        i = int(np.argmax(fit))
        if fit[i] > result.best_fitness:
            result.best, result.best_fitness = pop[i].copy(), fit[i]
        rec = {"generation": gen, "best": result.best_fitness, "mean": float(np.mean(fit)),
               "best_alpha": result.best.tolist()}
        result.history.append(rec)
        if progress is not None:
            progress(rec)
    result.evaluations = len(score.cache)
    result.reused = score.reused
    result.wall_time_s = time.perf_counter() - t0
    return result


def _rounded(v: np.ndarray) -> np.ndarray:
    # candidates are identified by their 6-decimal form; round once so the key is the value
    return np.round(_project(v), 6)


class _MemoFitness:
    """``fitness(α)``, each candidate evaluated once: remembered by its key, replayed from the
    log of an earlier run, and appended to the log when new."""

    def __init__(self, fitness: Callable[[np.ndarray], float], log: str | Path | None):
        self.fitness = fitness
        self.store = AppendLog(log) if log is not None else None
        self.cache: dict[str, float] = {}
        self.reused = 0

    def __call__(self, alpha: np.ndarray) -> float:
        key = _key(alpha)
        if key in self.cache:
            return self.cache[key]
        rec = self.store.get(key) if self.store is not None else None
        if rec is not None:
            value = float(rec["fitness"])
            self.reused += 1
        else:
            value = float(self.fitness(alpha.copy()))
            if not math.isfinite(value):
                raise ValueError(f"fitness returned {value} for alpha {alpha.tolist()}; it must be finite")
            if self.store is not None:
                self.store.add({"key": key, "alpha": alpha.tolist(), "fitness": value})
        self.cache[key] = value
        return value


def _next_generation(pop: list[np.ndarray], fit: list[float], rng: np.random.Generator, *, elite: int,
                     tournament: int, crossover_rate: float, mutation_sigma: float) -> list[np.ndarray]:
    """The ``elite`` fittest unchanged, then children of tournament-picked parents: a random
    convex mix of two (with probability ``crossover_rate``) or a copy of one, plus Gaussian
    noise, projected onto the simplex."""
    population, n_params = len(pop), len(pop[0])
    order = np.argsort(-np.asarray(fit), kind="stable")
    children = [pop[i].copy() for i in order[:elite]]

    def pick() -> np.ndarray:
        idx = rng.integers(0, population, size=tournament)
        return pop[int(max(idx, key=lambda i: fit[i]))]

    while len(children) < population:
        a, b = pick(), pick()
        if rng.random() < crossover_rate:
            w = rng.random()
            child = w * a + (1.0 - w) * b
        else:
            child = a.copy()
        child = child + rng.normal(0.0, mutation_sigma, size=n_params)
        children.append(_rounded(child))
    return children
