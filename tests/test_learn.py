"""fastaug.learn: the differentiable augmentation (gradients per op, draws, weights, export) and the bi-level trainer
(hypergradient vs finite differences, the rotation tasks, the regulariser, flat memory, bad input)."""

from __future__ import annotations

import gc
import math

import pytest
import torch
import torch.nn.functional as nnf
from scipy import stats
from torch.func import functional_call

from fastaug import MarkovPolicy
from fastaug.functional import Canvas
from fastaug.learn import DIFFERENTIABLE, DifferentiableAugment, MetaTrainer, op_names
from fastaug.policies.search_ops import BY_NAME, SEARCH_OPS
from fastaug.transforms import Context
from tests.learn_tasks import bars, learn_rotation, rotated_digits


def _images(b=8, c=3, size=12, seed=0):
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_op_names():
    assert op_names() == DIFFERENTIABLE
    assert "Color" not in op_names(channels=1) and "Hue" not in op_names(channels=1) and "Rotate" in op_names(channels=1)
    assert op_names(["affine", "Rotate"]) == ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
    assert op_names(["adjust_brightness"]) == ("Brightness",)
    for bad, words in ((["Posterize"], "no differentiable magnitude"), (["erase"], "no differentiable magnitude"),
                       (["Nope"], "unknown"), ([], "non-empty"), ("Rotate", "non-empty")):  # fmt: skip
        with pytest.raises(ValueError, match=words):
            op_names(bad)
    with pytest.raises(ValueError, match="needs 3 channels"):
        op_names(["Hue"], channels=1)


@pytest.mark.parametrize("name", [op.name for op in SEARCH_OPS if op.magnitude])
def test_each_differentiable_op_and_only_those_pass_a_gradient_to_the_magnitude(name, monkeypatch):
    import fastaug.learn.augment as A

    monkeypatch.setattr(A, "DIFFERENTIABLE", DIFFERENTIABLE + (() if name in DIFFERENTIABLE else (name,)))
    aug = DifferentiableAugment(ops=[name], identity=0.01, seed=3)
    out, _ = aug(_images(), backend="numba")
    if out.requires_grad:
        (out * torch.linspace(0, 1, out.numel()).view_as(out)).sum().backward()
    grad = aug.magnitudes.grad
    if name in DIFFERENTIABLE:
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs()) > 1e-3, (name, grad)
    else:
        assert grad is None or float(grad.abs()) == 0.0, (name, grad)


def _draw(aug: DifferentiableAugment, b: int, epoch: int = 0):
    ctx = Context(Canvas(b, 3, 16, 16, torch.device("cpu")), aug.seed, epoch, torch.arange(b), 64, False)
    return aug.draw(ctx), aug._drawn


def test_draws_follow_the_probabilities_and_replay():
    aug = DifferentiableAugment(ops=["Rotate", "Brightness", "Contrast"], num_ops=2)
    with torch.no_grad():
        aug.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    b = 20000
    d, pick = _draw(aug, b)
    p = aug.probabilities().detach().double()
    for s in range(2):
        counts = torch.bincount(pick[:, s], minlength=4).double()
        assert stats.chisquare(counts.numpy(), (p / p.sum() * counts.sum()).numpy()).pvalue > 1e-3
    assert torch.equal(d.applied, pick > 0)
    # values: lo + m (hi - lo), signed ops negated about half the time
    rot = pick[:, 0] == 1
    assert torch.allclose(d.magnitude[rot, 0].abs(), torch.full_like(d.magnitude[rot, 0], 15.0))
    assert 0.45 < float((d.magnitude[rot, 0] < 0).double().mean()) < 0.55
    again, pick2 = _draw(aug, b)
    assert torch.equal(pick, pick2) and torch.equal(d.magnitude, again.magnitude)
    other, pick3 = _draw(aug, b, epoch=1)
    assert not torch.equal(pick, pick3)


