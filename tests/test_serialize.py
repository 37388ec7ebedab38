"""Pipelines saved as JSON (fastaug.serialize): every transform and policy round-trips to the same draws."""

from __future__ import annotations

import json
import re

import pytest
import torch

import fastaug
from fastaug import serialize as Z

SPECIAL = {
    "RandomResizedCrop": dict(size=16, scale=(0.5, 0.9)), "RandomAffine": dict(degrees=20, translate=(0.1, 0.2), shear=5),
    "RandomRotation": dict(degrees=15), "RandomPosterize": dict(bits=3, p=0.7), "RandomSolarize": dict(threshold=100),
    "RandomAdjustSharpness": dict(sharpness_factor=2.0), "GaussianBlur": dict(kernel_size=5), "ColorJitter": dict(brightness=0.3, hue=0.1),
    "Normalize": dict(mean=[0.5] * 3, std=[0.2] * 3), "ToDtype": dict(dtype=torch.float16, scale=True),
    "RandomFog": dict(fog_coef_range=(0.2, 0.4)), "RandAugment": dict(num_ops=3, magnitude=5, seed=4),
    "AutoAugment": dict(policy="svhn"), "ElasticTransform": dict(alpha=20.0, sigma=2.0),
    # the converter's own samplers (fastaug.convert; each also round-trips from a converted pipeline in test_convert.py)
    "WithProbability": dict(transform=fastaug.RandomRotation(20), p=0.4),
    "AlbumentationsPosterize": dict(num_bits=(2, 6), p=0.6), "AlbumentationsSolarize": dict(threshold_range=(0.3, 0.8), p=0.6),
    "AlbumentationsAffine": dict(scale={"x": (0.8, 1.2), "y": (0.9, 1.1)}, translate_percent=None, translate_px={"x": (-2, 2), "y": (0, 3)},
                                 rotate=(-20, 20), shear={"x": (-5, 5), "y": (0, 0)}, fill=(10, 20, 30), p=0.7),
}  # fmt: skip


def make(name: str, cls):
    if name == "MarkovPolicy":
        return cls.from_autoaugment(length=(1, 3))
    if name == "SubPolicies":
        return cls([[("Rotate", 0.5, 0.3), ("Color", 0.2, 0.7)], [("Equalize", 0.8, None)]], seed=2)
    return cls(**SPECIAL.get(name, {}))


@pytest.mark.parametrize("name", sorted(Z._classes()))
def test_every_transform_and_policy_round_trips(name, tmp_path):
    obj = make(name, Z._classes()[name])
    pipeline = fastaug.Compose([fastaug.RandomHorizontalFlip(0.3), obj], seed=7)
    path = Z.to_json(pipeline, tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "fastaug.pipeline" and doc["version"] == 1
    back = Z.load(path)
    assert Z.to_dict(back) == doc["pipeline"]
    x = torch.randint(0, 256, (3, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    if name in ("Normalize", "ToDtype"):
        x = x.float() / 255
    idx = torch.tensor([3, 9, 11])
    assert _draws(pipeline, x, idx) == _draws(back, x, idx)
    assert torch.equal(pipeline(x, indices=idx, epoch=2), back(x, indices=idx, epoch=2))  # and the same outputs, bit for bit


def _draws(pipeline, x, idx) -> str:
    """The drawn calls as text, without object addresses (a call may hold a token object, e.g. ColorJitter's order)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(pipeline.draw(x, idx, 0)))


def test_policy_files_and_bad_documents(tmp_path):
    markov = fastaug.MarkovPolicy.from_autoaugment()
    markov.to_json(tmp_path / "m.json")
    assert Z.to_dict(Z.load(tmp_path / "m.json")) == Z.to_dict(markov)
    found = fastaug.SubPolicies([[("Rotate", 0.5, 0.3)]])
    found.to_json(tmp_path / "s.json")
    assert Z.to_dict(Z.load(tmp_path / "s.json")) == Z.to_dict(found)
    (tmp_path / "bad.json").write_text('{"format": "fastaug.pipeline", "version": 99, "pipeline": {}}')
    with pytest.raises(ValueError, match="version 99"):
        Z.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a fastaug"):
        Z.load(tmp_path / "other.json")
    with pytest.raises(TypeError, match="not a fastaug"):
        Z.to_dict(torch.nn.Identity())


def test_compose_to_json_and_fastaug_load(tmp_path):
    import fastaug

    pipeline = fastaug.Compose([fastaug.RandomHorizontalFlip(), fastaug.RandAugment(2, 9)], seed=3)
    path = pipeline.to_json(tmp_path / "p.json")
    loaded = fastaug.load(path)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(loaded(x, indices=torch.arange(4)), pipeline(x, indices=torch.arange(4)))


def test_the_triton_backend_without_triton_says_how_to_install_it(monkeypatch):
    import sys

    from fastaug import engine

    for name in [m for m in sys.modules if m == "triton" or m.startswith(("triton.", "fastaug.kernels.triton"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton -> ImportError(name="triton")
    with pytest.raises(ImportError, match=r"pip install 'fastaug\[triton\]'"):
        engine.load_backend("triton")
