"""attsolver.vision: CIFAR ResNets against the published parameter tables, shared attention,
the destabilisation switches, data loaders, the training loop (resume), the CLI, the bench."""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from attsolver.nn import DIAUnit, IEBatchNorm, SEGate
from attsolver.vision import CifarResNet, count_parameters, list_vision_attention, make_model
from attsolver.vision import train as vtrain
from attsolver.vision.data import load_cifar, load_digits, load_image_data, synthetic_images
from attsolver.vision.resnet import _ZeroPadShortcut
from attsolver.vision.train import augment_batch, load_checkpoint, train_classifier

from _scripts import load_script


def params_m(model: nn.Module, decimals: int) -> float:
    return round(count_parameters(model) / 1e6, decimals)


# --------------------------------------------------------------------------- published parameter counts


@pytest.mark.parametrize("attention, exact, published", [
    ("none", 1_727_284, 1.73),
    ("se", 1_929_388, 1.93),   # SE r=16, one per block (Hu et al.'s convention)
    ("dia", 1_946_132, 1.95),  # DIA r=4, one per stage
])
def test_resnet164_cifar100_matches_the_dianet_table(attention, exact, published):
    model = make_model("resnet164", num_classes=100, attention=attention)
    assert model.config()["block"] == "bottleneck"
    assert count_parameters(model) == exact
    assert params_m(model, 2) == published
    assert abs(exact / 1e6 - published) <= 0.005


@pytest.mark.parametrize("depth, exact, published, decimals", [
    (20, 269_722, 0.27, 2), (32, 464_154, 0.46, 2), (44, 658_586, 0.66, 2),
    (56, 853_018, 0.85, 2), (110, 1_727_962, 1.7, 1),
])
def test_basic_block_resnets_match_he_et_al_table6(depth, exact, published, decimals):
    model = make_model(f"resnet{depth}", num_classes=10)
    assert model.config()["block"] == "basic" and model.config()["shortcut"] == "A"
    assert count_parameters(model) == exact
    assert params_m(model, decimals) == published


def test_se_reduction_convention_matters_for_the_published_count():
    # r=4 SE blocks would be far off the published 1.93M: the table's SE is r=16
    assert params_m(make_model("resnet164", num_classes=100, attention="se", reduction=4), 2) == 2.51


# --------------------------------------------------------------------------- shared attention


def _stage_units(model):
    return [stage.shared for stage in model.stages]


def test_dia_is_one_unit_per_stage_and_its_cost_does_not_depend_on_depth():
    extra = {}
    for depth in (20, 56):
        base = count_parameters(make_model(f"resnet{depth}"))
        model = make_model(f"resnet{depth}", attention="dia")
        units = _stage_units(model)
        assert all(isinstance(u, DIAUnit) for u in units)
        assert all(blk.attention is None for st in model.stages for blk in st.blocks)
        extra[depth] = count_parameters(model) - base
        assert extra[depth] == sum(count_parameters(u) for u in units)
    assert extra[20] == extra[56] == 14_392


