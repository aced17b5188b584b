"""attsolver.pruning: the base criteria against by-hand computations, pruning through
torch-pruning (exact parameter counts, the kept filters), criteria clustering, the blended
importance, the evolutionary search, BN recalibration, the CLI and the bad-input errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attsolver.cli import main as cli_main
from attsolver.pruning import (CRITERIA, BlendedImportance, accumulate_gradients, accuracy, check_prunable,
                               cluster_criteria, compare_latency, evolve, heldout_split, layer_scores, make_importance, model_cost,
                               normalise_scores, prune_model, pruning_groups, rank_correlation, ratio_for_reduction,
                               recalibrate_bn)
from attsolver.vision import make_model

tp = pytest.importorskip("torch_pruning")


class TwoConv(nn.Module):
    """conv1 (3->6) BN ReLU conv2 (6->4) BN ReLU pool fc (4->2): two pruning groups."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():  # distinct BN scales, so bn_scale ranks something
            for bn in (self.bn1, self.bn2):
                bn.weight.copy_(torch.rand(bn.num_features) * 2 - 0.5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TwoConv().eval()


X = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def _score(net, criterion, reduction, layer="conv1"):
    groups = {g.name: g for g in pruning_groups(net, X)}
    return make_importance(criterion, reduction=reduction)(groups[layer].group).double()


# ----------------------------------------------------------------------------- criteria


def test_groups_are_named_by_root_layer_and_classifier_is_ignored(net):
    groups = pruning_groups(net, X)
    assert sorted((g.name, g.channels) for g in groups) == [("conv1", 6), ("conv2", 4)]


def test_l1_l2_first_layer_equal_the_filter_norms_by_hand(net):
    w = net.conv1.weight.detach().double()
    assert torch.allclose(_score(net, "l1", "first"), w.abs().sum(dim=(1, 2, 3)))
    assert torch.allclose(_score(net, "l2", "first"), (w ** 2).sum(dim=(1, 2, 3)))


def test_group_mean_l1_averages_conv_out_bn_and_next_conv_in(net):
    # the group of conv1's channel k: conv1's filter k, bn1's gamma_k, conv2's input slice k
    w1, w2 = net.conv1.weight.detach().double(), net.conv2.weight.detach().double()
    g = net.bn1.weight.detach().double()
    by_hand = (w1.abs().sum(dim=(1, 2, 3)) + g.abs() + w2.abs().sum(dim=(0, 2, 3))) / 3
    assert torch.allclose(_score(net, "l1", "mean"), by_hand)


def test_bn_scale_is_abs_gamma(net):
    assert torch.allclose(_score(net, "bn_scale", "mean"), net.bn1.weight.detach().double().abs())
    assert torch.allclose(_score(net, "bn_scale", "mean", "conv2"), net.bn2.weight.detach().double().abs())


def test_fpgm_is_summed_distance_to_the_other_filters(net):
    # torch-pruning's FPGM: points |w|^2 of each flattened filter, score = sum of Euclidean distances
    pts = net.conv1.weight.detach().double().flatten(1) ** 2
    by_hand = torch.stack([sum(torch.linalg.vector_norm(pts[k] - pts[j]) for j in range(6)) for k in range(6)])
    assert torch.allclose(_score(net, "fpgm", "first"), by_hand, rtol=1e-5)


def test_taylor_is_abs_weight_times_gradient(net):
    x = torch.randn(16, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(3))
    loss = accumulate_gradients(net, x, y, batch_size=5)  # batches of 5 sum to the full-batch mean
    w = net.conv1.weight
    ref = copy.deepcopy(net).eval()
    full = F.cross_entropy(ref(x), y)
    (g,) = torch.autograd.grad(full, ref.conv1.weight)
    assert loss == pytest.approx(float(full.detach()), rel=1e-5)
    assert torch.allclose(w.grad, g, atol=1e-6)
    by_hand = (w.detach() * g).abs().sum(dim=(1, 2, 3)).double()
    assert torch.allclose(_score(net, "taylor", "first"), by_hand, rtol=1e-5)


def test_layer_scores_cover_every_group_and_criterion(net):
    accumulate_gradients(net, torch.randn(8, 3, 6, 6), torch.randint(0, 2, (8,)))
    scores = layer_scores(net, X)
    assert set(scores) == {"conv1", "conv2"}
    for name, n in (("conv1", 6), ("conv2", 4)):
        assert set(scores[name]) == set(CRITERIA)
        assert all(s.shape == (n,) and np.isfinite(s).all() for s in scores[name].values())


def test_taylor_without_gradients_is_refused(net):
    with pytest.raises(ValueError, match="accumulate_gradients"):
        layer_scores(net, X, ["taylor"])
    with pytest.raises(ValueError, match="accumulate_gradients"):
        prune_model(net, "taylor", pruning_ratio=0.5, example_inputs=X)


def test_unknown_criterion_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of: l1, l2, fpgm, bn_scale, taylor"):
        make_importance("l3")


# ----------------------------------------------------------------------------- pruning


def test_pruning_keeps_the_highest_l1_filters_with_exact_counts(net):
    w1 = net.conv1.weight.detach().clone()
    keep = torch.sort(torch.argsort(w1.abs().sum(dim=(1, 2, 3)), descending=True)[:3]).values
    rep = prune_model(net, make_importance("l1", reduction="first"), pruning_ratio=0.5, example_inputs=X)
    assert net.conv1.out_channels == 3 and net.conv2.in_channels == 3 and net.conv2.out_channels == 2
    assert torch.equal(net.conv1.weight.detach(), w1[keep])  # the kept filters, in their order
    # by hand: conv1 3*3*3*3, bn1 2*3, conv2 2*3*3*3, bn2 2*2, fc 2*2+2 (classifier outputs kept)
    expected = 81 + 6 + 54 + 4 + 6
    assert rep.params_after == expected == sum(p.numel() for p in net.parameters())
    assert rep.params_before == 162 + 12 + 216 + 8 + 10
    assert net(torch.randn(5, 3, 6, 6)).shape == (5, 2)


def test_resnet_pruned_params_match_torch_pruning_and_it_runs():
    torch.manual_seed(0)
    model = make_model("resnet20", num_classes=10, in_channels=1, shortcut="B").eval()
    x = torch.randn(1, 1, 8, 8)
    rep = prune_model(model, "l2", pruning_ratio=0.25, example_inputs=x)
    flops, params = tp.utils.count_ops_and_params(model, x)
    assert rep.params_after == params == sum(p.numel() for p in model.parameters())
    assert rep.flops_after == flops < rep.flops_before
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][:2] == [12, 12]  # 16 * 0.75
    assert model.fc.out_features == 10
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_zero_pad_shortcut_is_refused_naming_the_layer():
    model = make_model("resnet20", num_classes=10, in_channels=1)  # option A: F.pad appends channels
    with pytest.raises(ValueError, match=r"'stages\.1\.blocks\.0\.shortcut' \(_ZeroPadShortcut\).*shortcut='B'"):
        prune_model(model, "l1", pruning_ratio=0.3, example_inputs=torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="dependency graph cannot handle"):
        check_prunable(model, torch.randn(1, 1, 8, 8))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), True, "0.3"])
