"""State a Compose or the library keeps between calls (the draw bank's layout, cached constants) never changes what
a later call does: zero-width draws, a first call under ``inference_mode``, host numbers on a device."""

import pytest
import torch

import fastaug as fa
import fastaug.functional as F


def test_zero_width_draws_on_later_calls():
    """A draw of no columns (RandAugment(num_ops=0)) once the bank holds the layout of the first call."""
    pipe = fa.Compose([fa.RandomHorizontalFlip(), fa.RandAugment(num_ops=0)], seed=2)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    first = pipe(x, indices=torch.arange(4))
    for _ in range(2):
        assert torch.equal(pipe(x, indices=torch.arange(4)), first)


def test_gradients_after_a_first_call_under_inference_mode():
    """Cached constants built under inference_mode (a validation step before training) are ordinary tensors."""
    from fastaug import constants

    constants.clear()
    x = torch.rand(2, 3, 12, 12)
    with torch.inference_mode():
        F.affine(x, 10.0, [0.0, 0.0], 1.0, [0.0, 0.0], interpolation="bilinear")
        fa.Compose([fa.RandomAffine(10), fa.Normalize([0.5] * 3, [0.2] * 3)])(x)
    angle = torch.tensor([10.0, -5.0], dtype=torch.float64, requires_grad=True)
    F.affine(x, angle, [0.0, 0.0], 1.0, [0.0, 0.0], interpolation="bilinear").sum().backward()
    assert angle.grad is not None and bool(torch.isfinite(angle.grad).all())


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: F.adjust_brightness(x, float("nan")), "brightness_factor contains NaN"),
    (lambda x: F.posterize(x, 3.5), "must hold integers"),
    (lambda x: F.affine(x, float("inf"), [0.0, 0.0], 1.0, [0.0, 0.0]), "angle contains inf"),
    (lambda x: F.affine(x, 0.0, [0.0, float("nan")], 1.0, [0.0, 0.0]), "translate contains NaN"),
])  # fmt: skip
def test_host_numbers_are_checked_on_a_device(call, message):
    """Python numbers are checked on the host whatever the image's device (fake CUDA here), as on the CPU."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_cuda import fake_cuda

    with fake_cuda():
        x = torch.empty(2, 3, 8, 8, dtype=torch.uint8, device="cuda")
        with pytest.raises((ValueError, TypeError), match=message):
            call(x)
    with pytest.raises((ValueError, TypeError), match=message):
        call(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