def test_dia_state_resets_at_each_stage_and_carries_within_it():
    model = make_model("resnet20", attention="dia").eval()  # 3 blocks per stage
    seen = []
    hooks = [stage.shared.register_forward_pre_hook(lambda mod, args, i=i: seen.append((i, args[1] is None)))
             for i, stage in enumerate(model.stages)]
    model(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert seen == [(i, j == 0) for i in range(3) for j in range(3)]


def test_dia_stage_is_relu_of_gated_residual_plus_shortcut_with_the_state_carried():
    torch.manual_seed(0)
    model = make_model("resnet20", attention="dia").eval()
    stage = model.stages[0]  # identity shortcuts
    x = torch.randn(2, 16, 8, 8)
    y, state = x, None
    for blk in stage.blocks:
        u = blk.residual(y)
        a, state = stage.shared(u, state)
        y = torch.relu(u * a + y)
    torch.testing.assert_close(stage(x), y, rtol=0, atol=0)


def test_per_block_and_shared_se_differ_in_count_by_the_number_of_blocks():
    n = 3  # resnet20
    per_block = make_model("resnet20", attention="se", reduction=4)
    shared = make_model("resnet20", attention="shared_se", reduction=4)
    base = count_parameters(make_model("resnet20"))
    se_costs = [count_parameters(SEGate(c, reduction=4)) for c in (16, 32, 64)]
    assert count_parameters(per_block) - base == n * sum(se_costs)
    assert count_parameters(shared) - base == sum(se_costs)
    assert all(isinstance(s.shared, SEGate) for s in shared.stages)


def test_iebn_replaces_every_batchnorm_but_the_projections():
    model = make_model("resnet164", num_classes=100, attention="iebn")
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    ie = [m for m in norms if isinstance(m, IEBatchNorm)]
    plain = [m for m in norms if not isinstance(m, IEBatchNorm)]
    assert len(plain) == 3  # one projection shortcut per stage
    assert len(ie) == 1 + 3 * 18 * 3  # stem + three per bottleneck
    base = count_parameters(make_model("resnet164", num_classes=100))
    assert count_parameters(model) - base == sum(2 * m.num_features for m in ie)


@pytest.mark.parametrize("attention", list_vision_attention())
@pytest.mark.parametrize("preact", [False, True])
def test_every_attention_trains_a_step_on_any_input_size(attention, preact):
    torch.manual_seed(0)
    model = CifarResNet(8, 5, in_channels=2, attention=attention, preact=preact, reduction=4)
    for size in ((8, 8), (13, 17), (32, 32)):
        x = torch.randn(3, 2, *size)
        logits = model(x)
        assert logits.shape == (3, 5)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


def test_preresnet_has_a_final_norm_and_preactivated_blocks():
    model = make_model("preresnet164", num_classes=100)
    assert isinstance(model.final_norm, nn.BatchNorm2d) and isinstance(model.stem_norm, nn.Identity)
    first = model.stages[0].blocks[0].layers
    assert isinstance(first[0], nn.BatchNorm2d) and isinstance(first[2], nn.Conv2d)


# --------------------------------------------------------------------------- destabilisation switches


def test_no_skip_removes_every_shortcut():
    model = make_model("resnet20", skip=False)
    blocks = [b for s in model.stages for b in s.blocks]
    assert len(blocks) == 9 and all(b.shortcut is None for b in blocks)
    assert not any(isinstance(m, _ZeroPadShortcut) for m in model.modules())
    # a block is then a plain layer: its output is ReLU of its residual branch alone
    x = torch.randn(2, 16, 8, 8)
    blk = blocks[0]
    torch.testing.assert_close(blk.merge(blk.residual(x), x), torch.relu(blk.residual(x)))
    bottleneck = make_model("resnet164", skip=False)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (2, 2)
                   for m in bottleneck.modules())  # no projection shortcuts either
    assert count_parameters(bottleneck) < count_parameters(make_model("resnet164"))


def test_no_bn_removes_every_normalisation_layer():
    for attention in ("none", "dia", "shared_se"):
        model = make_model("resnet20", attention=attention, batchnorm=False)
        assert not any(isinstance(m, _BatchNorm) for m in model.modules())
        assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(ValueError, match="iebn.*BatchNorm"):
        make_model("resnet20", attention="iebn", batchnorm=False)


def test_no_augmentation_switch_skips_the_augmentation(monkeypatch):
    calls = []
    real = vtrain.augment_batch
    monkeypatch.setattr(vtrain, "augment_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    data = synthetic_images(32, 16, num_classes=2, channels=1, size=8)
    train_classifier(CifarResNet(8, 2, in_channels=1), data, epochs=1, batch_size=16, augment=False, progress=False)
    assert calls == []
    train_classifier(CifarResNet(8, 2, in_channels=1), data, epochs=1, batch_size=16, augment=True, progress=False)
    assert len(calls) == 2


def test_augment_batch_crops_a_shifted_window_and_flips():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    g = torch.Generator().manual_seed(0)
    shifted = [augment_batch(x, g, pad=1, flip=False) for _ in range(20)]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for y in shifted:
        assert y.shape == x.shape
        for b in range(2):  # every output is a 4x4 window of the padded image
            assert any(torch.equal(y[b, 0], padded[b, 0, i:i + 4, j:j + 4]) for i in range(3) for j in range(3))
    assert any(not torch.equal(y, x) for y in shifted)
    flips = [augment_batch(x, g, pad=0, flip=True) for _ in range(20)]
    assert all(torch.equal(y[b], x[b]) or torch.equal(y[b], x[b].flip(-1)) for y in flips for b in range(2))
    assert any(torch.equal(y[0], x[0].flip(-1)) for y in flips)


# --------------------------------------------------------------------------- bad input


def test_depth_that_does_not_fit_the_block_type():
    with pytest.raises(ValueError, match=r"depth 21 fits no CIFAR ResNet: basic blocks need depth 6n\+2"):
        make_model("resnet21")
    with pytest.raises(ValueError, match=r"depth 32 does not fit bottleneck blocks: they need depth 9n\+2.*fits basic"):
        make_model("resnet32", block="bottleneck")
    with pytest.raises(ValueError, match=r"depth 29 does not fit basic blocks: they need depth 6n\+2"):
        CifarResNet(29, block="basic")
    assert CifarResNet(29).config()["block"] == "bottleneck"
    assert CifarResNet(20, block="bottleneck").config()["block"] == "bottleneck"
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        make_model("vgg16")


def test_wrong_input_channels_and_unknown_attention():
    model = make_model("resnet20")
    with pytest.raises(ValueError, match=r"expected images \[batch, 3, height, width\].*in_channels=1"):
        model(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"expected images"):
        model(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"unknown attention 'cbam'; choose one of: none, dia, iebn, se, shared_se"):
        make_model("resnet20", attention="cbam")
    with pytest.raises(ValueError, match="shortcut"):
        make_model("resnet20", shortcut="C")


# --------------------------------------------------------------------------- data


def _write_cifar(folder: Path, dataset: str = "cifar10", n: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if dataset == "cifar10":
        names, key, meta, meta_key, k = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", \
            "batches.meta", b"label_names", 10
    else:
        names, key, meta, meta_key, k = ["train", "test"], b"fine_labels", "meta", b"fine_label_names", 100
    for name in names:
        with open(folder / name, "wb") as fh:  # protocol 2 and plain lists, as the real files
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         key: [int(v) for v in rng.integers(0, k, n)]}, fh, protocol=2)
    with open(folder / meta, "wb") as fh:
        pickle.dump({meta_key: [f"class{i}".encode() for i in range(k)]}, fh, protocol=2)


