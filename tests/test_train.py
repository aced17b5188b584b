"""fit(): learning the local error, repeatability, checkpoints and resume, failure modes, DDP."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import attsolver
from attsolver.correctors import AttSolver, Hypersolver, NeurVec, load_corrector
from attsolver._io import seal_payload, verify_payload
from attsolver.correctors.base import SCHEMA_VERSION, read_checkpoint
from attsolver.data import TrajectoryDataset, generate_trajectories
from attsolver.systems import LinearSystem, Lorenz63
from attsolver.training import NonFiniteLossError, fit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def linear_data():
    """Training and held-out trajectories of y' = A y (eigenvalues -0.1 ± 2i) on dt = 0.1."""
    train = generate_trajectories("linear", 16, t_final=5.0, dt=0.1, seed=1, progress=False)
    test = generate_trajectories("linear", 8, t_final=10.0, dt=0.1, seed=2, progress=False)
    return train, test


def rollout_error(system, test, model, *, method, step_size):
    """Relative L2 error of the (corrected) coarse solve against the reference, held-out ICs."""
    y0 = test.y_true[:, 0]
    if model is not None:
        y0 = y0.to(model.dtype)
    with torch.no_grad():
        sol = attsolver.solve(system, y0, test.t, method=method, step_size=step_size, corrector=model)
    ref = test.y_true
    return float((sol.transpose(0, 1).double() - ref).norm() / ref.norm())


SMALL = {
    "NeurVec": (NeurVec, {"width": 256}),
    "Hypersolver": (Hypersolver, {}),
    "AttSolver-add": (AttSolver, {"width": 64}),
    "AttSolver-mul": (AttSolver, {"width": 64, "combine": "mul"}),
}


def quick_fit(model, data, **kw):
    args = dict(epochs=3, lr=3e-3, batch_size=64, progress=False, patience=None)
    args.update(kw)
    return fit(model, data, **args)


# --------------------------------------------------------------------------- it learns the local error


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_corrector_learns_euler_local_error_on_linear_system(variant, linear_data):
    # For y' = Ay the Euler residual r = (expm(hA) - I - hA) y is linear in y: learnable,
    # and the corrected step approaches the exact flow map.  Euler alone is unstable here
    # (|1 + h lambda| > 1), so its rollout error over t in [0, 10] is O(1).
    train, test = linear_data
    system = LinearSystem()
    cls, kw = SMALL[variant]
    torch.manual_seed(0)
    model = cls(2, method="euler", step_size=0.1, **kw)
    history = quick_fit(model, train, epochs=25)
    coarse = rollout_error(system, test, None, method="euler", step_size=0.1)
    corrected = rollout_error(system, test, model, method="euler", step_size=0.1)
    assert coarse > 1.0
    assert corrected * 50 < coarse, (variant, coarse, corrected)
    assert history.train_loss[-1] < 0.01 * history.train_loss[0]
    # the model reports what it was trained on
    info = model.trained_for
    assert info["data"]["n_train"] + info["data"]["n_val"] == 16 and info["fit"]["epochs_run"] == 25
    assert not model.training


def test_attsolver_reduces_rk4_error_on_lorenz63():
    system = Lorenz63()
    train = generate_trajectories(system, 12, t_final=4.0, dt=0.05, spin_up=5.0, refine=20, seed=1,
                                  progress=False, noise_level=1e-4)
    test = generate_trajectories(system, 12, t_final=1.0, dt=0.05, spin_up=5.0, refine=20, seed=2,
                                 progress=False)
    torch.manual_seed(0)
    model = AttSolver(3, method="rk4", step_size=0.05, width=64, dtype=torch.float64)
    quick_fit(model, train, epochs=30)
    coarse = rollout_error(system, test, None, method="rk4", step_size=0.05)
    corrected = rollout_error(system, test, model, method="rk4", step_size=0.05)
    assert corrected * 5 < coarse, (coarse, corrected)