def test_weights_are_one_with_the_score_as_gradient():
    aug = DifferentiableAugment(ops=["Rotate", "Brightness"], num_ops=2, temperature=0.5)
    x = _images(16)
    out, w = aug(x, indices=torch.arange(16))
    assert torch.allclose(w, torch.ones(16))
    w.sum().backward()
    pick = aug._drawn
    logits = aug.logits.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(logits / 0.5, 0)
    logp[pick].sum().backward()
    assert torch.allclose(aug.logits.grad, logits.grad, atol=1e-6)
    # same batch, same draws, same pixels
    out2, _ = aug(x, indices=torch.arange(16))
    assert torch.equal(out.detach(), out2.detach())


def test_uint8_input_is_scaled_and_bad_arguments_raise():
    aug = DifferentiableAugment(ops=["Brightness"], identity=0.5)
    x = (_images(4) * 255).to(torch.uint8)
    out, _ = aug(x)
    assert out.dtype == torch.float32 and float(out.detach().max()) <= 1.0
    for kwargs, words in (({"num_ops": 0}, "num_ops"), ({"temperature": 0}, "temperature"), ({"magnitude": 1.5}, "magnitude"),
                          ({"identity": 1.0}, "identity"), ({"interpolation": "cubic"}, "interpolation")):  # fmt: skip
        with pytest.raises((ValueError, TypeError), match=words):
            DifferentiableAugment(ops=["Rotate"], **kwargs)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        DifferentiableAugment(ops=["Rotate"])(torch.rand(2, 4, 8, 8))


# -- the bi-level step ----------------------------------------------------------------------------------
def _tiny_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x, xv = _images(6, size=8, seed=1), _images(5, size=8, seed=2)
    y, yv = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 2, 1, 0, 1])
    aug = DifferentiableAugment(ops=["Brightness", "Contrast", "Rotate"], identity=0.25, magnitude=0.6, seed=5)
    return model, aug, x, y, xv, yv


def test_the_hypergradient_matches_finite_differences():
    model, aug, x, y, xv, yv = _tiny_problem()
    lr, idx = 0.5, torch.arange(6)
    trainer = MetaTrainer(model, aug, torch.optim.SGD(model.parameters(), lr=lr), torch.optim.SGD(aug.parameters(), lr=0.1),
                          magnitude_reg=0.0)  # fmt: skip
    trainer.hypergradient(x, y, xv, yv, indices=idx)
    g_logits, g_mag = aug.logits.grad.clone(), aug.magnitudes.grad.clone()
    base_pick = aug._drawn.clone()
    p0 = aug.probabilities().detach()[base_pick]  # the weights' detached denominators, at the base point
    params = dict(model.named_parameters())
    base_logits, base_mag = aug.logits.detach().clone(), aug.magnitudes.detach().clone()

    def outer(logits, mags) -> float:  # L_val(theta - lr grad L_train), written out independently of MetaTrainer
        with torch.no_grad():
            aug.logits.copy_(logits)
            aug.magnitudes.copy_(mags)
            xa, _ = aug(x, indices=idx, backend="torch")
            assert torch.equal(aug._drawn, base_pick)  # the same draws on both sides
            w = (aug.probabilities()[base_pick] / p0).prod(1)
        with torch.enable_grad():
            theta = {n: p.detach().requires_grad_(True) for n, p in params.items()}
            loss = torch.mean(w * nnf.cross_entropy(functional_call(model, theta, (xa,)), y, reduction="none"))
            grads = torch.autograd.grad(loss, list(theta.values()))
        fast = {n: p - lr * g for (n, p), g in zip(theta.items(), grads, strict=True)}
        return float(nnf.cross_entropy(functional_call(model, fast, (xv,)), yv))

    eps = 1e-3
    for k in range(4):
        e = torch.zeros(4)
        e[k] = eps
        fd = (outer(base_logits + e, base_mag) - outer(base_logits - e, base_mag)) / (2 * eps)
        assert fd == pytest.approx(float(g_logits[k]), rel=2e-2, abs=2e-4), ("logit", k)
    for k in range(3):
        e = torch.zeros(3)
        e[k] = eps
        fd = (outer(base_logits, base_mag + e) - outer(base_logits, base_mag - e)) / (2 * eps)
        assert fd == pytest.approx(float(g_mag[k]), rel=2e-2, abs=2e-4), ("magnitude", k)
    assert float(g_mag.abs().max()) > 1e-3 and float(g_logits.abs().max()) > 1e-3