def test_pruning_ratio_outside_unit_interval_is_refused(net, ratio):
    with pytest.raises(ValueError, match=r"pruning_ratio must be a number in \[0, 1\)"):
        prune_model(net, "l1", pruning_ratio=ratio, example_inputs=X)


def test_zero_ratio_changes_nothing(net):
    before = copy.deepcopy(net.state_dict())
    rep = prune_model(net, "l1", pruning_ratio=0.0, example_inputs=X)
    assert rep.params_after == rep.params_before
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_ratio_for_reduction_reaches_the_target_minimally():
    model = make_model("resnet20", num_classes=10, in_channels=1, shortcut="B")
    x = torch.randn(1, 1, 8, 8)
    ratio, reached = ratio_for_reduction(model, x, 0.5, tol=1e-3)
    assert reached >= 0.5
    below = copy.deepcopy(model)
    assert prune_model(below, "l1", pruning_ratio=ratio - 0.01, example_inputs=x).flops_reduction < 0.5


# ----------------------------------------------------------------------------- clustering


def test_rank_correlation_of_a_criterion_with_itself_is_one():
    a = np.random.default_rng(0).normal(size=20)
    for method in ("spearman", "kendall"):
        assert rank_correlation(a, a, method) == pytest.approx(1.0)
        assert rank_correlation(a, np.exp(a), method) == pytest.approx(1.0)  # monotone map: same ranking
        assert rank_correlation(a, -a, method) == pytest.approx(-1.0)
    assert rank_correlation(a, np.ones(20)) == 0.0  # a constant score ranks nothing


