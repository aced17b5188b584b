"""Every ``.pt`` file attsolver writes goes through one integrity layer
(``attsolver._io.save_checkpoint`` / ``load_checkpoint``): corrector checkpoints, ``fit``
checkpoints, vision training checkpoints, the search supernet and pruned models.

For each writer: an intact file round-trips exactly; a bit flipped inside the stored tensor
bytes (which torch's zip reader does not check) is an ``IntegrityError``; a fixed sample of
flips anywhere in the file either loads identical content or raises ``IntegrityError``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from attsolver import IntegrityError
from attsolver._io import load_checkpoint, payload_digest, save_checkpoint
from attsolver.correctors import NeurVec
from attsolver.correctors.base import read_checkpoint
from attsolver.vision import CifarResNet, synthetic_images, train_classifier
from attsolver.vision.search import load_supernet, save_supernet
from attsolver.vision.train import load_checkpoint as load_vision_checkpoint

N_ANYWHERE = 40  # flips at random positions of the whole file
N_PAYLOAD = 12  # flips inside the bytes of the largest stored tensor


def _tensor_region(raw: bytes, tensor: torch.Tensor) -> tuple[int, int]:
    """Where ``tensor``'s bytes lie in the file (torch stores them verbatim, uncompressed)."""
    data = tensor.detach().cpu().contiguous().numpy().tobytes()
    start = raw.find(data)
    assert start >= 0 and raw.find(data, start + 1) < 0, "the tensor's bytes must occur once in the file"
    return start, start + len(data)


def _flips(raw: bytes, positions, work: Path, load, seed: int = 0):
    rng = random.Random(seed)
    q = work / "flipped.pt"
    outcomes = []
    for pos in positions:
        b = bytearray(raw)
        b[pos] ^= 1 << rng.randrange(8)
        q.write_bytes(bytes(b))
        try:
            got = load(q)
        except IntegrityError:
            outcomes.append("error")
        else:
            outcomes.append(payload_digest(got))
    return outcomes


def _check_writer(path: Path, load, biggest: torch.Tensor, work: Path) -> None:
    raw = path.read_bytes()
    digest = payload_digest(load(path))
    lo, hi = _tensor_region(raw, biggest)
    in_payload = _flips(raw, random.Random(1).sample(range(lo, hi), N_PAYLOAD), work, load)
    assert in_payload == ["error"] * N_PAYLOAD  # changed weights are never loaded
    anywhere = _flips(raw, random.Random(2).sample(range(len(raw)), N_ANYWHERE), work, load, seed=1)
    assert all(o in ("error", digest) for o in anywhere)  # identical content or our error
    assert anywhere.count("error") > N_ANYWHERE // 2


