"""Compose calls made from a torch.compile region through the public call (Compose.forward routes them): an image
batch, with or without masks, is one custom op (no graph break); records, boxes and tv_tensors run eagerly with breaks
only at fastaug's boundary. Outputs equal the eager call."""

from __future__ import annotations

import torch

import fastaug


def _aug():
    return fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.ColorJitter(0.4, 0.4), fastaug.RandomRotation(20)], seed=3,
                           backend="torch")  # fmt: skip


def test_image_and_image_with_masks_compile_without_breaks():
    aug = _aug()
    x, m = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4, 16, 16))

    def step(x, m):
        out = aug(x, mask=m, epoch=2)
        return aug(x, epoch=2).sum() + out["image"].sum(), out["mask"]

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(x, m)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    got, mask = torch.compile(step, backend="aot_eager", fullgraph=True)(x, m)
    want, want_mask = step(x, m)
    torch.testing.assert_close(got, want)
    assert torch.equal(mask, want_mask)


def test_records_and_boxes_run_eagerly_breaking_only_at_the_boundary():
    aug = _aug()
    x = torch.rand(4, 3, 16, 16)
    boxes, labels = torch.tensor([[[1.0, 2.0, 9.0, 10.0]]] * 4), torch.tensor([[1]] * 4)

    def step(x):
        y, record = aug(x, return_record=True)
        out = aug(image=x, bboxes=boxes, labels=labels)
        return y.sum() + out["image"].sum() + sum(b.sum() for b in out["bboxes"]), record

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(x)
    assert all("disable" in str(b.reason) for b in explained.break_reasons), explained.break_reasons  # none inside fastaug
    got, record = torch.compile(step, backend="aot_eager")(x)
    want, _ = step(x)
    torch.testing.assert_close(got, want)
    assert torch.equal(record.replay(x), aug(x))


def test_learnable_magnitudes_get_gradients_in_a_compiled_step():
    """A Compose with parameters that want gradients runs eagerly in the compiled region: the magnitudes' gradient is
    the eager one (the custom op would give the image's only and leave them None)."""
    from fastaug.learn import DifferentiableAugment

    x = torch.rand(4, 3, 16, 16)
    grads = []
    for compiled in (False, True):
        torch.manual_seed(0)
        augment = DifferentiableAugment(num_ops=2, identity=0.2, magnitude=0.4)
        aug = fastaug.Compose([augment], seed=1, backend="torch")

        def step(x, aug=aug):
            return aug(x, epoch=1).square().mean()

        fn = torch.compile(step, backend="aot_eager") if compiled else step
        torch._dynamo.reset()
        fn(x).backward()
        grads.append(augment.magnitudes.grad)
    assert grads[1] is not None and torch.allclose(grads[0], grads[1])
    assert bool((grads[0] != 0).any())


def test_a_policy_called_as_a_module_compiles_once():
    """A policy called directly keeps its Compose (per seed and backend): a compiled step calling it compiles once,
    not once per call (a fresh Compose per call was a fresh custom-op key, hence a recompile every step)."""
    from torch._dynamo.testing import CompileCounter

    policy = fastaug.RandAugment(2, 9)

    def step(x):
        return policy(x, epoch=1, backend="torch").float().mean()

    counter = CompileCounter()
    torch._dynamo.reset()
    compiled = torch.compile(step, backend=counter)
    frames = []
    for seed in range(4):
        x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(compiled(x), step(x))
        frames.append(counter.frame_count)
    assert frames[1:] == [frames[0]] * 3, frames  # compiled at the first call only