def test_clustering_groups_identically_ranking_criteria():
    rng = np.random.default_rng(1)
    scores = {}
    for layer in range(4):
        a, c = rng.normal(size=16), rng.normal(size=16)
        scores[f"layer{layer}"] = {"a": a, "b": 3 * a + 1, "c": c, "d": c ** 3 + 0.01 * rng.normal(size=16)}
    cl = cluster_criteria(scores, ["a", "c", "b", "d"], threshold=0.3)
    assert cl.clusters == [["a", "b"], ["c", "d"]]
    assert cl.labels[0] == cl.labels[2] != cl.labels[1] == cl.labels[3]
    assert np.allclose(np.diag(cl.mean), 1.0) and cl.mean[0, 2] == pytest.approx(1.0)
    assert cl.representatives[0] in ("a", "b") and cl.representatives[1] in ("c", "d")


def test_representative_is_the_cluster_medoid():
    rng = np.random.default_rng(2)
    base = rng.normal(size=200)
    # m sits between x and z: it correlates best with both, so it represents the cluster
    x, z = base + 0.5 * rng.normal(size=200), base + 0.5 * rng.normal(size=200)
    scores = {"L": {"x": x, "m": base, "z": z}}
    cl = cluster_criteria(scores, ["x", "m", "z"], threshold=0.9)
    assert cl.clusters == [["x", "m", "z"]] and cl.representatives == ["m"]


def test_cluster_threshold_is_checked():
    with pytest.raises(ValueError, match="threshold"):
        cluster_criteria({"L": {"a": np.arange(3.0)}}, threshold=-1)


# ----------------------------------------------------------------------------- blend


def test_normalisations_map_to_unit_interval_and_keep_order():
    s = torch.tensor([3.0, -1.0, 10.0, 3.0])
    assert torch.allclose(normalise_scores(s, "minmax"), torch.tensor([4 / 11, 0.0, 1.0, 4 / 11], dtype=torch.float64))
    assert torch.allclose(normalise_scores(s, "rank"), torch.tensor([0.5, 0.0, 1.0, 0.5], dtype=torch.float64))
    assert torch.equal(normalise_scores(torch.ones(3)), torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("normalisation", ["minmax", "rank"])
def test_one_hot_blend_ranks_like_the_single_criterion(normalisation):
    torch.manual_seed(0)
    model = make_model("resnet20", num_classes=10, in_channels=1, shortcut="B")
    for m in model.modules():  # non-trivial BN scales
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.1, 2.0)
    x = torch.randn(1, 1, 8, 8)
    names = ["l1", "fpgm", "bn_scale"]
    for i, name in enumerate(names):
        alpha = [0.0] * 3
        alpha[i] = 2.5
        blend = BlendedImportance(alpha, names, normalisation=normalisation)
        single = make_importance(name)
        for g in pruning_groups(model, x):
            a, b = blend(g.group), single(g.group)
            assert torch.equal(torch.argsort(a, stable=True), torch.argsort(b, stable=True)), (name, g.name)


def test_blend_is_the_weighted_sum_of_normalised_scores(net):
    g = {p.name: p for p in pruning_groups(net, X)}["conv1"].group
    blend = BlendedImportance({"l1": 0.25, "bn_scale": 0.75})
    l1 = make_importance("l1")(g)
    bn = make_importance("bn_scale")(g)
    mm = lambda s: (s - s.min()) / (s.max() - s.min())  # noqa: E731
    assert torch.allclose(blend(g).double(), (0.25 * mm(l1) + 0.75 * mm(bn)).double(), atol=1e-6)