def test_normalisation_comes_from_the_training_data(linear_data):
    train, _ = linear_data
    model = NeurVec(2, method="euler", step_size=0.1, width=16)
    quick_fit(model, train, epochs=1, val_fraction=0.0)
    y = train.y[:, :-1].reshape(-1, 2)
    torch.testing.assert_close(model.in_mean.double(), y.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.in_std.double(), y.std(0, correction=0), rtol=1e-5, atol=1e-6)
    A = torch.tensor(LinearSystem().A, dtype=torch.float64)
    r = train.y[:, 1:].reshape(-1, 2) - (y + 0.1 * y @ A.T)
    torch.testing.assert_close(model.out_scale.double(), r.square().mean(0).sqrt(), rtol=1e-5, atol=0)


def test_rollout_loss_backpropagates_through_solve(linear_data):
    train, test = linear_data
    torch.manual_seed(0)
    model = AttSolver(2, method="euler", step_size=0.1, width=32)
    history = quick_fit(model, train, epochs=4, lr=1e-2, rollout_steps=3)
    assert model.trained_for["fit"]["rollout_steps"] == 3
    assert history.train_loss[-1] < 0.2 * history.train_loss[0]
    coarse = rollout_error(LinearSystem(), test, None, method="euler", step_size=0.1)
    assert rollout_error(LinearSystem(), test, model, method="euler", step_size=0.1) * 5 < coarse


def test_several_steps_per_data_interval(linear_data):
    # dt = 0.1 = 2 h: no single-step residual is observed; the loss is taken after the two
    # corrected steps that span each interval
    train, test = linear_data
    torch.manual_seed(0)
    model = AttSolver(2, method="euler", step_size=0.05, width=32)
    quick_fit(model, train, epochs=4, lr=1e-2)
    assert model.trained_for["fit"]["steps_per_interval"] == 2
    coarse = rollout_error(LinearSystem(), test, None, method="euler", step_size=0.05)
    assert rollout_error(LinearSystem(), test, model, method="euler", step_size=0.05) * 5 < coarse


def test_non_autonomous_path_matches_the_autonomous_one():
    # windows starting at different times are solved group by group when f may depend on t;
    # for an autonomous f both paths must give the same training run (dt = 1/8 is exact in
    # binary, so every window takes exactly the same steps)
    data = generate_trajectories("linear", 6, t_final=2.5, dt=0.125, seed=3, progress=False)
    runs = []
    for autonomous in (True, False):
        torch.manual_seed(0)
        model = AttSolver(2, method="euler", step_size=0.125, width=16, dtype=torch.float64)
        h = quick_fit(model, data, epochs=2, rollout_steps=2, autonomous=autonomous)
        runs.append((model, h))
    (a, ha), (b, hb) = runs
    torch.testing.assert_close(ha.train_loss, hb.train_loss, rtol=1e-9, atol=0)  # batch-shape rounding
    # (weights are compared through the function: Adam turns rounding-level differences of
    # near-zero gradients into visible weight differences)
    y = data.y[:, :-1].reshape(-1, 2)
    torch.testing.assert_close(a(None, y, 0.125 * y, 0.125), b(None, y, 0.125 * y, 0.125), rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- repeatability, early stop


def test_same_seed_gives_identical_weights(linear_data):
    train, _ = linear_data
    states, losses = [], []
    for seed in (7, 7, 8):
        torch.manual_seed(0)
        model = AttSolver(2, method="euler", step_size=0.1, width=32)
        h = quick_fit(model, train, seed=seed)
        states.append(model.state_dict())
        losses.append(h.train_loss)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]) and losses[0] == losses[1]
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_early_stopping_restores_the_best_weights(linear_data, tmp_path):
    train, _ = linear_data
    torch.manual_seed(0)
    model = NeurVec(2, method="euler", step_size=0.1, width=32, activation="tanh")
    h = quick_fit(model, train, epochs=40, lr=0.3, patience=2, checkpoint=tmp_path / "c.pt")
    assert h.stopped_early and h.epochs_run == h.best_epoch + 2 < 40
    assert h.best_loss == min(h.val_loss)
    # the returned model holds the best epoch's weights, and so does load_corrector(checkpoint)
    loaded = load_corrector(tmp_path / "c.pt")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert set(h.as_dict()) >= {"train_loss", "val_loss", "lr", "best_epoch", "best_loss", "stopped_early"}
    assert h.lr[0] == 0.3 and h.lr[1] < h.lr[0]  # cosine decay


