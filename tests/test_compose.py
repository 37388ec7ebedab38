"""Compose: one Plan per batch, determinism and replay, targets aligned with the image."""

import pytest
import torch

import fastaug
import fastaug.functional as F
from fastaug import engine

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def big_pipeline(seed=0, backend="torch"):
    return fastaug.Compose(
        [
            fastaug.RandomResizedCrop(20),
            fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1),
            fastaug.RandomHorizontalFlip(),
            fastaug.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation="bilinear"),
            fastaug.RandomPosterize(4, p=0.5),
            fastaug.RandomSolarize(128, p=0.5),
            fastaug.RandomGrayscale(0.2),
            fastaug.RandomErasing(p=0.5),
            fastaug.Normalize(MEAN, STD),
        ],
        seed=seed,
        backend=backend,
    )


def images(b=6, h=23, w=27, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)


class CountingBackend:
    def __init__(self):
        from fastaug.kernels import reference

        self.ref = reference
        self.applies = 0
        self.reduces = 0

    def apply(self, *args):
        self.applies += 1
        return self.ref.apply(*args)

    def reduce(self, *args):
        self.reduces += 1
        return self.ref.reduce(*args)


def test_nine_transforms_run_as_one_pass(monkeypatch):
    counter = CountingBackend()
    monkeypatch.setattr(engine, "load_backend", lambda name: counter)
    x = images()
    y = big_pipeline()(x)
    assert y.shape == (6, 3, 20, 20) and y.dtype == torch.float32
    assert counter.applies == 1  # one fused pass writes the output
    # ColorJitter draws a per-sample order, so contrast may sit in any of its 4 slots; one reduction
    # round gathers, for every sample, the statistics just before its own (first) statistics op
    assert counter.reduces == 1


def test_sharpness_opens_a_second_stage(monkeypatch):
    counter = CountingBackend()
    monkeypatch.setattr(engine, "load_backend", lambda name: counter)
    aug = fastaug.Compose([fastaug.RandomAffine(10), fastaug.RandomAdjustSharpness(2.0, p=1.0), fastaug.RandomInvert()])
    aug(images())
    assert counter.applies == 2 and counter.reduces == 0


def test_same_seed_indices_epoch_same_batch_and_split():
    x = images()
    aug = big_pipeline()
    y1 = aug(x, indices=torch.arange(10, 16))
    y2 = big_pipeline()(x, indices=torch.arange(10, 16))
    assert torch.equal(y1, y2)
    first = aug(x[:2], indices=torch.arange(10, 12))
    rest = aug(x[2:], indices=torch.arange(12, 16))
    assert torch.equal(torch.cat([first, rest]), y1)
    assert not torch.equal(aug(x, indices=torch.arange(10, 16), epoch=1), y1)
    assert not torch.equal(big_pipeline(seed=1)(x, indices=torch.arange(10, 16)), y1)


def test_record_replays_exactly_and_lists_calls():
    x = images()
    aug = big_pipeline()
    y, record = aug(x, return_record=True)
    assert torch.equal(record.replay(x, backend="torch"), y)
    for i in range(x.shape[0]):
        calls = record.calls(i)
        names = [n for n, _ in calls]
        assert names[0] == "resized_crop" and names[-1] == "normalize"
        for _, kwargs in calls:
            for v in kwargs.values():
                assert not isinstance(v, torch.Tensor)


def test_record_calls_replay_with_functional_ops():
    """Replaying sample i's listed calls one by one with fastaug.functional gives the same sample
    when the sample has a single geometric op (no composition)."""
    x = images(b=4)
    aug = fastaug.Compose(
        [
            fastaug.RandomRotation(25),
            fastaug.ColorJitter(0.3, 0.3, 0.3, 0.05),
            fastaug.RandomPosterize(5, p=0.5),
            fastaug.RandomInvert(),
        ],
        seed=3,
        backend="torch",
    )
    y, record = aug(x, return_record=True)
    for i in range(4):
        img = x[i]
        for name, kwargs in record.calls(i):
            img = getattr(F, name)(img, **kwargs, backend="torch")
        assert (img.int() - y[i].int()).abs().max() <= 1