def test_blend_plugs_into_torch_pruning_pruner(net):
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    prune_model(a, BlendedImportance({"l1": 1.0, "fpgm": 0.0}), pruning_ratio=0.5, example_inputs=X)
    prune_model(b, "l1", pruning_ratio=0.5, example_inputs=X)
    assert isinstance(BlendedImportance({"l1": 1.0}), tp.importance.Importance)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("alphas, kwargs, match", [
    ({"l1": -1.0}, {}, "alpha for 'l1' must be a finite number >= 0"),
    ({"l1": 0.0, "l2": 0.0}, {}, "at least one alpha must be > 0"),
    ([1.0, 2.0], {"criteria": ["l1"]}, "2 alphas for 1 criteria"),
    ({"l9": 1.0}, {}, "unknown pruning criterion 'l9'"),
    ({"l1": 1.0}, {"normalisation": "zscore"}, "normalisation must be one of minmax, rank"),
])
def test_blend_bad_input(alphas, kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlendedImportance(alphas, **kwargs)


# ----------------------------------------------------------------------------- evolution


def test_evolution_finds_a_known_optimum_and_is_reproducible():
    target = np.array([0.6, 0.3, 0.1])

    def fitness(a):
        return -float(np.linalg.norm(a - target))

    kw = dict(population=16, generations=30, mutation_sigma=0.05, elite=2, seed=3)
    r1 = evolve(fitness, 3, **kw)
    assert np.linalg.norm(r1.best - target) < 0.03
    assert r1.best.sum() == pytest.approx(1.0) and (r1.best >= 0).all()
    bests = [h["best"] for h in r1.history]
    assert all(b2 >= b1 for b1, b2 in zip(bests, bests[1:]))  # elitism: never worse
    r2 = evolve(fitness, 3, **kw)
    assert np.array_equal(r1.best, r2.best) and r1.history == r2.history
    r3 = evolve(fitness, 3, **{**kw, "seed": 4})
    assert r3.history != r1.history


def test_evolution_starts_from_every_single_criterion():
    seen = []
    evolve(lambda a: seen.append(a.copy()) or 0.0, 3, population=5, generations=0)
    assert np.allclose(seen[:4], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    assert len(seen) == 5 and np.isclose(seen[4].sum(), 1.0)  # the fifth: a random point of the simplex


def test_evolution_log_resumes_without_recomputing(tmp_path):
    calls = []

    def fitness(a):
        calls.append(1)
        return float(-abs(a[0] - 0.7))

    log = tmp_path / "search.jsonl"
    r1 = evolve(fitness, 2, population=6, generations=4, seed=0, log=log)
    n = len(calls)
    assert n == r1.evaluations and len(log.read_text().splitlines()) == n
    r2 = evolve(fitness, 2, population=6, generations=4, seed=0, log=log)
    assert len(calls) == n and r2.reused == n and np.array_equal(r1.best, r2.best)


@pytest.mark.parametrize("kw, match", [
    ({"population": 1}, "population must be an integer >= 2"),
    ({"elite": 4, "population": 4}, "elite must be smaller than population"),
    ({"mutation_sigma": -0.1}, "mutation_sigma must be a finite number >= 0"),
    ({"crossover_rate": 1.5}, r"crossover_rate must lie in \[0, 1\]"),
    ({"generations": -1}, "generations must be an integer >= 0"),
])
def test_evolution_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        evolve(lambda a: 0.0, 2, **kw)


def test_evolution_refuses_non_finite_fitness():
    with pytest.raises(ValueError, match="must be finite"):
        evolve(lambda a: float("nan"), 2, population=2, generations=0, elite=0)


# ----------------------------------------------------------------------------- calibration pieces


def test_bn_recalibration_sets_the_exact_batch_statistics(net):
    x = torch.randn(40, 3, 6, 6) * 2 + 1
    seen = []
    h = net.bn1.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach()))
    recalibrate_bn(net, x, batch_size=15)  # 3 batches (15, 15, 10): each batch counts once
    h.remove()
    assert [len(s) for s in seen] == [15, 15, 10]
    # momentum None = PyTorch's cumulative average: the plain mean of the per-batch statistics
    means = torch.stack([s.mean(dim=(0, 2, 3)) for s in seen])
    variances = torch.stack([s.var(dim=(0, 2, 3), unbiased=True) for s in seen])
    assert torch.allclose(net.bn1.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(net.bn1.running_var, variances.mean(0), atol=1e-5)
    assert net.bn1.num_batches_tracked.item() == 3
    assert not net.training and net.bn1.momentum == 0.1


def test_heldout_split_is_stratified_and_disjoint():
    y = torch.arange(10).repeat_interleave(20)
    keep, held = heldout_split(y, 0.25, seed=0)
    assert len(set(keep.tolist()) & set(held.tolist())) == 0 and len(keep) + len(held) == 200
    assert torch.bincount(y[held]).tolist() == [5] * 10
    assert torch.equal(heldout_split(y, 0.25, seed=0)[1], held)
    with pytest.raises(ValueError, match="heldout fraction"):
        heldout_split(y, 1.0)


def test_accuracy_and_model_cost(net):
    x = torch.randn(30, 3, 6, 6)
    y = net(x).argmax(1)
    assert accuracy(net, x, y) == 1.0 and accuracy(net, x, 1 - y) == 0.0
    flops, params = model_cost(net, X)
    assert params == sum(p.numel() for p in net.parameters())
    # multiply-accumulates: conv1 6*27*36, conv2 4*54*36, fc 4*2 (+ BN/bias terms counted by torch-pruning)
    assert flops >= 6 * 27 * 36 + 4 * 54 * 36 + 8


def test_latency_comparison_times_every_model_and_checks_its_clock(net):
    t = compare_latency({"a": net, "b": copy.deepcopy(net)}, X, repeats=2, clock="process")
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())  # timings only; speed is benchmarked
    with pytest.raises(ValueError, match="clock must be 'wall' or 'process'"):
        compare_latency({"a": net}, X, clock="cpu")


