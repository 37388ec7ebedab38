"""torchvision v2 types in and out (fastaug.tv_types): every tv_tensors type round-trips with its metadata."""

import pytest
import torch
import tv

import fastaug

TF = tv.load()
pytestmark = pytest.mark.skipif(TF is None, reason="torchvision not installed")
if TF is not None:
    from torchvision import tv_tensors


def _flip():
    return fastaug.Compose([fastaug.RandomHorizontalFlip(p=1.0)], backend="torch")


def _images(b=3, h=12, w=16):
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8)


def test_plain_tensor_unchanged():
    x = _images()
    out = _flip()(x)
    assert type(out) is torch.Tensor and torch.equal(out, x.flip(-1))


def test_image_round_trip_and_unbatched():
    x = tv_tensors.Image(_images())
    out = _flip()(x)
    assert type(out) is tv_tensors.Image and torch.equal(out.as_subclass(torch.Tensor), x.as_subclass(torch.Tensor).flip(-1))
    one = _flip()(tv_tensors.Image(_images()[0]))
    assert type(one) is tv_tensors.Image and one.shape == (3, 12, 16)


def test_video_every_frame_gets_its_video_draws():
    aug = fastaug.Compose([fastaug.RandomRotation(40), fastaug.ColorJitter(0.5, 0.5)], backend="torch", seed=3)
    frame = _images(1)[0]
    video = tv_tensors.Video(frame.expand(2, 4, 3, 12, 16).clone())  # 2 videos of 4 identical frames
    out = aug(video, indices=torch.tensor([5, 9]))
    assert type(out) is tv_tensors.Video and out.shape == video.shape
    for v in range(2):
        for t in range(1, 4):
            assert torch.equal(out[v, t], out[v, 0])
    assert not torch.equal(out[0, 0], out[1, 0])
    single = aug(tv_tensors.Video(video[1]), indices=torch.tensor([9]))
    assert type(single) is tv_tensors.Video and torch.equal(single.as_subclass(torch.Tensor), out[1].as_subclass(torch.Tensor))
    res = aug(image=video, mask=tv_tensors.Mask(torch.ones(2, 4, 12, 16, dtype=torch.uint8)))
    assert type(res["mask"]) is tv_tensors.Mask and res["mask"].shape == (2, 4, 12, 16)


@pytest.mark.parametrize("fmt", ["XYXY", "XYWH", "CXCYWH", "XYWHR", "CXCYWHR", "XYXYXYXY"])
def test_boxes_every_format_flip_and_crop(fmt):
    xyxy = tv_tensors.BoundingBoxes(torch.tensor([[2.0, 3.0, 6.0, 9.0], [1.0, 1.0, 4.0, 2.0]]), format="XYXY", canvas_size=(12, 16))
    rotated = fmt in ("XYWHR", "CXCYWHR", "XYXYXYXY")

    def as_fmt(xywhr):
        return TF.convert_bounding_box_format(tv_tensors.BoundingBoxes(xywhr, format="XYWHR", canvas_size=(12, 16)), new_format=fmt)

    if rotated:  # non-zero angles: the flip is checked value for value, angle included
        boxes = as_fmt(torch.tensor([[5.0, 3.0, 4.0, 6.0, 30.0], [8.0, 6.0, 3.0, 1.5, -65.0]]))
    else:
        boxes = TF.convert_bounding_box_format(xyxy, new_format=fmt)
    img = tv_tensors.Image(_images(1)[0])
    out_img, target = _flip()(img, {"boxes": boxes, "labels": torch.tensor([1, 2])})
    assert type(out_img) is tv_tensors.Image
    ob = target["boxes"]
    assert type(ob) is tv_tensors.BoundingBoxes and ob.format == boxes.format and tuple(ob.canvas_size) == (12, 16)
    expect = TF.horizontal_flip(boxes)  # torchvision on the same boxes
    torch.testing.assert_close(ob.as_subclass(torch.Tensor), expect.as_subclass(torch.Tensor), atol=1e-4, rtol=0)
    assert torch.equal(target["labels"], torch.tensor([1, 2]))
    # geometry changes the canvas: a resized crop to 8x10 (a non-uniform scale: axis-aligned boxes, angle 0, compared by extent)
    if rotated:
        boxes = as_fmt(torch.tensor([[2.0, 3.0, 4.0, 6.0, 0.0], [1.0, 1.0, 3.0, 1.0, 0.0]]))
    crop = fastaug.Compose([fastaug.RandomResizedCrop((8, 10), scale=(1.0, 1.0), ratio=(16 / 12, 16 / 12))], backend="torch")
    _, t2 = crop(img, {"boxes": boxes})
    assert tuple(t2["boxes"].canvas_size) == (8, 10) and t2["boxes"].format == boxes.format
    torch.testing.assert_close(_extent(t2["boxes"]), _extent(boxes) * torch.tensor([10 / 16, 8 / 12] * 2), atol=1e-4, rtol=0)


def test_one_bounding_boxes_with_a_batch_is_refused():
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[2.0, 3.0, 6.0, 9.0]]), format="XYXY", canvas_size=(12, 16))
    with pytest.raises(ValueError, match="one BoundingBoxes goes with one image, got a batch of 3"):
        _flip()(image=_images(3), bboxes=boxes)
    with pytest.raises(ValueError, match="2 BoundingBoxes for a batch of 3"):
        _flip()(image=_images(3), bboxes=[boxes, boxes])
    out = _flip()(image=_images(1), bboxes=boxes)  # one image: accepted
    assert type(out["bboxes"]) is tv_tensors.BoundingBoxes