def _largest(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return max((v for v in state.values() if isinstance(v, torch.Tensor)), key=lambda t: t.numel())


# --------------------------------------------------------------------------- the shared layer


def test_shared_layer_round_trips_and_rejects_any_payload_flip(tmp_path):
    payload = {"format": "x", "w": torch.arange(64, dtype=torch.float32), "meta": {"a": [1, 2.5, None]}}
    path = save_checkpoint(tmp_path / "p.pt", payload)
    got = load_checkpoint(path)
    assert got.keys() == payload.keys() and torch.equal(got["w"], payload["w"]) and got["meta"] == payload["meta"]
    _check_writer(path, load_checkpoint, payload["w"], tmp_path)


def test_unsealed_file_is_an_integrity_error_and_a_foreign_one_is_named(tmp_path):
    torch.save({"format": "x", "w": torch.zeros(3)}, tmp_path / "old.pt")  # no seal: an old or foreign writer
    with pytest.raises(IntegrityError, match="no valid integrity record"):
        load_checkpoint(tmp_path / "old.pt")

    def check(p, source):
        if p.get("format") != "y":
            raise ValueError(f"{source} is not a y file")

    with pytest.raises(ValueError, match="is not a y file"):  # unsealed: the format is checked first
        load_checkpoint(tmp_path / "old.pt", check=check)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(IntegrityError, match="not a readable attsolver checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


# --------------------------------------------------------------------------- the writers


def test_corrector_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = NeurVec((3,), method="rk4", step_size=0.1, width=16)
    path = model.save(tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(read_checkpoint(path)["state_dict"].values(),
                                                   model.state_dict().values()))
    _check_writer(path, read_checkpoint, _largest(model.state_dict()), tmp_path)


@pytest.fixture(scope="module")
def tiny_images():
    return synthetic_images(24, 12, num_classes=3, channels=1, size=8, seed=0)


def test_vision_training_checkpoint_and_resume(tiny_images, tmp_path):
    torch.manual_seed(0)
    model = CifarResNet(8, 3, in_channels=1)
    kw = dict(epochs=1, batch_size=12, progress=False)
    train_classifier(model, tiny_images, checkpoint=tmp_path / "v.pt", **kw)
    ckpt = load_vision_checkpoint(tmp_path / "v.pt")
    assert all(torch.equal(ckpt["model"][k], v) for k, v in model.state_dict().items())
    _check_writer(tmp_path / "v.pt", load_vision_checkpoint, _largest(model.state_dict()), tmp_path)

    raw = bytearray((tmp_path / "v.pt").read_bytes())  # resume verifies too
    lo, _ = _tensor_region(bytes(raw), _largest(model.state_dict()))
    raw[lo] ^= 0x10
    (tmp_path / "v.pt").write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="v.pt is damaged"):
        train_classifier(CifarResNet(8, 3, in_channels=1), tiny_images, checkpoint=tmp_path / "v.pt",
                         resume=True, **{**kw, "epochs": 2})


def test_search_supernet(tmp_path):
    torch.manual_seed(0)
    model = CifarResNet(8, 4, in_channels=1, base_width=4, attention="dia", reduction=2)
    path = save_supernet(tmp_path / "supernet.pt", model)
    torch.manual_seed(1)
    other = CifarResNet(8, 4, in_channels=1, base_width=4, attention="dia", reduction=2)
    load_supernet(path, other)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="holds a supernet for"):
        load_supernet(path, CifarResNet(8, 4, in_channels=1, base_width=8, attention="dia", reduction=2))
    fresh = CifarResNet(8, 4, in_channels=1, base_width=4, attention="dia", reduction=2)
    _check_writer(path, lambda p: load_supernet(p, fresh), _largest(model.state_dict()), tmp_path)


def test_pruned_model(tmp_path):
    pytest.importorskip("torch_pruning")
    from attsolver.pruning import load_pruned_model, prune_model, save_pruned_model
    from attsolver.vision import make_model

    torch.manual_seed(0)
    model = make_model("resnet20", num_classes=10, in_channels=1, shortcut="B").eval()
    x = torch.randn(4, 1, 8, 8)
    prune_model(model, "l2", pruning_ratio=0.25, example_inputs=x[:1])
    path = save_pruned_model(tmp_path / "pruned.pt", model, x[:1])
    back = load_pruned_model(path)
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in model.parameters())
    assert torch.equal(back(x), model(x))  # the same network, not only the same weights
    _check_writer(path, lambda p: load_checkpoint(p, what="pruned model"), _largest(model.state_dict()), tmp_path)
    raw = bytearray(path.read_bytes())
    lo, _ = _tensor_region(bytes(raw), _largest(model.state_dict()))
    raw[lo + 3] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        load_pruned_model(path)


def test_a_newer_seal_algorithm_lets_the_format_check_speak(tmp_path):
    """A file from a newer attsolver (another digest algorithm) is named as newer, not damaged."""
    from attsolver.correctors import load_corrector

    model = NeurVec((3,), method="rk4", step_size=0.1, width=8)
    body = model.checkpoint_dict()
    body["schema_version"] += 1
    torch.save({**body, "integrity": {"algorithm": "sha256-tree-v9", "sha256": "0" * 64}}, tmp_path / "n.pt")
    with pytest.raises(ValueError, match="newer attsolver"):
        load_corrector(tmp_path / "n.pt")