# --------------------------------------------------------------------------- checkpoints and resume


class _Killed(Exception):
    pass


def test_resume_after_a_kill_reaches_the_uninterrupted_weights(linear_data, tmp_path):
    train, _ = linear_data
    kw = dict(epochs=5, lr=3e-3, batch_size=64, progress=False, patience=None)

    torch.manual_seed(0)
    straight = AttSolver(2, method="euler", step_size=0.1, width=32)
    h_straight = fit(straight, train, checkpoint=tmp_path / "a.pt", **kw)

    def kill_after_2(epoch, history):
        if epoch == 2:
            raise _Killed

    torch.manual_seed(0)
    first = AttSolver(2, method="euler", step_size=0.1, width=32)
    with pytest.raises(_Killed):
        fit(first, train, checkpoint=tmp_path / "b.pt", on_epoch_end=kill_after_2, **kw)
    assert read_checkpoint(tmp_path / "b.pt")["epoch"] == 2

    torch.manual_seed(123)  # a fresh process would build the model with other weights
    resumed = AttSolver(2, method="euler", step_size=0.1, width=32)
    h_resumed = fit(resumed, train, checkpoint=tmp_path / "b.pt", resume=True, **kw)
    assert h_resumed.resumed_from == 2
    assert h_resumed.train_loss == h_straight.train_loss and h_resumed.val_loss == h_straight.val_loss
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_resume_of_a_finished_run_changes_nothing(linear_data, tmp_path):
    train, _ = linear_data
    torch.manual_seed(0)
    model = NeurVec(2, method="euler", step_size=0.1, width=16)
    quick_fit(model, train, epochs=2, checkpoint=tmp_path / "c.pt")
    before = copy.deepcopy(model.state_dict())
    h = quick_fit(NeurVec(2, method="euler", step_size=0.1, width=16), train, epochs=2,
                  checkpoint=tmp_path / "c.pt", resume=True)
    assert h.epochs_run == 2 and len(h.train_loss) == 2
    again = load_corrector(tmp_path / "c.pt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in before.items())


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(linear_data, tmp_path):
    train, _ = linear_data
    path = tmp_path / "c.pt"
    torch.manual_seed(0)
    model = NeurVec(2, method="euler", step_size=0.1, width=16)
    quick_fit(model, train, epochs=2, checkpoint=path)
    saved = path.read_bytes()
    model.register_forward_hook(lambda module, inputs, out: out * float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite in epoch 3, batch 0.*still holds epoch 2") as e:
        quick_fit(model, train, epochs=4, checkpoint=path, resume=True)
    assert e.value.epoch == 3 and e.value.checkpoint == path
    h = e.value.history  # the completed epochs' record comes with the error (the resumed two)
    assert h.epochs_run == 2 and len(h.train_loss) == len(h.val_loss) == 2 and h.loss == "mse"
    assert path.read_bytes() == saved
    good = read_checkpoint(path)["model"]["state_dict"]
    assert all(torch.equal(v, good[k]) for k, v in model.state_dict().items())


def test_a_validation_rollout_that_blows_up_stops_fit_with_the_epochs_so_far(linear_data):
    """A non-finite validation loss after epoch 2 (a hook poisons the corrector's output once
    training has run two epochs): fit raises, naming the epoch, with the history of epoch 1 and
    the callback's view of it intact (what a caller keeping its own best weights needs)."""
    train, _ = linear_data
    torch.manual_seed(0)
    model = NeurVec(2, method="euler", step_size=0.1, width=16)
    seen = []

    def poison_after_1(epoch, history):
        seen.append(epoch)
        if epoch == 1:
            model.register_forward_hook(lambda module, inputs, out: out if module.training else out * float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"validation loss is nan after epoch 2") as e:
        quick_fit(model, train, epochs=4, on_epoch_end=poison_after_1)
    assert e.value.epoch == 2 and seen == [1]
    h = e.value.history
    assert h.epochs_run == 1 and len(h.train_loss) == len(h.val_loss) == 1 and all(map(math.isfinite, h.val_loss))


# --------------------------------------------------------------------------- bad input


def test_bad_data_is_refused(linear_data):
    train, _ = linear_data
    model = NeurVec(2, method="euler", step_size=0.1, width=16)
    nan_rows = copy.copy(train)
    nan_rows.y = train.y.clone()
    nan_rows.y[3, 7, 0] = float("nan")
    nan_rows.y[11, 0, 1] = float("inf")
    with pytest.raises(ValueError, match=r"trajectory index\(es\) 3, 11"):
        quick_fit(model, nan_rows)
    with pytest.raises(ValueError, match=r"states have shape \(2,\).*state shape \(3,\)"):
        quick_fit(NeurVec(3, method="euler", step_size=0.1, width=16), train)
    with pytest.raises(ValueError, match="too few trajectories"):
        quick_fit(model, train.subset([0]), val_fraction=0.2)
    with pytest.raises(ValueError, match="not a whole multiple"):
        quick_fit(NeurVec(2, method="euler", step_size=0.03, width=16), train)
    with pytest.raises(ValueError, match="method 'rk4' differs"):
        quick_fit(model, train, method="rk4")
    with pytest.raises(ValueError, match="step_size 0.05 differs"):
        quick_fit(model, train, step_size=0.05)
    with pytest.raises(ValueError, match="rollout_steps=60 needs trajectories of at least 61 times"):
        quick_fit(model, train, rollout_steps=60)
    t = train.t.clone()
    t[5:] += 0.01
    uneven = TrajectoryDataset(t=t, y=train.y, system=train.system)
    with pytest.raises(ValueError, match="not uniform"):
        quick_fit(model, uneven)
    with pytest.raises(TypeError, match="TrajectoryDataset"):
        quick_fit(model, train.y)
    with pytest.raises(ValueError, match="val_fraction"):
        quick_fit(model, train, val_fraction=1.0)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        quick_fit(model, train, resume=True)


def test_checkpoint_problems_are_refused_and_leave_the_file(linear_data, tmp_path):
    train, _ = linear_data
    path = tmp_path / "c.pt"
    torch.manual_seed(0)
    quick_fit(Hypersolver(2, method="euler", step_size=0.1, hidden=(8,)), train, epochs=1, checkpoint=path)
    saved = path.read_bytes()

    def model():
        return NeurVec(2, method="euler", step_size=0.1, width=16)

    with pytest.raises(FileExistsError, match="resume=True"):
        quick_fit(model(), train, checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint of a Hypersolver corrector, but fit was given a NeurVec"):
        quick_fit(model(), train, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="lr: checkpoint 0.003, now 0.01"):
        quick_fit(Hypersolver(2, method="euler", step_size=0.1, hidden=(8,)), train, epochs=2,
                  checkpoint=path, resume=True, lr=0.01)
    with pytest.raises(ValueError, match="config"):
        quick_fit(Hypersolver(2, method="euler", step_size=0.1, hidden=(16,)), train, epochs=2,
                  checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="data"):
        quick_fit(Hypersolver(2, method="euler", step_size=0.1, hidden=(8,)), train.subset(range(8)),
                  epochs=2, checkpoint=path, resume=True)
    assert path.read_bytes() == saved

    newer = tmp_path / "newer.pt"
    ckpt = verify_payload(torch.load(path, weights_only=True), str(path))
    ckpt["schema_version"] = SCHEMA_VERSION + 1
    torch.save(seal_payload(ckpt), newer)  # as a newer attsolver would write it
    newer_bytes = newer.read_bytes()
    with pytest.raises(ValueError, match="newer attsolver"):
        quick_fit(model(), train, checkpoint=newer, resume=True)
    assert newer.read_bytes() == newer_bytes

    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(saved[: len(saved) // 3])
    with pytest.raises(ValueError, match="not a readable attsolver checkpoint"):
        quick_fit(model(), train, checkpoint=corrupted, resume=True)
    assert corrupted.read_bytes() == saved[: len(saved) // 3]

    plain = model().save(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        quick_fit(model(), train, checkpoint=plain, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "corrupted.pt", "newer.pt", "plain.pt"]


def test_fit_reads_an_h5_file(linear_data, tmp_path):
    from attsolver.data import save_h5

    train, _ = linear_data
    path = save_h5(train.subset(range(4)), tmp_path / "d.h5")
    model = NeurVec(2, method="euler", step_size=0.1, width=16)
    h = quick_fit(model, path, epochs=1)
    assert len(h.train_loss) == 1 and model.trained_for["data"]["system"]["name"] == "linear"


# --------------------------------------------------------------------------- DDP


_DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from attsolver.correctors import AttSolver
from attsolver.data import generate_trajectories
from attsolver.training.trainer import fit

out = sys.argv[1]
data = generate_trajectories("linear", 10, t_final=5.0, dt=0.1, seed=1, progress=False)
torch.manual_seed(int(os.environ.get("RANK", "0")))  # different starts: DDP must broadcast rank 0's
model = AttSolver(2, method="euler", step_size=0.1, width=32, dtype=torch.float64)
history = fit(model, data, epochs=3, lr=3e-3, batch_size=64, progress=False, seed=3,
              checkpoint=os.path.join(out, "ckpt.pt"), overwrite=True)
torch.save({"state": model.state_dict(), "train_loss": history.train_loss,
            "world": model.trained_for["fit"]["world_size"]},
           os.path.join(out, f"rank{os.environ.get('RANK', 'single')}.pt"))
"""


def test_ddp_two_processes_end_with_the_same_weights(tmp_path):
    script = tmp_path / "run_fit.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    # --standalone: a rendezvous on localhost with a free port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    assert r0["train_loss"] == r1["train_loss"]
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    assert (tmp_path / "ckpt.pt").exists()  # written by rank 0 only, atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "rank0.pt", "rank1.pt", "run_fit.py"]

    # each process takes half of every global batch, so the run equals a single-process one
    # up to the order of floating-point sums (float64: in float32, Adam's division by
    # sqrt(v) turned that order into 7e-4 relative on a near-zero weight)
    env.pop("RANK", None)
    single = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    s = torch.load(tmp_path / "ranksingle.pt", weights_only=True)
    for k, v in s["state"].items():
        torch.testing.assert_close(v, r0["state"][k], rtol=1e-7, atol=1e-10)


# --------------------------------------------------------------------------- command line


def test_train_and_solve_from_the_command_line(linear_data, tmp_path, capsys):
    import argparse

    from attsolver.cli.correctors import add_solve_parser, add_train_parser
    from attsolver.data import save_h5

    parser = argparse.ArgumentParser(prog="attsolver")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_solve_parser(sub)

    def run(*argv):
        args = parser.parse_args([str(a) for a in argv])
        return args.func(args)

    train, test = linear_data
    save_h5(train, tmp_path / "train.h5")
    save_h5(test, tmp_path / "test.h5")
    model = tmp_path / "model.pt"
    assert run("train", "linear", "--data", tmp_path / "train.h5", "--method", "euler", "--step", 0.1,
               "--corrector", "attsolver-mul", "--param", "width=32", "--epochs", 25, "--lr", 3e-3,
               "--batch-size", 64, "-o", model, "--no-progress") == 0
    assert "wrote" in capsys.readouterr().out
    loaded = load_corrector(model)
    assert loaded.config()["combine"] == "mul" and loaded.config()["width"] == 32

    assert run("solve", "linear", "--data", tmp_path / "test.h5", "--method", "euler", "--step", 0.1) == 0
    coarse = float(capsys.readouterr().out.split("relative L2 error against")[1].split(":")[1].split(";")[0])
    assert run("solve", "linear", "--data", tmp_path / "test.h5", "--method", "euler", "--step", 0.1,
               "--corrector", model, "-o", tmp_path / "pred.h5") == 0
    out = capsys.readouterr().out
    corrected = float(out.split("relative L2 error against")[1].split(":")[1].split(";")[0])
    assert corrected * 10 < coarse and (tmp_path / "pred.h5").exists()

    # refusals: existing output, other step, other system
    assert run("train", "linear", "--data", tmp_path / "train.h5", "--method", "euler", "-o", model) == 2
    assert "exists" in capsys.readouterr().err
    assert run("solve", "linear", "--data", tmp_path / "test.h5", "--method", "euler", "--step", 0.05,
               "--corrector", model) == 2
    assert "step size 0.05" in capsys.readouterr().err
    assert run("solve", "lorenz63", "--data", tmp_path / "test.h5", "--corrector", model) == 2
    assert "holds 'linear' trajectories" in capsys.readouterr().err


def test_conv_correctors_from_the_command_line(tmp_path, capsys):
    """``--corrector *-conv`` builds the model on the data's grid and domain; solve refuses
    another grid unless ``--allow-other-grid``; an ODE system is refused with the fix."""
    from attsolver.cli import main

    def gen(name, nx, seed):
        assert main(["data", "generate", "burgers", "--n", "4", "--param", f"nx={nx}", "--param", "nu=0.05",
                     "--param", "length=6.283185307179586", "--dt", "0.05", "--t-final", "0.5",
                     "--seed", str(seed), "-o", str(tmp_path / name), "--no-progress"]) == 0

    gen("b32.h5", 32, 0)
    gen("b64.h5", 64, 1)
    model = tmp_path / "conv.pt"
    assert main(["train", "burgers", "--data", str(tmp_path / "b32.h5"), "--method", "etdrk4",
                 "--corrector", "neurvec-conv", "--param", "width=8", "--epochs", "2", "--val-fraction", "0.25",
                 "-o", str(model), "--no-progress"]) == 0
    loaded = load_corrector(model)
    assert type(loaded).__name__ == "NeurVecConv"
    assert loaded.nx == 32 and loaded.domain_length == pytest.approx(2 * math.pi)
    assert loaded.trained_for["step_size"] == pytest.approx(0.05)
    capsys.readouterr()

    assert main(["solve", "burgers", "--data", str(tmp_path / "b64.h5"), "--method", "etdrk4",
                 "--corrector", str(model)]) == 2
    assert "allow_other_grid" in capsys.readouterr().err
    assert main(["solve", "burgers", "--data", str(tmp_path / "b64.h5"), "--method", "etdrk4",
                 "--corrector", str(model), "--allow-other-grid"]) == 0
    err = float(capsys.readouterr().out.split("relative L2 error against")[1].split(":")[1].split(";")[0])
    assert math.isfinite(err)

    assert main(["data", "generate", "lorenz63", "--n", "2", "--t-final", "0.2", "-o", str(tmp_path / "l.h5"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "lorenz63", "--data", str(tmp_path / "l.h5"), "--corrector", "attsolver-conv",
                 "-o", str(tmp_path / "x.pt")]) == 2
    assert "choose neurvec, hypersolver or attsolver" in capsys.readouterr().err
    assert main(["solve", "lorenz63", "--t-final", "1", "--dt", "0.1", "--allow-other-grid"]) == 2
    assert "convolutional corrector" in capsys.readouterr().err