# ----------------------------------------------------------------------------- CLI


def test_cli_criteria_lists_every_criterion(capsys):
    assert cli_main(["prune", "criteria"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in CRITERIA) and "blend" in out


@pytest.mark.parametrize("args, match", [
    (["--finetune-lr", "-0.01", "--ratio", "0.3"], "--finetune-lr must be a positive learning rate"),
    (["--lr", "-1", "--ratio", "0.3"], "--lr must be a positive learning rate"),
    (["--ratio", "1.2"], r"--ratio must lie in \[0, 1\)"),
    (["--target-flops", "-0.5"], r"--target-flops must lie in \[0, 1\)"),
    ([], "exactly one of --ratio"),
])
def test_cli_bad_input(capsys, args, match):
    assert cli_main(["prune", "run", "--no-progress", *args]) == 2
    import re
    assert re.search(match, capsys.readouterr().err)


def test_cli_run_prunes_and_reports(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli_main(["prune", "run", "--dataset", "digits", "--epochs", "1", "--criterion", "l1", "--ratio", "0.25",
                   "--finetune-epochs", "1", "--no-progress", "-o", str(out), "--threads", "1",
                   "--save-model", str(tmp_path / "p.pt")])
    assert rc == 0
    s = json.loads(out.read_text())
    assert s["params_after"] < s["params_before"] and 0.0 <= s["test_acc_finetuned"] <= 1.0
    assert s["pruning_ratio"] == 0.25
    from attsolver.pruning import load_pruned_model  # a checksummed weights_only file, rebuilt exactly
    assert sum(p.numel() for p in load_pruned_model(tmp_path / "p.pt").parameters()) == s["params_after"]


@pytest.mark.slow
def test_cli_blend_search_runs(tmp_path):
    out = tmp_path / "b.json"
    rc = cli_main(["prune", "run", "--epochs", "2", "--criterion", "blend", "--target-flops", "0.4",
                   "--population", "3", "--generations", "1", "--finetune-epochs", "1", "--no-progress",
                   "-o", str(out), "--threads", "1"])
    assert rc == 0
    s = json.loads(out.read_text())
    assert abs(sum(s["alpha"].values()) - 1.0) < 1e-5
    assert 1 - s["flops_after"] / s["flops_before"] >= 0.4