def test_mask_and_boxes_follow_the_image():
    b, h, w = 5, 31, 37
    x = torch.zeros(b, 3, h, w, dtype=torch.uint8)
    box = torch.tensor([[9.0, 7.0, 21.0, 19.0]])
    x[:, :, 7:19, 9:21] = 255
    mask = (x[:, 0] > 0).to(torch.int64) * 2
    aug = fastaug.Compose(
        [
            fastaug.RandomResizedCrop((29, 33), scale=(0.6, 1.0), interpolation="nearest"),
            fastaug.RandomHorizontalFlip(),
            fastaug.RandomAffine(20, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        ],
        seed=5,
        backend="torch",
    )
    out = aug(x, mask=mask, bboxes=[box] * b, labels=[torch.tensor([7])] * b)
    assert out["image"].shape == (b, 3, 29, 33)
    for i in range(b):
        painted = out["image"][i, 0] > 127
        assert torch.equal(painted, out["mask"][i] == 2)  # same nearest sampling: the mask is exactly the white region
        ys, xs = torch.nonzero(out["mask"][i] == 2, as_tuple=True)
        if len(ys) == 0:
            assert out["bboxes"][i].shape[0] == 0
            continue
        (bx,) = out["bboxes"][i]
        assert out["labels"][i].tolist() == [7]
        # the transformed box encloses every painted pixel (up to a pixel of resampling)
        assert xs.min() >= bx[0] - 1 and xs.max() + 1 <= bx[2] + 1
        assert ys.min() >= bx[1] - 1 and ys.max() + 1 <= bx[3] + 1


def test_boxes_leaving_the_frame_are_dropped_with_labels():
    x = images(b=2, h=20, w=20)
    aug = fastaug.Compose([fastaug.RandomHorizontalFlip(p=1.0)], backend="torch")
    out = aug(x, bboxes=[torch.tensor([[2.0, 2.0, 6.0, 5.0], [5.0, 5.0, 5.0, 9.0]])] * 2, labels=[torch.tensor([1, 2])] * 2)
    for i in range(2):
        assert out["labels"][i].tolist() == [1]
        assert torch.allclose(out["bboxes"][i], torch.tensor([[14.0, 2.0, 18.0, 5.0]]))


def test_keypoints_follow_a_flip_and_are_flagged_out_of_frame():
    x = images(b=1, h=10, w=12)
    aug = fastaug.Compose(
        [fastaug.RandomHorizontalFlip(p=1.0), fastaug.RandomAffine(0, translate=(0.5, 0.0))], seed=1, backend="torch"
    )
    out, rec = aug(x, keypoints=[torch.tensor([[2.5, 3.5], [11.5, 0.5]])], return_record=True)
    (_, flip), (_, aff) = rec.calls(0)
    tx = aff["translate"][0]
    expected = torch.tensor([[12 - 2.5 + tx, 3.5], [12 - 11.5 + tx, 0.5]])
    assert torch.allclose(out["keypoints"][0], expected.float(), atol=1e-5)
    inside = (expected[:, 0] >= 0) & (expected[:, 0] < 12)
    assert out["keypoints_visible"][0].tolist() == inside.tolist()


def test_xymasking_on_a_four_channel_spectrogram_and_its_mask():
    g = torch.Generator().manual_seed(0)
    spec = torch.rand(3, 4, 16, 40, generator=g)
    mask = torch.ones(3, 16, 40, dtype=torch.uint8)
    aug = fastaug.Compose(
        [fastaug.XYMasking(2, 1, (3, 6), (2, 4), fill=[0.1, 0.2, 0.3, 0.4], fill_mask=0, p=1.0)], backend="torch"
    )
    out = aug(spec, mask=mask)
    y, m = out["image"], out["mask"]
    assert y.shape == spec.shape
    for c, f in enumerate([0.1, 0.2, 0.3, 0.4]):
        assert torch.all(y[:, c][m == 0] == f)
    assert torch.equal(y[m.unsqueeze(1).expand_as(y) == 1], spec[m.unsqueeze(1).expand_as(y) == 1])
    covered = (m == 0).float().mean()
    assert 0.05 < covered < 0.8


def test_normalize_must_be_last_but_erasing_may_follow():
    x = images()
    fastaug.Compose([fastaug.Normalize(MEAN, STD), fastaug.RandomErasing(p=1.0)], backend="torch")(x)
    with pytest.raises(ValueError, match="Normalize"):
        fastaug.Compose([fastaug.Normalize(MEAN, STD), fastaug.RandomInvert()], backend="torch")(x)


def test_transform_argument_errors():
    with pytest.raises(ValueError, match="p"):
        fastaug.RandomHorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="antialias"):
        fastaug.RandomResizedCrop(8, antialias=True)
    with pytest.raises(ValueError, match="interpolation"):
        fastaug.RandomAffine(10, interpolation="bicubic")
    with pytest.raises(ValueError, match="hue"):
        fastaug.ColorJitter(hue=0.7)
    with pytest.raises(TypeError, match="transforms"):
        fastaug.Compose([lambda x: x])
    with pytest.raises(ValueError, match="indices"):
        big_pipeline()(images(), indices=torch.arange(3))