def test_cifar10_and_cifar100_python_batches(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_cifar(tmp_path, "cifar10")  # the parent folder works too
    assert d.train_x.shape == (20, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (4, 3, 32, 32) and d.num_classes == 10 and d.classes[3] == "class3"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert torch.equal(d.train_x[4:8].reshape(4, -1), torch.from_numpy(raw[b"data"]))  # channel-major layout
    _write_cifar(tmp_path / "c100", "cifar100")
    d100 = load_image_data("cifar100", tmp_path / "c100")
    assert d100.num_classes == 100 and d100.train_y.max() < 100 and len(d100.classes) == 100


def test_cifar_missing_or_malformed_folder_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected .*data_batch_1.*test_batch.*batches.meta"):
        load_cifar(tmp_path / "nowhere")
    _write_cifar(tmp_path / "c10")
    os.remove(tmp_path / "c10" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3; expected"):
        load_cifar(tmp_path / "c10")
    _write_cifar(tmp_path / "c10")
    (tmp_path / "c10" / "test_batch").write_text("not a pickle")
    with pytest.raises(ValueError, match=r"test_batch is not a readable CIFAR python batch"):
        load_cifar(tmp_path / "c10")
    with open(tmp_path / "c10" / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh, protocol=2)
    with pytest.raises(ValueError, match=r"uint8 \[N, 3072\]"):
        load_cifar(tmp_path / "c10")
    with open(tmp_path / "c10" / "test_batch", "wb") as fh:  # a pickle that would run code
        pickle.dump({b"data": _Evil()}, fh, protocol=2)
    with pytest.raises(ValueError, match=r"refusing to load"):
        load_cifar(tmp_path / "c10")
    with pytest.raises(ValueError, match="needs a data folder"):
        load_image_data("cifar10", None)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_image_data("mnist")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_digits_ship_offline_with_a_stratified_split():
    d = load_digits()
    assert d.train_x.shape[1:] == (1, 8, 8) and len(d.train_y) + len(d.test_y) == 1797
    assert 0.0 <= float(d.train_x.min()) and float(d.train_x.max()) <= 1.0
    counts = torch.bincount(d.test_y, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38  # ~20% of each class's ~180
    assert not d.flip
    x = d.normalize(d.train_x)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2


# --------------------------------------------------------------------------- training, checkpoints, resume


@pytest.fixture(scope="module")
def tiny():
    return synthetic_images(48, 32, num_classes=3, channels=1, size=8, seed=0)


def test_training_learns_a_tiny_synthetic_problem(tiny):
    torch.manual_seed(0)
    model = CifarResNet(8, 3, in_channels=1, attention="dia")
    hist = train_classifier(model, tiny, epochs=10, batch_size=8, lr=0.05, progress=False)
    assert hist.epochs_run == 10 and len(hist.test_acc) == 10
    assert hist.lr == pytest.approx([0.05] * 5 + [0.005] * 2 + [0.0005] * 3)  # decays at 10 // 2, 30 // 4
    assert hist.final_test_acc > 0.6  # chance is 1/3


def test_resume_after_an_interruption_gives_the_uninterrupted_run(tiny, tmp_path, monkeypatch):
    def build(seed):
        torch.manual_seed(seed)
        return CifarResNet(8, 3, in_channels=1, attention="dia")

    kw = dict(epochs=4, batch_size=16, lr=0.05, milestones=[2], seed=3, progress=False)
    straight = build(0)
    h_straight = train_classifier(straight, tiny, checkpoint=tmp_path / "a.pt", **kw)

    real_eval, calls = vtrain.evaluate, []

    def interrupting_eval(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # during epoch 3, after epoch 2's checkpoint
            raise KeyboardInterrupt
        return real_eval(*a, **k)

    monkeypatch.setattr(vtrain, "evaluate", interrupting_eval)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(build(0), tiny, checkpoint=tmp_path / "b.pt", **kw)
    monkeypatch.setattr(vtrain, "evaluate", real_eval)
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)  # plain tensors and containers only
    assert ckpt["history"]["epochs_run"] == 2

    resumed = build(99)  # another initialisation: everything must come from the checkpoint
    h_resumed = train_classifier(resumed, tiny, checkpoint=tmp_path / "b.pt", resume=True, **kw)
    assert h_resumed.resumed_from == 2 and h_resumed.epochs_run == 4
    assert h_resumed.test_acc == h_straight.test_acc and h_resumed.train_loss == h_straight.train_loss
    sd_a, sd_b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert load_checkpoint(tmp_path / "b.pt")["history"]["epochs_run"] == 4


def test_checkpoint_misuse_is_refused(tiny, tmp_path):
    kw = dict(epochs=1, batch_size=16, progress=False)
    train_classifier(CifarResNet(8, 3, in_channels=1), tiny, checkpoint=tmp_path / "c.pt", **kw)
    with pytest.raises(FileExistsError, match="resume=True"):
        train_classifier(CifarResNet(8, 3, in_channels=1), tiny, checkpoint=tmp_path / "c.pt", **kw)
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        train_classifier(CifarResNet(8, 3, in_channels=1), tiny, checkpoint=tmp_path / "c.pt", resume=True,
                         lr=0.3, **kw)
    with pytest.raises(ValueError, match="cannot resume.*attention"):
        train_classifier(CifarResNet(8, 3, in_channels=1, attention="dia"), tiny, checkpoint=tmp_path / "c.pt",
                         resume=True, **kw)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable attsolver vision checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        train_classifier(CifarResNet(8, 3, in_channels=1), tiny, resume=True, **kw)
    with pytest.raises(ValueError, match="in_channels=1"):
        train_classifier(CifarResNet(8, 3, in_channels=3), tiny, **kw)


class _NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def test_a_non_finite_loss_raises_or_stops(tiny):
    with pytest.raises(FloatingPointError, match="epoch 1, batch 0"):
        train_classifier(_NaNNet(), tiny, epochs=2, batch_size=16, progress=False)
    hist = train_classifier(_NaNNet(), tiny, epochs=3, batch_size=16, progress=False, on_nonfinite="stop")
    assert hist.diverged_epoch == 1 and hist.epochs_run == 1


# --------------------------------------------------------------------------- CLI and benchmark


def _cli(argv):
    from attsolver.cli.vision import add_vision_parser

    parser = argparse.ArgumentParser(prog="attsolver")
    add_vision_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_train_params_and_errors(tmp_path, capsys):
    out = tmp_path / "run.json"
    rc = _cli(["vision", "train", "--dataset", "synthetic", "--model", "resnet8", "--attention", "shared_se",
               "--epochs", "1", "--batch-size", "64", "--no-progress", "--threads", "1", "-o", str(out)])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["epochs_run"] == 1 and summary["model"]["attention"] == "shared_se"
    assert _cli(["vision", "params", "--model", "resnet164", "--attention", "none", "dia"]) == 0
    printed = capsys.readouterr().out
    assert "1,727,284  1.73M" in printed and "1,946,132  1.95M" in printed
    assert _cli(["vision", "train", "--dataset", "cifar100", "--epochs", "1"]) == 2
    assert "needs --data DIR" in capsys.readouterr().err
    assert _cli(["vision", "train", "--dataset", "cifar10", "--data", str(tmp_path / "none"), "--epochs", "1"]) == 2
    assert "data_batch_1" in capsys.readouterr().err
    assert _cli(["vision", "train", "--dataset", "digits", "--attention", "cbam", "--epochs", "1"]) == 2
    assert "choose one of: none, dia" in capsys.readouterr().err


def test_bench_vision_writes_its_tables(tmp_path):
    bench = load_script("benchmarks/vision.py")
    rc = bench.main(["--seeds", "2", "--epochs", "1", "--settings", "standard", "no_bn",
                     "--attention", "none", "dia", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "vision.json").read_text())
    assert report["complete"] and len(report["runs"]) == 8
    assert set(report["rows"]) == {"standard/none", "standard/dia", "no_bn/none", "no_bn/dia"}
    assert all(p["matches"] for p in report["published_params"])
    md = (tmp_path / "vision.md").read_text()
    assert "need a GPU" in md and "attsolver vision train --data" in md and "±" in md
    assert bench.main(["--render", "--out", str(tmp_path)]) == 0  # tables re-made from the stored runs
    assert (tmp_path / "vision.md").read_text() == md