def test_a_rotated_validation_set_grows_the_rotation():
    aug, trace = learn_rotation(rotated_digits(), steps=120, seed=0, batch_norm=True)
    assert trace[-1] > 0.8, trace[::10]
    assert float(aug.probabilities()[1]) > 0.55


def test_an_unrotated_validation_set_shrinks_the_rotation():
    data = (*bars(1000, 16, 0), *bars(400, 16, 1))
    for seed in (0, 1):
        aug, trace = learn_rotation(data, steps=300, seed=seed, classes=8)
        expected = float(aug.probabilities()[1]) * trace[-1]  # the mean rotation, as a fraction of 30 degrees
        assert trace[-1] < 0.5 and expected < 0.2, (seed, trace[::25], float(aug.probabilities()[1]))


def test_the_regulariser_keeps_the_magnitude_from_collapsing():
    """Without it the one-step hypergradient drives the rotation to exactly 0 on the bars task (then rotation is a
    no-op and its probability stops learning); with the default it stays well above 0 and the probability falls
    instead."""
    data = (*bars(1000, 16, 0), *bars(400, 16, 1))
    _, free = learn_rotation(data, steps=300, seed=0, classes=8, magnitude_reg=0.0)
    _, held = learn_rotation(data, steps=300, seed=0, classes=8)
    assert min(free) <= 0.01, min(free)
    assert min(held) >= 0.1, min(held)


def test_memory_stays_flat_over_200_meta_steps():
    model, aug, x, y, xv, yv = _tiny_problem()
    trainer = MetaTrainer(model, aug, torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.Adam(aug.parameters(), lr=0.01),
                          unroll=2, history_every=1000)  # fmt: skip

    def live() -> tuple[int, int]:
        gc.collect()
        tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
        return len(tensors), sum(t.numel() * t.element_size() for t in tensors if t.layout == torch.strided)

    for s in range(20):
        trainer.step(x, y, xv, yv, indices=torch.arange(6), epoch=s)
    before = live()
    for s in range(20, 220):
        trainer.step(x, y, xv, yv, indices=torch.arange(6), epoch=s)
    after = live()
    assert trainer.meta_steps == 220
    assert after[0] <= before[0] and after[1] <= before[1] + 4096, (before, after)


def test_meta_every_and_plain_steps():
    model, aug, x, y, xv, yv = _tiny_problem()
    trainer = MetaTrainer(model, aug, torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(aug.parameters(), lr=0.1),
                          meta_every=3)  # fmt: skip
    metas = [trainer.step(x, y, xv, yv, indices=torch.arange(6), epoch=s)["meta"] for s in range(7)]
    assert metas == [True, False, False, True, False, False, True] and len(trainer.history) == 3
    plain = MetaTrainer(model, aug, torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(aug.parameters(), lr=0.1),
                        meta_every=0)  # fmt: skip
    before = [p.detach().clone() for p in aug.parameters()]
    w0 = model[1].weight.detach().clone()
    out = plain.step(x, y)  # no validation batch needed
    assert out["meta"] is False and not torch.equal(model[1].weight, w0)
    assert all(torch.equal(a, b) for a, b in zip(before, aug.parameters(), strict=True))