def test_draw_and_compile_never_read_values():
    """On the meta device tensors have no values: drawing and compiling a pipeline there proves the
    parameter path never reads a value back to the host (the GPU path must not sync)."""
    from fastaug.compiler import compile_plan

    aug = fastaug.Compose([
        fastaug.RandomResizedCrop(16), fastaug.RandomAffine(10, translate=(0.1, 0.1)), fastaug.ColorJitter(0.3, 0.3, 0.3, 0.1),
        fastaug.RandomErasing(p=1.0), fastaug.XYMasking(1, 1, 3, 3, p=1.0), fastaug.Normalize([0.5] * 3, [0.2] * 3),
    ])  # fmt: skip
    x = torch.empty(4, 3, 20, 24, dtype=torch.uint8, device="meta")
    plan = compile_plan(aug.draw(x, torch.arange(4, device="meta"), 0), tuple(x.shape), x.dtype, x.device)
    assert plan.out_size == (16, 16) and plan.stages[0].program.device.type == "meta"


def test_record_lists_integer_arguments_as_ints():
    """torchvision takes crop boxes, erase boxes and posterize bits as ints: the listing gives ints."""
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.RandomPosterize(3, p=1.0), fastaug.RandomErasing(p=1.0)])
    _, record = aug(images(), return_record=True, backend="torch")
    for name, kwargs in record.calls(0):
        for key in ("top", "left", "height", "width", "i", "j", "h", "w", "bits"):
            if key in kwargs:
                assert type(kwargs[key]) is int, (name, key, kwargs[key])
    assert [name for name, _ in record.calls(0)][:2] == ["resized_crop", "posterize"]


def test_albumentations_call_style_returns_a_dict():
    import numpy as np

    aug = fastaug.Compose([fastaug.RandomHorizontalFlip(p=1.0)], backend="torch")
    x = torch.randint(0, 256, (2, 3, 8, 10), dtype=torch.uint8)
    out = aug(image=x)
    assert set(out) == {"image"} and torch.equal(out["image"], x.flip(-1))
    assert torch.equal(aug(x), x.flip(-1))  # positional: a tensor, as before
    out, rec = aug(image=x, return_record=True)
    assert torch.equal(rec.replay(x), out["image"])
    with pytest.raises(TypeError, match="not both"):
        aug(x, image=x)
    # numpy, as albumentations users call it: HWC image, HW mask, pascal_voc boxes, labels of any type
    img = x[0].permute(1, 2, 0).numpy()
    mask = np.zeros((8, 10), np.uint8)
    mask[1:3, 0:2] = 1
    res = aug(image=img, mask=mask, bboxes=[[0, 1, 2, 3], [4, 4, 4, 6]], labels=["cat", "flat"], keypoints=[[1.0, 2.0]])
    assert res["image"].shape == (8, 10, 3) and np.array_equal(res["image"], img[:, ::-1])
    assert np.array_equal(res["mask"], mask[:, ::-1])
    assert res["bboxes"].tolist() == [[8.0, 1.0, 10.0, 3.0]] and res["labels"] == ["cat"]
    assert res["keypoints"].tolist() == [[9.0, 2.0]] and res["keypoints_visible"].tolist() == [True]
    with pytest.raises(ValueError, match="numpy image"):
        aug(image=np.zeros((2, 3, 8, 10), np.uint8))
