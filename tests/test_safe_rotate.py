"""SafeRotate / safe_rotate: albumentations' matrix (half-pixel shift, per-axis scale), drawn per sample."""

import math

import numpy as np
import pytest
import torch

import fastaug
import fastaug.functional as F
from fastaug.ops import geometry as G

A = pytest.importorskip("albumentations")
cv2 = pytest.importorskip("cv2")

ANGLES = [0.0, 17.3, -63.0, 90.0, -90.0, 135.0, 180.0, 44.9]
SIZES = [(23, 37), (40, 17), (16, 16)]


def oracle_forward(angle: float, h: int, w: int) -> np.ndarray:
    """The documented forward map (src -> dst pixel indices), float64, written from the formula."""
    t = math.radians(angle)
    cos, sin = math.cos(t), math.sin(t)
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    new_w, new_h = int(h * abs(sin) + w * abs(cos)), int(h * abs(cos) + w * abs(sin))
    rot = np.array([[cos, sin, (1 - cos) * cx - sin * cy + new_w / 2 - cx],
                    [-sin, cos, sin * cx + (1 - cos) * cy + new_h / 2 - cy], [0, 0, 1]])  # fmt: skip
    return np.diag([w / new_w, h / new_h, 1.0]) @ rot


def albumentations_matrix(angle: float, h: int, w: int) -> np.ndarray:
    t = A.SafeRotate(limit=(angle, angle), p=1.0)
    img = np.zeros((h, w, 3), np.uint8)
    return t.get_params_dependent_on_data({"shape": img.shape}, {"image": img})["matrix"]


def smooth(dtype, c, h, w, b=1, phase=0.0):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    chans = [0.5 + 0.4 * torch.sin(xx / 6.0 + k + phase) * torch.cos(yy / 7.0 - k) for k in range(c)]
    x = torch.stack(chans).expand(b, c, h, w)
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def albumentations_rotate(x: torch.Tensor, angle: float, interpolation: str, fill) -> torch.Tensor:
    """albumentations' own SafeRotate with the angle fixed (limit=(a, a)) on one CHW image."""
    img = x.permute(1, 2, 0).numpy()
    img = img[..., 0] if x.shape[0] == 1 else img
    flag = cv2.INTER_LINEAR if interpolation == "bilinear" else cv2.INTER_NEAREST
    out = A.SafeRotate(limit=(angle, angle), interpolation=flag, fill=fill, p=1.0)(image=np.ascontiguousarray(img))["image"]
    out = torch.from_numpy(np.ascontiguousarray(out))
    return out.unsqueeze(0) if x.shape[0] == 1 else out.permute(2, 0, 1)