def _extent(boxes):
    """xyxy extent of each box (any format) from its corners."""
    if boxes.format.name in ("XYWHR", "CXCYWHR", "XYXYXYXY"):
        pts = TF.convert_bounding_box_format(boxes, new_format="XYXYXYXY").as_subclass(torch.Tensor).reshape(-1, 4, 2)
        return torch.cat([pts.amin(1), pts.amax(1)], 1).double()
    return TF.convert_bounding_box_format(boxes, new_format="XYXY").as_subclass(torch.Tensor).double()


def test_keypoints_and_mask_round_trip():
    pts = tv_tensors.KeyPoints(torch.tensor([[1.5, 2.0], [10.0, 4.0]]), canvas_size=(12, 16))
    mask = tv_tensors.Mask(torch.zeros(12, 16, dtype=torch.uint8))
    mask[2:5, 3:7] = 1
    img, target = _flip()(tv_tensors.Image(_images(1)[0]), {"keypoints": pts, "masks": mask, "name": "a"})
    assert type(target["keypoints"]) is tv_tensors.KeyPoints and tuple(target["keypoints"].canvas_size) == (12, 16)
    flipped = TF.horizontal_flip(pts).as_subclass(torch.Tensor) + torch.tensor([1.0, 0.0])  # torchvision: W - 1 - x; fastaug: W - x
    torch.testing.assert_close(target["keypoints"].as_subclass(torch.Tensor), flipped)
    assert type(target["masks"]) is tv_tensors.Mask and torch.equal(target["masks"].as_subclass(torch.Tensor), mask.flip(-1))
    assert target["name"] == "a"
    out = _flip()(image=_images(1)[0], keypoints=pts, mask=mask)
    assert type(out["keypoints"]) is tv_tensors.KeyPoints and type(out["mask"]) is tv_tensors.Mask


def test_batched_detection_structure_per_sample_targets():
    aug = fastaug.Compose([fastaug.RandomHorizontalFlip(p=0.5)], backend="torch", seed=1)
    x = tv_tensors.Image(_images(4))
    targets = []
    for i in range(4):
        m = torch.zeros(i + 1, 12, 16, dtype=torch.uint8)
        m[:, 0, 0] = 1
        targets.append({
            "boxes": tv_tensors.BoundingBoxes(torch.tensor([[0.0, 0.0, 4.0, 4.0]] * (i + 1)), format="XYXY", canvas_size=(12, 16)),
            "masks": tv_tensors.Mask(m), "labels": torch.arange(i + 1),
        })  # fmt: skip
    out, tgs = aug(x, targets)
    flipped = [torch.equal(out[i].as_subclass(torch.Tensor), x[i].as_subclass(torch.Tensor).flip(-1)) for i in range(4)]
    assert 0 < sum(flipped) < 4
    for i, t in enumerate(tgs):
        assert t["boxes"].shape == (i + 1, 4) and type(t["masks"]) is tv_tensors.Mask and t["masks"].shape == (i + 1, 12, 16)
        x0 = 12.0 if flipped[i] else 0.0
        assert torch.allclose(t["boxes"].as_subclass(torch.Tensor)[:, 0], torch.full((i + 1,), x0))
        assert bool(t["masks"][:, 0, 15 if flipped[i] else 0].all())
    with pytest.raises(ValueError, match="one per sample"):
        aug(x, {"boxes": targets[0]["boxes"]})


def test_keyword_boxes_keep_type_and_drop_with_labels():
    aug = fastaug.Compose([fastaug.RandomAffine(0, translate=(0, 0))], backend="torch")
    bx = tv_tensors.BoundingBoxes(torch.tensor([[2, 2, 6, 5], [20, 20, 30, 30]]), format="XYXY", canvas_size=(12, 16))
    out = aug(image=_images(1)[0], bboxes=bx, labels=torch.tensor([3, 4]))
    assert type(out["bboxes"]) is tv_tensors.BoundingBoxes and out["bboxes"].dtype == torch.int64
    assert out["bboxes"].tolist() == [[2, 2, 6, 5]] and out["labels"].tolist() == [3]


def test_keypoints_and_boxes_match_torchvision_rotation():
    pts = tv_tensors.KeyPoints(torch.tensor([[3.0, 2.0], [10.0, 7.0]]), canvas_size=(12, 16))
    bx = tv_tensors.BoundingBoxes(torch.tensor([[3.0, 2.0, 9.0, 7.0]]), format="XYXY", canvas_size=(12, 16))
    aug = fastaug.Compose([fastaug.RandomRotation((30, 30))], backend="torch")
    _, t = aug(tv_tensors.Image(_images(1)[0]), {"k": pts, "b": bx})
    torch.testing.assert_close(t["k"].as_subclass(torch.Tensor), TF.rotate(pts, 30.0).as_subclass(torch.Tensor), atol=1e-4, rtol=0)
    torch.testing.assert_close(t["b"].as_subclass(torch.Tensor), TF.rotate(bx, 30.0).as_subclass(torch.Tensor), atol=1e-3, rtol=0)
