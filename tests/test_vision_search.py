"""Connection masks and the EAN connection search (attsolver.vision.search)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

from attsolver.nn import DIAUnit, SEGate
from attsolver.vision import CifarResNet, count_parameters, make_model
from attsolver.vision import search as vsearch
from attsolver.vision.data import synthetic_images
from attsolver.vision.resnet import attention_parameters, check_connection, connection_key
from attsolver.vision.search import (MaskEvaluator, MaskPolicy, evaluate_mask, holdout_split, make_reward,
                                     random_masks_like, random_search, reinforce_search, sample_mask, train_supernet)

from _scripts import load_script


def tiny(attention: str = "dia", depth: int = 14, seed: int = 0, **kw) -> CifarResNet:
    """depth 14 = 6*2+2: 2 blocks per stage, 6 blocks; narrow so that tests stay fast."""
    torch.manual_seed(seed)
    return CifarResNet(depth, 4, in_channels=1, base_width=4, attention=attention, reduction=2, **kw)


def attention_modules(model: CifarResNet) -> list[torch.nn.Module]:
    mods = [s.shared for s in model.stages if s.shared is not None]
    return mods + [b.attention for s in model.stages for b in s.blocks if b.attention is not None]


def count_calls(model: CifarResNet) -> tuple[list[int], list]:
    calls, handles = [0], []
    for m in attention_modules(model):
        handles.append(m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)))
    return calls, handles


X = torch.randn(5, 1, 12, 12, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- masks on the model


@pytest.mark.parametrize("attention", ["dia", "shared_se", "se"])
def test_an_all_zero_mask_never_calls_the_attention_and_equals_the_network_without_it(attention):
    model = tiny(attention).eval()
    plain = tiny("none").eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(".shared." in k or ".attention." in k for k in unexpected)
    calls, handles = count_calls(model)
    out = model(X, connection=[0] * 6)
    assert calls[0] == 0  # skipped, not multiplied by one
    assert torch.equal(out, plain(X))
    model(X)  # default: every block connected -> one call per block
    assert calls[0] == 6
    for h in handles:
        h.remove()


@pytest.mark.parametrize("attention", ["dia", "shared_se", "se"])
def test_an_all_one_mask_is_the_unmasked_network_and_each_bit_is_one_call(attention):
    model = tiny(attention).eval()
    ref = model(X)
    assert torch.equal(model(X, connection="111111"), ref)
    calls, handles = count_calls(model)
    for mask in ("100000", "010011", "110110"):
        calls[0] = 0
        out = model(X, connection=mask)
        assert calls[0] == mask.count("1")
        assert not torch.equal(out, ref)  # the mask changes the function
    for h in handles:
        h.remove()


def test_dia_state_passes_an_unconnected_block_unchanged():
    model = tiny("dia", depth=20).eval()  # 3 blocks per stage
    seen = []
    unit = model.stages[1].shared
    hook = unit.register_forward_hook(lambda mod, args, out: seen.append((args[1] if len(args) > 1 else None, out[1])))
    model(X, connection="000101000")  # stage 1 (blocks 3,4,5): connected, skipped, connected
    hook.remove()
    assert len(seen) == 2
    assert seen[0][0] is None  # the stage's first connected block starts from the zero state
    assert seen[1][0] is seen[0][1]  # the skipped block left the state exactly as it was


def test_dia_with_a_mask_matches_a_hand_written_stage():
    """Independent computation of a masked DIA stage: gate only the connected blocks, carry
    the state between them."""
    model = tiny("dia", depth=20).eval()
    mask = (1, 0, 1, 0, 0, 1, 1, 1, 0)
    x = torch.relu(model.stem_norm(model.stem(X)))
    with torch.no_grad():
        for i, stage in enumerate(model.stages):
            state = None
            for j, blk in enumerate(stage.blocks):
                u = blk.layers(x)
                if mask[3 * i + j]:
                    h, c = stage.shared(u, state)[1]
                    state = (h, c)
                    u = u * h[:, :, None, None]
                x = torch.relu(u + blk.shortcut(x))
        expected = model.fc(x.mean(dim=(2, 3)))
        assert torch.allclose(model(X, connection=mask), expected, atol=1e-6)


def test_mask_on_the_model_in_the_config_and_per_call():
    model = tiny("dia", connection="101010")
    assert model.connection == (1, 0, 1, 0, 1, 0) and model.config()["connection"] == [1, 0, 1, 0, 1, 0]
    rebuilt = CifarResNet(**model.config())
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    assert torch.equal(rebuilt(X), model(X, connection=[1, 0, 1, 0, 1, 0]))
    assert torch.equal(model(X), model(X, connection=torch.tensor([1, 0, 1, 0, 1, 0])))
    model.connection = None
    assert "connection" not in model.config() and torch.equal(model(X), model(X, connection=np.ones(6, int)))
    assert check_connection([True, False, 1.0, 0, 1, 0], 6) == (1, 0, 1, 0, 1, 0)
    assert connection_key((1, 0, 1)) == "101"


@pytest.mark.parametrize("mask, error, words", [
    ([1, 0, 1], ValueError, "3 bits but the model has 6 blocks"),
    ("1010101", ValueError, "7 bits but the model has 6 blocks"),
    ([1, 0, 2, 0, 1, 0], ValueError, "must be 0 or 1, got 2"),
    ([1, 0, 0.5, 0, 1, 0], ValueError, "must be 0 or 1, got 0.5"),
    ("10x010", ValueError, "may only contain '0' and '1'"),
    (torch.ones(2, 3), ValueError, "must be 1-D"),
    (101010, TypeError, "sequence of 0/1"),
])
def test_a_bad_mask_is_refused_with_the_fix(mask, error, words):
    model = tiny("dia")
    with pytest.raises(error, match="connection mask") as info:
        model(X, connection=mask)
    assert words in str(info.value)
    with pytest.raises(error):
        model.connection = mask
    assert model.connection is None  # a refused mask leaves the model as it was


@pytest.mark.parametrize("attention", ["none", "iebn"])
def test_a_mask_needs_attention_on_the_residual_branch(attention):
    with pytest.raises(ValueError, match="use se, shared_se or dia"):
        tiny(attention, connection="111111")


def test_attention_parameters_count_only_the_modules_a_mask_uses():
    model = tiny("dia")
    unit = model.stages[2].shared  # C = 16 (4 * 4), r = 2: 2 (C*C/r + C/r + C/r*4C + 4C)
    c, h = 16, 8
    assert count_parameters(unit) == 2 * (c * h + h + h * 4 * c + 4 * c)
    assert attention_parameters(model, "000000") == 0
    assert attention_parameters(model, "000001") == attention_parameters(model, "000011") == count_parameters(unit)
    assert attention_parameters(model) == count_parameters(model) - count_parameters(tiny("none"))
    se = tiny("se")  # one gate per block: each connected block adds its own gate
    gate_c4 = count_parameters(se.stages[0].blocks[0].attention)
    assert gate_c4 == 2 * (4 * 2) + 2 + 4  # Linear(4,2) + Linear(2,4) with biases
    assert attention_parameters(se, "110000") == 2 * gate_c4
    assert isinstance(model.stages[0].shared, DIAUnit) and isinstance(se.stages[0].blocks[0].attention, SEGate)


def test_published_counts_do_not_move_with_the_mask():
    model = make_model("resnet164", num_classes=100, attention="dia", connection=[0, 1] * 27)
    assert count_parameters(model) == 1_946_132 and model.num_blocks == 54


# --------------------------------------------------------------------------- data and supernet


def test_holdout_is_a_stratified_part_of_the_training_set_and_leaves_the_test_set_alone():
    data = synthetic_images(200, 50, num_classes=4, channels=1, size=8, seed=3)
    split = holdout_split(data, 0.25, seed=0)
    per_class = [round(0.25 * k) for k in torch.bincount(data.train_y).tolist()]
    assert torch.bincount(split.test_y).tolist() == per_class
    assert len(split.train_y) == 200 - sum(per_class)
    both = torch.cat([split.train_x, split.test_x]).flatten(1)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, data.train_x.flatten(1).tolist()))
    test_rows = set(map(tuple, data.test_x.flatten(1).tolist()))
    assert not test_rows & set(map(tuple, split.test_x.flatten(1).tolist()))
    assert torch.equal(split.mean, data.mean)
    with pytest.raises(ValueError, match="fraction"):
        holdout_split(data, 0.0)


def test_mask_bits_are_bernoulli_p():
    g = torch.Generator().manual_seed(0)
    bits = np.array([sample_mask(9, 0.3, g) for _ in range(2000)])
    # 18000 Bernoulli(0.3) draws: the mean is within 4 standard errors of 0.3
    assert abs(bits.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / bits.size)
    assert abs(np.corrcoef(bits[:, 0], bits[:, 1])[0, 1]) < 0.1  # independent bits


def test_supernet_draws_a_fresh_mask_per_mini_batch_and_restores_bn_after_calibration():
    data = holdout_split(synthetic_images(160, 40, num_classes=4, channels=1, size=8, seed=0), 0.25)
    model = tiny("dia")
    masks = []
    hook = model.register_forward_pre_hook(
        lambda mod, args, kwargs: masks.append(kwargs.get("connection")) if mod.training else None, with_kwargs=True)
    hist = train_supernet(model, data, epochs=2, batch_size=16, p=0.5, seed=0, calibration=32)
    hook.remove()
    train_masks = [m for m in masks if m is not None]
    assert len(train_masks) >= 2 * math.ceil(120 / 16)  # one per mini-batch (+ the calibration passes)
    assert len(set(train_masks[:16])) > 8  # fresh draws, not one mask reused
    assert len(hist.train_loss) == 2 and 0 <= hist.holdout_acc_full[-1] <= 1
    bn = model.stages[0].blocks[0].layers[1]
    before = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    evaluate_mask(model, data, "101010", calibration=48)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2] and bn.momentum == 0.1


# --------------------------------------------------------------------------- REINFORCE and random search


def test_policy_log_prob_is_the_bernoulli_likelihood_and_starts_uniform():
    torch.manual_seed(0)
    policy = MaskPolicy(5)
    assert torch.allclose(policy.probabilities(), torch.full((5,), 0.5))
    with torch.no_grad():
        policy.mlp[-1].bias.fill_(0.7)
    masks = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    p = torch.sigmoid(policy.logits()).detach()
    expected = (masks * p.log() + (1 - masks) * (1 - p).log()).sum(1)
    assert torch.allclose(policy.log_prob(masks), expected, atol=1e-6)


def test_reinforce_estimator_is_the_gradient_of_the_expected_reward():
    """For independent bits and R(m) = w·m, E[R] = Σ w_j σ(z_j); the score-function estimate
    mean_k (R_k − b) ∇_z log π(m_k) must approach w ⊙ σ(z)(1 − σ(z))."""
    z = torch.tensor([-1.0, 0.0, 0.5, 2.0], requires_grad=True)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    g = torch.Generator().manual_seed(0)
    m = (torch.rand(200_000, 4, generator=g) < torch.sigmoid(z).detach()).float()
    r = m @ w
    logp = -torch.nn.functional.binary_cross_entropy_with_logits(z.expand_as(m), m, reduction="none").sum(1)
    (grad,) = torch.autograd.grad(((r - r.mean()) * logp).mean(), z)
    s = torch.sigmoid(z).detach()
    assert torch.allclose(grad, w * s * (1 - s), atol=0.02)


@pytest.mark.parametrize("seed", [0, 1])
def test_reinforce_converges_to_the_known_optimum_of_a_toy_reward(seed):
    target = (1, 0, 1, 1, 0, 0, 1, 0, 1)
    calls = []

    def reward(mask):
        calls.append(mask)
        return float(sum(a == b for a, b in zip(mask, target)))

    res = reinforce_search(reward, 9, budget=200, seed=seed, max_samples=800)
    assert res.best_mask == target and res.greedy_mask == target
    assert all(p > 0.9 if t else p < 0.1 for p, t in zip(res.probabilities, target))
    assert len(calls) == len(set(calls)) == res.evaluated <= 200  # a mask drawn again is not re-scored
    assert res.samples > res.evaluated  # it did draw repeats
    again = reinforce_search(reward, 9, budget=200, seed=seed, max_samples=800)
    assert again.to_dict() == res.to_dict()  # deterministic given the seed


def test_random_search_spends_exactly_its_budget_and_exhaustive_finds_the_optimum():
    target = (0, 1, 1, 0)
    reward = lambda m: -sum(a != b for a, b in zip(m, target)) + 0.01 * sum(m)  # noqa: E731
    res = random_search(reward, 4, budget=7, seed=0)
    assert res.evaluated == res.samples == 7 and len({t["mask"] for t in res.trace}) == 7
    assert res.best_reward == max(t["reward"] for t in res.trace)
    full = random_search(reward, 4, budget=16, seed=0)
    assert full.best_mask == target


@pytest.mark.parametrize("budget, error, words", [
    (0, ValueError, "budget (masks to evaluate) must be at least 1, got 0"),
    (-3, ValueError, "at least 1"),
    (17, ValueError, "exceeds the 16 masks"),
    (2.5, TypeError, "must be an integer"),
])
def test_a_bad_budget_is_refused(budget, error, words):
    for search in (reinforce_search, random_search):
        with pytest.raises(error) as info:
            search(lambda m: 0.0, 4, budget=budget)
        assert words in str(info.value)


def test_random_masks_of_equal_sparsity():
    ticket = (1, 0, 1, 1, 0, 0)
    masks = random_masks_like(ticket, 5, seed=0, exclude=[(1, 1, 1, 0, 0, 0)])
    assert len(set(masks)) == 5 and all(sum(m) == 3 for m in masks)
    assert ticket not in masks and (1, 1, 1, 0, 0, 0) not in masks
    assert len(random_masks_like((1, 0, 0), 10)) == 2  # only 3 masks with one bit, minus the ticket


# --------------------------------------------------------------------------- evaluation log and resume


@pytest.fixture(scope="module")
def supernet():
    data = holdout_split(synthetic_images(96, 24, num_classes=4, channels=1, size=8, seed=0), 0.25)
    model = tiny("dia", depth=8)  # 3 blocks, 8 masks
    train_supernet(model, data, epochs=1, batch_size=24, seed=0, calibration=0)
    return model, data


class Interrupt(Exception):
    pass


def test_an_interrupted_search_resumes_from_its_log_without_re_evaluating(supernet, tmp_path, monkeypatch):
    model, data = supernet
    scored = []
    real = vsearch.evaluate_mask
    monkeypatch.setattr(vsearch, "evaluate_mask", lambda m, d, mask, **kw: scored.append(tuple(mask)) or real(m, d, mask, **kw))

    # the uninterrupted run, in its own log
    ev = MaskEvaluator(model, data, log=tmp_path / "whole.jsonl", calibration=16)
    whole = reinforce_search(make_reward(ev, sparsity_bonus=0.01), 3, budget=6, seed=3)
    assert whole.new_evaluations == 6 and len(scored) == 6

    # the same search, stopped after its third evaluation
    scored.clear()
    ev = MaskEvaluator(model, data, log=tmp_path / "cut.jsonl", calibration=16)
    reward = make_reward(ev, sparsity_bonus=0.01)

    def stopping(mask):
        if ev.evaluations == 3 and not ev.known(mask):
            raise Interrupt
        return reward(mask)

    with pytest.raises(Interrupt):
        reinforce_search(stopping, 3, budget=6, seed=3)
    first = list(scored)
    assert len(first) == 3
    lines = (tmp_path / "cut.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["key"] == "__supernet__"

    scored.clear()
    ev2 = MaskEvaluator(model, data, log=tmp_path / "cut.jsonl", calibration=16)
    resumed = reinforce_search(make_reward(ev2, sparsity_bonus=0.01), 3, budget=6, seed=3)
    assert resumed.new_evaluations == 3 and not set(scored) & set(first)  # finished masks are not re-scored
    assert resumed.to_dict() == whole.to_dict()  # the same search as the uninterrupted one
    # random search on the same log scores only the masks the log lacks
    ev3 = MaskEvaluator(model, data, log=tmp_path / "cut.jsonl", calibration=16)
    logged = {tuple(r["mask"]) for r in ev3.records()}
    scored.clear()
    rs = random_search(make_reward(ev3, sparsity_bonus=0.01), 3, budget=6, seed=0)
    assert rs.evaluated == 6 and scored == [t["mask"] for t in rs.trace if t["mask"] not in logged]


def test_a_log_of_another_supernet_or_setup_is_refused(supernet, tmp_path):
    model, data = supernet
    MaskEvaluator(model, data, log=tmp_path / "log.jsonl", calibration=16)("101")
    other = tiny("dia", depth=8, seed=5)
    with pytest.raises(ValueError, match="another supernet"):
        MaskEvaluator(other, data, log=tmp_path / "log.jsonl", calibration=16)
    with pytest.raises(ValueError, match="calibration"):
        MaskEvaluator(model, data, log=tmp_path / "log.jsonl", calibration=0)
    with pytest.raises(ValueError, match="latency_batch"):
        make_reward(MaskEvaluator(model, data), latency_weight=0.1)


def test_latency_is_the_median_or_the_minimum_of_the_timed_forwards(monkeypatch):
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 25.0])  # three forwards of 3, 1 and 5 s
    monkeypatch.setattr(vsearch.time, "perf_counter", lambda: next(ticks))
    model = tiny("none")
    assert vsearch.measure_latency(model, X, repeats=3, warmup=0) == 3.0
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 25.0])
    assert vsearch.measure_latency(model, X, repeats=3, warmup=0, statistic="min") == 1.0
    with pytest.raises(ValueError, match="statistic must be 'median' or 'min'"):
        vsearch.measure_latency(model, X, statistic="mean")


def test_the_latency_term_uses_measured_times(supernet, monkeypatch):
    model, data = supernet
    fake = {(1, 1, 1): 2.0, (1, 0, 0): 1.5}
    monkeypatch.setattr(vsearch, "measure_latency", lambda m, x, mask, **kw: fake[tuple(mask)])
    ev = MaskEvaluator(model, data, latency_batch=8, calibration=0)
    r = make_reward(ev, sparsity_bonus=0.3, latency_weight=0.4)((1, 0, 0))
    acc = ev((1, 0, 0))["accuracy"]
    assert r == pytest.approx(acc + 0.3 * 2 / 3 - 0.4 * (1.5 / 2.0 - 1))


# --------------------------------------------------------------------------- CLI


def _cli(argv):
    from attsolver.cli.vision import add_vision_parser

    parser = argparse.ArgumentParser(prog="attsolver")
    add_vision_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_search_resumes_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "search"
    argv = ["vision", "search", "--dataset", "synthetic", "--model", "resnet8", "--supernet-epochs", "1",
            "--budget", "4", "--bn-calibration", "32", "--no-progress", "--threads", "1", "--out", str(out)]
    assert _cli(argv) == 0
    first = capsys.readouterr().out
    assert "reinforce ticket" in first and "(4 new" in first and "--connection" in first
    summary = json.loads((out / "search.json").read_text())
    assert summary["results"]["random"]["evaluated"] == summary["results"]["reinforce"]["evaluated"] == 4
    assert _cli(argv) == 2 and "--resume" in capsys.readouterr().err
    assert _cli(argv + ["--resume"]) == 0
    assert "4 masks evaluated (0 new" in capsys.readouterr().out
    assert json.loads((out / "search.json").read_text())["results"] == summary["results"]
    from attsolver._io import load_checkpoint

    raw = bytearray((out / "supernet.pt").read_bytes())  # a damaged supernet: one line, exit 2
    weights = max(load_checkpoint(out / "supernet.pt")["model"].values(), key=lambda v: v.numel())
    at = bytes(raw).find(weights.numpy().tobytes())
    assert at >= 0
    raw[at + 5] ^= 0x04  # inside the stored weights
    (out / "supernet.pt").write_bytes(bytes(raw))
    assert _cli(argv + ["--resume"]) == 2
    assert "supernet.pt" in capsys.readouterr().err
    assert _cli(argv[:-1] + [str(tmp_path / "b0"), "--budget", "0"]) == 2
    assert "budget (masks to evaluate) must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "b0" / "supernet.pt").exists()  # refused before any training
    assert _cli(["vision", "train", "--dataset", "synthetic", "--model", "resnet8", "--attention", "dia",
                 "--connection", "1012", "--epochs", "1"]) == 2
    assert "connection mask" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_tickets_writes_its_report(tmp_path):
    bench = load_script("benchmarks/tickets.py")
    assert bench.main(["--quick", "--seeds", "2", "--epochs", "1", "--supernet-epochs", "1", "--budget", "4",
                       "--search-seeds", "1", "--random-masks", "1", "--calibration", "16", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "tickets.json").read_text())
    assert report["complete"] and len(report["search"]["exhaustive"]["rewards"]) == 512
    names = {c["name"] for c in report["conditions"]}
    assert {"full", "ticket", "random_1", "none"} <= names
    assert report["extra_params"]["none"] == 0 and report["extra_params"]["full"] == 14_392
    md = (tmp_path / "tickets.md").read_text()
    assert "Is the ticket real?" in md and "attsolver vision search --data" in md
    assert (tmp_path / "tickets.png").stat().st_size > 0
    assert bench.main(["--render", "--out", str(tmp_path)]) == 0  # tables re-made from the stored runs
    assert (tmp_path / "tickets.md").read_text() == md