@pytest.mark.parametrize("h, w", SIZES)
def test_matrix_is_albumentations_inverse_and_the_oracle(h, w):
    for angle in ANGLES:
        ours = G.safe_rotate_matrix(torch.tensor([angle], dtype=torch.float64), (h, w))[0].numpy()
        assert np.abs(ours @ albumentations_matrix(angle, h, w) - np.eye(3)).max() < 1e-12
        assert np.abs(ours @ oracle_forward(angle, h, w) - np.eye(3)).max() < 1e-12
    # the documented quirks: angle 0 still shifts by +0.5 px; non-square images scale x and y differently
    assert np.allclose(G.safe_rotate_matrix(torch.zeros(1, dtype=torch.float64), (h, w))[0].numpy(),
                       [[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # fmt: skip
    if h != w:
        fwd = oracle_forward(30.0, h, w)
        assert not math.isclose(np.hypot(*fwd[:, 0][:2]), np.hypot(*fwd[:, 1][:2]))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("h, w", SIZES[:2])
def test_equals_albumentations_safe_rotate(dtype, c, interpolation, h, w):
    """uint8 within 1 LSB, float32 within 1e-4, everywhere with fill 0 (cv2's BORDER_CONSTANT 0 exactly)."""
    x = smooth(dtype, c, h, w, b=len(ANGLES))
    angles = torch.tensor(ANGLES, dtype=torch.float64)
    ours = F.safe_rotate(x, angles, interpolation, 0, backend="torch")
    for i, angle in enumerate(ANGLES):
        ref = albumentations_rotate(x[i], angle, interpolation, 0)
        diff = (ours[i].double() - ref.double()).abs().max().item()
        assert diff <= (1 if dtype == torch.uint8 else 1e-4), (angle, diff)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_nonzero_fill_equals_albumentations_off_the_rim(dtype):
    """A nonzero fill: equal where all bilinear taps are inside or all outside the image (the rim differs:
    torchvision's (S - f) m + f against cv2's S + (1 - m) f); nearest: equal everywhere."""
    h, w, c = 23, 37, 3
    fill = [0.2, 0.5, 0.9] if dtype != torch.uint8 else [50, 128, 230]
    x = smooth(dtype, c, h, w, b=len(ANGLES))
    angles = torch.tensor(ANGLES, dtype=torch.float64)
    ones = torch.ones(len(ANGLES), 1, h, w)
    m = F.safe_rotate(ones, angles, "bilinear", None, backend="torch")
    off_rim = ((m == 0) | (m == 1))[:, 0]
    tol = 1 if dtype == torch.uint8 else 1e-4
    for mode in ("bilinear", "nearest"):
        ours = F.safe_rotate(x, angles, mode, fill, backend="torch")
        for i, angle in enumerate(ANGLES):
            ref = albumentations_rotate(x[i], angle, mode, fill)
            d = (ours[i].double() - ref.double()).abs()
            assert (d[:, off_rim[i]] if mode == "bilinear" else d).max() <= tol, (mode, angle)


def test_transform_draws_per_sample_within_limit_and_replays():
    b = 2000
    x = torch.empty(b, 3, 20, 30, dtype=torch.uint8)
    (call,) = fastaug.Compose([fastaug.SafeRotate(limit=(-40, 70), p=0.3)], seed=4).draw(x, torch.arange(b), 0)
    a = call.kwargs["angle"]
    assert a.min() >= -40 and a.max() < 70 and a.min() < -38 and a.max() > 68
    assert abs(float((a < 15).double().mean()) - 0.5) < 0.05  # uniform
    assert abs(float(call.applied.double().mean()) - 0.3) < 0.03
    assert torch.allclose(call.matrix, G.safe_rotate_matrix(a, (20, 30)))
    (sym,) = fastaug.Compose([fastaug.SafeRotate(limit=25, p=1.0)], seed=4).draw(x, torch.arange(b), 0)
    assert sym.kwargs["angle"].min() >= -25 and sym.kwargs["angle"].max() < 25


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_record_replay_and_listing(dtype):
    x = smooth(dtype, 3, 21, 33, b=6, phase=0.3)
    aug = fastaug.Compose([fastaug.SafeRotate(p=0.7), fastaug.ColorJitter(0.2, 0.2)], seed=9, backend="torch")
    y, record = aug(x, return_record=True)
    assert torch.equal(record.replay(x, backend="torch"), y)
    n_rotated = 0
    for i in range(6):
        img = x[i]
        calls = record.calls(i)
        n_rotated += calls[0][0] == "safe_rotate"
        for name, kwargs in calls:
            img = getattr(F, name)(img, **kwargs, backend="torch")
        assert (img.double() - y[i].double()).abs().max() <= (1 if dtype == torch.uint8 else 1e-5)
    assert 0 < n_rotated < 6


def test_mask_boxes_and_keypoints_follow_the_image():
    b, h, w = 6, 31, 45
    x = torch.zeros(b, 3, h, w, dtype=torch.uint8)
    x[:, :, 7:19, 9:21] = 255
    mask = (x[:, 0] > 0).to(torch.int64) * 3
    box = torch.tensor([[9.0, 7.0, 21.0, 19.0]])
    kps = torch.tensor([[9.0, 7.0], [21.0, 19.0], [15.5, 13.5], [0.0, 0.0], [45.0, 31.0]])
    aug = fastaug.Compose([fastaug.SafeRotate(limit=(-90, 90), interpolation="nearest", p=1.0)], seed=2, backend="torch")
    out, record = aug(x, mask=mask, bboxes=[box] * b, labels=[torch.tensor([5])] * b, keypoints=[kps] * b, return_record=True)
    for i in range(b):
        painted = out["image"][i, 0] > 127
        assert painted.any() and torch.equal(painted, out["mask"][i] == 3)  # the same nearest sampling
        ys, xs = torch.nonzero(painted, as_tuple=True)
        (bx,) = out["bboxes"][i]
        assert out["labels"][i].tolist() == [5]
        assert xs.min() >= bx[0] - 1 and xs.max() + 1 <= bx[2] + 1 and ys.min() >= bx[1] - 1 and ys.max() + 1 <= bx[3] + 1
        # keypoints, continuous coordinates (pixel i spans [i, i+1)): albumentations' matrix on the
        # pixel-index point p - 0.5, plus 0.5
        angle = record.calls(i)[0][1]["angle"]
        m = oracle_forward(angle, h, w)
        p = kps.double().numpy() - 0.5
        want = (p @ m[:2, :2].T + m[:2, 2]) + 0.5
        assert np.abs(out["keypoints"][i].double().numpy() - want).max() < 1e-4
        inside = (want[:, 0] >= 0) & (want[:, 0] < w) & (want[:, 1] >= 0) & (want[:, 1] < h)
        assert out["keypoints_visible"][i].tolist() == inside.tolist()
        assert inside[:4].all()  # the whole image stays in the frame (up to the +0.5 px shift at the far corner)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("c", [1, 3])
def test_backends_torch_and_numba_equal(dtype, c):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (5, c, 19, 26), generator=g, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else (x.float() / 255).to(dtype)
    angles = torch.tensor([-80.0, -12.5, 0.0, 33.3, 90.0], dtype=torch.float64)
    for mode in ("bilinear", "nearest"):
        for fill in (None, 0, [0.3] * c if dtype != torch.uint8 else [77] * c):
            a = F.safe_rotate(x, angles, mode, fill, backend="torch")
            b = F.safe_rotate(x, angles, mode, fill, backend="numba")
            assert (a.double() - b.double()).abs().max() <= (1 if dtype == torch.uint8 else 1e-5), (mode, fill)


def test_unbatched_image_and_angle_gradient():
    x = smooth(torch.float32, 3, 15, 22)[0]
    assert F.safe_rotate(x, 30.0, backend="torch").shape == x.shape
    angle = torch.tensor([25.0], dtype=torch.float64, requires_grad=True)
    F.safe_rotate(x[None], angle, backend="torch").sum().backward()
    assert angle.grad is not None and torch.isfinite(angle.grad).all() and angle.grad.abs().sum() > 0


def test_draws_never_read_values():
    from fastaug.compiler import compile_plan

    aug = fastaug.Compose([fastaug.SafeRotate(p=0.5), fastaug.RandomHorizontalFlip()])
    x = torch.empty(4, 3, 20, 24, dtype=torch.uint8, device="meta")
    plan = compile_plan(aug.draw(x, torch.arange(4, device="meta"), 0), tuple(x.shape), x.dtype, x.device)
    assert plan.out_size == (20, 24) and plan.stages[0].geometry.matrix.device.type == "meta"


def test_bad_arguments_raise_naming_them():
    for kwargs, exc, name in [
        ({"limit": (30, 10)}, ValueError, "limit"),
        ({"limit": "ab"}, TypeError, "limit"),
        ({"limit": (0, float("inf"))}, ValueError, "limit"),
        ({"interpolation": "bicubic"}, ValueError, "interpolation"),
        ({"fill": float("nan")}, ValueError, "fill"),
        ({"fill": "x"}, TypeError, "fill"),
        ({"p": -0.1}, ValueError, "p"),
    ]:
        with pytest.raises(exc, match=name):
            fastaug.SafeRotate(**kwargs)
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="fill"):
        F.safe_rotate(x, 10.0, fill=[0.1, 0.2])
    with pytest.raises(ValueError, match="angle"):
        F.safe_rotate(x, float("nan"))
    with pytest.raises(ValueError, match="angle"):
        F.safe_rotate(x, torch.zeros(3))
    with pytest.raises(TypeError, match="angle"):
        F.safe_rotate(x, "10")
    with pytest.raises(ValueError, match="interpolation"):
        F.safe_rotate(x, 10.0, "bicubic")
