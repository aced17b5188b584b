"""``fit()``: train a corrector on (noisy) reference trajectories.

**Targets** (:mod:`.targets`).  With ``rollout_steps=0`` and a data interval ``dt`` equal to the
step ``h``, each pair of consecutive observations gives the one-step residual
``r_n = y_obs(t_{n+1}) - Phi_h(y_obs(t_n))`` (``Phi_h`` the classical step: ``solve`` without a
corrector, in float64) and the loss is ``mean(((C(y_n, dy_n, h) - r_n) / sigma)^2)`` with
``sigma`` the corrector's output scale.  With ``rollout_steps=k >= 1``, or when ``dt`` is a
multiple ``m > 1`` of ``h`` (a single step's residual is then not observed), the loss is taken
on windows of ``k`` data intervals (``max(k, 1)``): the corrected solver is run with
:func:`attsolver.solve` from ``y_obs(t_n)`` for ``k`` intervals (``k m`` steps) and
``mean(((y_hat(t_{n+j}) - y_obs(t_{n+j})) / (m sigma))^2)`` over ``j = 1..k`` is
back-propagated through all the steps.  ``rollout_schedule`` lets ``k`` change from epoch to
epoch (solver-in-the-loop training that unrolls longer as it goes).

**Normalisation.**  Before training, the corrector's input mean/std and output scale are set
from the training trajectories (per component; the output scale is the RMS of the per-step
residual ``r / (m h^{output_order})``).

**Optimisation** (:mod:`.loop`).  Adam, learning rate decayed per epoch by a cosine from ``lr``
to ``min_lr_ratio * lr`` over ``epochs``; the trajectories are split into training and
validation parts (``val_fraction``, by trajectory, seeded); training stops after ``patience``
epochs without a better monitored loss and, with ``restore_best``, the best epoch's weights
are put back.  The corrector ends in eval mode with ``training_info`` recording the data and
settings, and ``domain`` the training domain that ``solve(..., guard=...)`` checks against
(:func:`~attsolver.training.domain.record_domain`).

**Checkpoints** (:mod:`.checkpoint`).  With ``checkpoint=path`` a checkpoint (model, best
weights, optimizer, scheduler, RNG states, epoch, history, settings) is written atomically
after every epoch.  ``resume=True`` continues from it to the same weights an uninterrupted run
would reach (a missing file starts afresh); the settings, the data and the number of processes
must match (``epochs`` and ``patience`` may change; the cosine schedule then follows the new
``epochs``; a ``rollout_schedule`` must give the epochs already run the lengths they ran).
Without ``resume`` an existing file is an error unless ``overwrite=True``.
``attsolver.correctors.load_corrector(path)`` reads the best weights from it.

**Loss** (:mod:`.loss`).  ``loss="relative"`` divides each sample's squared error by the zero
correction's on the same sample plus a floor (0.1 of the median over the training samples): the
scale on which the corrector must beat the classical step.  ``loss="correlation"`` (rollout
training) scores each window by one minus the Pearson correlation of the predicted and observed
states, averaged over its frames.

**Distributed** (:mod:`.distributed`).  Under ``torchrun --nproc_per_node=N`` (or with a
process group already initialised) the model is wrapped in DistributedDataParallel (gloo on
CPU), the training samples are sharded with a DistributedSampler (each process takes
``batch_size // N`` samples per step, so the global batch is unchanged) and only rank 0 writes
the checkpoint.  All ranks end with the same weights.

**The end-of-fit check** (:mod:`.check`): see :attr:`FitHistory.check`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from torch import Tensor

from .._validate import positive_int
from ..correctors import Corrector
from .arguments import as_dataset, check_args, check_data, checkpoint_path, right_hand_side
from .check import check_result
from .domain import record_domain
from .stability import describe, unstable_states
from .distributed import distributed_context, end_process_group
from .history import FitCheckWarning, FitHistory
from .loop import train
from .schedule import Schedule

__all__ = ["fit"]


def fit(
    corrector: Corrector, data: Any, *, method: str | None = None, step_size: float | None = None,
    epochs: int = 100, lr: float = 1e-3, batch_size: int = 256, rollout_steps: int = 0,
    rollout_schedule: Schedule | None = None, val_fraction: float = 0.2, patience: int | None = 20,
    seed: int = 0, checkpoint: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
    progress: bool = True, weight_decay: float = 0.0, grad_clip: float | None = None,
    min_lr_ratio: float = 0.0, restore_best: bool = True, system: Callable[[Tensor, Tensor], Tensor] | None = None,
    autonomous: bool | None = None, on_epoch_end: Callable[[int, FitHistory], None] | None = None,
    f: Callable[[Tensor, Tensor], Tensor] | None = None, check: bool = True,
    checkpoint_steps: int | None = None, loss: str = "mse",
) -> FitHistory:
    """Train ``corrector`` in place on the trajectories in ``data`` (the targets, optimisation,
    checkpoints and DDP are described in :mod:`attsolver.training.trainer`).

    Args:
        corrector: a :class:`attsolver.correctors.Corrector`; its dtype is the training dtype.
        data: a :class:`attsolver.data.TrajectoryDataset` or the path of an HDF5 file from
            :func:`attsolver.data.save_h5`.  ``t`` must be uniform.
        method, step_size: default the corrector's; if given they must equal it.
        epochs: epochs to run in total (>= 1).
        lr: Adam learning rate.
        batch_size: samples (pairs or windows) per optimisation step, over all processes.
        rollout_steps: ``k`` data intervals per training window (0: one-step targets).
        rollout_schedule: instead of ``rollout_steps``, a window length per epoch: a callable
            ``epoch -> k`` (``epoch`` the 0-based epoch index, as in ``LambdaLR``; called once per
            epoch before training starts), or a list of ``(first_epoch, k)`` pairs starting at epoch
            0 with increasing epochs, each ``k`` holding until the next pair.  Every ``k`` is an
            integer >= 1.  Only epochs of one window length compete for the best epoch (a longer
            window's loss is on another scale).  E.g. a curriculum from 2 to ``K`` over the first
            half of training: ``lambda e: max(2, min(K, 2 + (K - 1) * e // max(1, epochs // 2)))``.
        val_fraction: fraction of trajectories held out for validation, in ``[0, 1)``; 0
            monitors the training loss instead.
        patience: epochs without improvement before stopping; ``None`` never stops early.
        seed: seeds the split and the per-epoch shuffling; equal seeds give equal runs.
        checkpoint: path of the training checkpoint, or ``None``.
        resume: continue from ``checkpoint`` if it exists.
        overwrite: allow replacing an existing ``checkpoint`` without resuming.
        progress: report the epochs (rank 0): a tqdm bar on a terminal, otherwise INFO log
            lines on the ``attsolver.progress`` logger every few seconds (a cluster log shows them).
        weight_decay: Adam weight decay.
        grad_clip: clip the gradient norm to this value, or ``None``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        restore_best: put the best epoch's weights back at the end.
        system: the right-hand side ``f(t, y)`` — any callable in torchdiffeq's convention;
            default ``data.make_system()`` (the built-in system the data records).  Required
            for data of a user's own ``f`` (``f=`` is the same argument).
        autonomous: whether ``f`` ignores ``t`` (windows starting at different times then
            share one solve); default ``f.autonomous`` (``True`` for attsolver systems), else ``False``.
        on_epoch_end: called as ``on_epoch_end(epoch, history)`` after each epoch's
            checkpoint is written; returning ``True`` ends training after that epoch
            (``history.stopped_early``; that epoch's checkpoint does not record the stop), e.g.
            :class:`attsolver.training.ScoreStopping` (early stopping on a score of the model).
        f: the same as ``system`` (the name ``solve`` uses); give one of them.
        check: at the end, check the result (see ``FitHistory.check``) and warn
            (:class:`FitCheckWarning`) when the corrected rollout is worse than the uncorrected
            one, when the loss did not fall well below the zero correction's, or when the
            one-step targets are dominated by observation noise — with what to change.
        checkpoint_steps: rollout training only: back-propagate through each window's solve
            in recomputed segments of this many steps (``solve``'s ``options["checkpoint_steps"]``,
            see docs/guide/gradients.md): the same gradients in memory that does not grow with
            the window; ``None`` (default) keeps every step's graph.
        loss: ``"mse"`` (default); ``"relative"``: each sample's squared error over the uncorrected
            solver's plus a floor; ``"correlation"`` (rollouts only): one minus the per-frame
            correlation of predicted and observed states (when to use which: :mod:`attsolver.training.loss`).

    Returns:
        A :class:`FitHistory`.

    Raises:
        TypeError / ValueError: bad arguments or data (NaN rows, mismatched state shape,
            non-uniform times, ``dt`` not a whole multiple of ``step_size``, too few trajectories
            for the split), or a checkpoint that cannot be resumed (another corrector class or
            config, other settings or data, newer schema, damaged file); files are left as they were.
        FileExistsError: ``checkpoint`` exists and neither ``resume`` nor ``overwrite``.
        NonFiniteLossError: the loss became non-finite; the corrector is put back to its
            state at the end of the last completed epoch (what the checkpoint holds).
    """
    started = time.perf_counter()
    args = check_args(corrector, method, step_size, epochs, lr, batch_size, rollout_steps, rollout_schedule,
                      val_fraction, patience, seed, weight_decay, grad_clip, min_lr_ratio, loss)
    args["checkpoint_steps"] = None if checkpoint_steps is None else positive_int("checkpoint_steps", checkpoint_steps)
    data = as_dataset(data)
    ckpt_path = checkpoint_path(checkpoint, resume, overwrite)
    f, autonomous = right_hand_side(corrector, data, system, f, autonomous)
    rank, world, owned_group = distributed_context()
    if check:
        _warn_unstable_states(corrector, data, f, args, autonomous)
    try:
        history = train(corrector, data, f, autonomous, args, ckpt_path=ckpt_path, resume=resume,
                        progress=progress, restore_best=restore_best, on_epoch_end=on_epoch_end, rank=rank,
                        world=world, started=started)
        if len(data) * (data.n_times - 1) >= 2:  # what solve(..., guard=...) scores against
            record_domain(corrector, data, f=f)
        if check:
            history.check = check_result(corrector, data, f, args, history, rank == 0, autonomous)
            history.wall_time_s = time.perf_counter() - started
        return history
    finally:
        if owned_group:
            end_process_group()


def _warn_unstable_states(corrector, data, f, args, autonomous: bool) -> None:
    """Before training: warn (:class:`FitCheckWarning`) naming the training states on which the
    coarse classical step is unstable (:func:`attsolver.training.stability.unstable_states`)."""
    _, m = check_data(data, corrector, args)
    msg = describe(unstable_states(data, f, args["method"], args["step_size"], m, autonomous), args["method"],
                   args["step_size"])
    if msg:
        warnings.warn(msg, FitCheckWarning, stacklevel=3)