def test_bad_trainer_arguments():
    model, aug, x, y, xv, yv = _tiny_problem()
    opt, aopt = torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(aug.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="augment"):
        MetaTrainer(model, object(), opt, aopt)
    with pytest.raises(TypeError, match="aug_optimizer"):
        MetaTrainer(model, aug, opt, None)
    for kwargs, words in (({"unroll": 0}, "unroll"), ({"meta_every": -1}, "meta_every"), ({"inner_lr": 0.0}, "inner_lr"),
                          ({"magnitude_reg": math.nan}, "magnitude_reg"), ({"magnitude_target": 2.0}, "magnitude_target")):  # fmt: skip
        with pytest.raises(ValueError, match=words):
            MetaTrainer(model, aug, opt, aopt, **kwargs)
    trainer = MetaTrainer(model, aug, opt, aopt)
    with pytest.raises(ValueError, match="val_x and val_y"):
        trainer.step(x, y)
    with pytest.raises(ValueError, match="training targets"):
        trainer.step(x, y[:3], xv, yv)


def test_export_is_a_fixed_policy_with_the_learned_distribution(tmp_path):
    aug = DifferentiableAugment(ops=["Rotate", "Brightness", "GaussianBlur"], num_ops=2, seed=4)
    with torch.no_grad():
        aug.logits.copy_(torch.tensor([0.2, 1.0, -0.5, 0.1]))
        aug.magnitudes.copy_(torch.tensor([0.8, 0.3, 0.6]))
    policy = aug.export()
    assert isinstance(policy, MarkovPolicy) and policy.length == (2, 2)
    p = aug.probabilities().detach().double()
    names = ("Identity", "Rotate", "Brightness", "GaussianBlur")
    for k, name in enumerate(names):
        i = policy.states.index(name)
        assert float(policy.initial[i]) == pytest.approx(float(p[k]))
        assert torch.allclose(policy.transition[:, i], torch.full((len(policy.states),), float(p[k]), dtype=torch.float64))
    assert policy.magnitudes["Rotate"]["mean"] == pytest.approx(0.8) and policy.magnitudes["Rotate"]["std"] == 0.0
    path = policy.to_json(tmp_path / "learned.json")
    loaded = MarkovPolicy.from_json(path)
    x = _images(6)
    out, record = loaded(x, indices=torch.arange(6), return_record=True)
    assert torch.equal(out, policy(x, indices=torch.arange(6)))
    assert torch.equal(record.replay(x), out)
    # the exported chain draws the learned values: |Rotate| = 0.8 * 30 degrees
    ctx = Context(Canvas(4000, 3, 16, 16, torch.device("cpu")), 0, 0, torch.arange(4000), 64, False)
    d = loaded.draw(ctx)
    rot = d.op == policy.states.index("Rotate")
    assert torch.allclose(d.magnitude[rot].abs(), torch.full_like(d.magnitude[rot], 24.0))
    share = float(rot.double().mean())
    assert share == pytest.approx(float(p[1]), abs=0.02)
    assert {n for n in policy.reachable} == set(names)
    assert all(BY_NAME[n].magnitude for n in names[1:])


def test_history_plot_and_the_example(tmp_path):
    pytest.importorskip("matplotlib")
    import importlib.util
    from pathlib import Path

    from fastaug.learn.plot import plot_history

    model, aug, x, y, xv, yv = _tiny_problem()
    trainer = MetaTrainer(model, aug, torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(aug.parameters(), lr=0.1))
    for s in range(3):
        trainer.step(x, y, xv, yv, indices=torch.arange(6), epoch=s)
    assert [h["step"] for h in trainer.history] == [1, 2, 3]
    png = plot_history(trainer.history, tmp_path / "h.png")
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="history"):
        plot_history([], tmp_path / "x.png")
    spec = importlib.util.spec_from_file_location("learn_policy", Path(__file__).parents[1] / "examples" / "learn_policy.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--epochs", "1", "--train-set-size", "64", "--out", str(tmp_path / "out")])
    policy = MarkovPolicy.from_json(tmp_path / "out" / "policy.json")
    assert policy.length == (2, 2) and (tmp_path / "out" / "history.png").exists()
