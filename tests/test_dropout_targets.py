"""CoarseDropout / XYMasking holes filter boxes and flag keypoints (albumentations' BaseDropout), against a plain
per-sample oracle that reads the holes off the painted image; RandomErasing (torchvision's) leaves them alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastaug
from fastaug import targets

SEED = 5
B, H, W = 10, 23, 31


def random_targets(seed: int, n: int = 12):
    """Per sample: boxes in the frame (some tiny, some under one whole pixel), labels, keypoints."""
    g = torch.Generator().manual_seed(seed)
    boxes, labels, points = [], [], []
    for _ in range(B):
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([W - 1, H - 1])
        size = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H]) * torch.rand(n, 1, generator=g)
        lo, hi = xy, torch.minimum(xy + size, torch.tensor([W, H], dtype=torch.float64))
        boxes.append(torch.cat([lo, hi], 1).to(torch.float32))
        labels.append(torch.randint(0, 100, (n,), generator=g))
        points.append((torch.rand(n, 2, generator=g) * torch.tensor([W, H])).to(torch.float32))
    return boxes, labels, points


def oracle_box(box: torch.Tensor, hole: np.ndarray, min_area: float, min_visibility: float):
    """albumentations 2's rule on whole pixels for one box and a sample's hole mask [H,W] with a hole: the box with its
    cut sides moved to the visible pixels' bounding rectangle, or None when dropped (see filter_boxes_by_holes)."""
    x0, y0, x1, y1 = (int(v) for v in box.tolist())
    area = (x1 - x0) * (y1 - y0)
    if area == 0:
        return box  # no whole pixel: kept as it is
    seen = ~hole[y0:y1, x0:x1]
    visible = int(seen.sum())
    if not (visible > 0 and visible >= min_area and visible / area >= min_visibility):
        return None
    rows, cols = np.nonzero(seen.any(1))[0], np.nonzero(seen.any(0))[0]
    out = box.clone()
    if cols[0] > 0:
        out[0] = x0 + cols[0]
    if rows[0] > 0:
        out[1] = y0 + rows[0]
    if cols[-1] < x1 - x0 - 1:
        out[2] = x0 + cols[-1] + 1
    if rows[-1] < y1 - y0 - 1:
        out[3] = y0 + rows[-1] + 1
    return out


def oracle(boxes, labels, points, filters):
    """Per sample: the boxes and labels after the holes and whether each keypoint is under no hole; ``filters``: one
    (holes [B,H,W] bool, min_area, min_visibility) per dropout, applied one after the other."""
    out_boxes, out_labels, out_visible = [], [], []
    for i in range(len(boxes)):
        kept, visible = list(zip(boxes[i], labels[i], strict=True)), [True] * len(points[i])
        for holes, min_area, min_visibility in filters:
            hole = holes[i].numpy()
            if hole.any():
                kept = [(nb, lb) for nb, lb in ((oracle_box(bx, hole, min_area, min_visibility), lb) for bx, lb in kept) if nb is not None]
            visible = [v and not bool(hole[int(y), int(x)]) for v, (x, y) in zip(visible, points[i].tolist(), strict=True)]
        out_boxes.append(torch.stack([bx for bx, _ in kept]) if kept else boxes[i][:0])
        out_labels.append(torch.stack([lb for _, lb in kept]) if kept else labels[i][:0])
        out_visible.append(visible)
    return out_boxes, out_labels, out_visible


def check(out, want):
    boxes, labels, visible = want
    for i in range(B):
        assert torch.equal(out["bboxes"][i], boxes[i]), i
        assert torch.equal(out["labels"][i], labels[i]), i
        assert out["keypoints_visible"][i].tolist() == visible[i], i


@pytest.mark.parametrize("min_area, min_visibility", [(0.0, 0.0), (0.0, 0.5), (6.0, 0.0), (3.0, 0.3), (0.0, 1.0)])
def test_coarse_dropout_matches_the_oracle(min_area, min_visibility):
    x = torch.full((B, 3, H, W), 0.5)
    t = fastaug.CoarseDropout((1, 4), (3, 12), (3, 14), fill=0.0, p=0.7, min_area=min_area, min_visibility=min_visibility)
    boxes, labels, points = random_targets(1)
    out = fastaug.Compose([t], seed=SEED, backend="torch")(x, bboxes=boxes, labels=labels, keypoints=points)
    holes = out["image"][:, 0] == 0
    assert 0 < int(holes.any((1, 2)).sum()) < B  # some samples without holes (p=0.7)
    check(out, oracle(boxes, labels, points, [(holes, min_area, min_visibility)]))
    assert torch.equal(out["keypoints"][0], points[0])  # flagged, not moved or removed
    assert not all(v.all() for v in out["keypoints_visible"])
    if (min_area, min_visibility) != (0.0, 0.0):  # the filter drops something here
        assert sum(len(b) for b in out["bboxes"]) < sum(len(b) for b in boxes)


def test_boxes_agree_with_albumentations_filter():
    """albumentations' own filter_bboxes_by_holes (drop and shrink) on the same holes, on whole-pixel boxes."""
    fd = pytest.importorskip("albumentations.augmentations.dropout.functional")
    x = torch.full((B, 1, H, W), 0.5)
    aug = fastaug.Compose([fastaug.CoarseDropout((2, 5), (2, 9), (2, 9), p=1.0, min_area=4.0, min_visibility=0.4)], seed=SEED)
    boxes, labels, _ = random_targets(2, n=30)
    boxes = [bx.floor() for bx in boxes]
    boxes = [bx[(bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])] for bx in boxes]
    out, record = aug(x, bboxes=boxes, return_record=True, backend="torch")
    dropped = shrunk = 0
    for i in range(B):
        holes = np.array([(kw["j"], kw["i"], kw["j"] + kw["w"], kw["i"] + kw["h"]) for _, kw in record.calls(i)])
        want = fd.filter_bboxes_by_holes(boxes[i].numpy().astype(np.float64), holes, (H, W), 4.0, 0.4)
        assert np.array_equal(out["bboxes"][i].numpy().astype(np.float64), want), i
        dropped += len(boxes[i]) - len(want)
        shrunk += len(want) - int((out["bboxes"][i][:, None] == boxes[i][None]).all(2).any(1).sum())
    assert dropped > 0 and shrunk > 0


def test_xy_masking_after_a_flip_and_two_filters_in_one_pipeline():
    """Stripes filter too; boxes are filtered in the output frame (after the flip); two dropouts: both filters."""
    x = torch.full((B, 3, H, W), 0.5)
    flip = fastaug.RandomHorizontalFlip(0.5)
    xy = dict(num_masks_x=(1, 2), num_masks_y=(1, 2), mask_x_length=(2, 6), mask_y_length=(2, 5), fill=0.0, min_visibility=0.6)
    cd = fastaug.CoarseDropout((1, 2), (4, 8), (4, 8), fill=0.0, p=0.8, min_area=5.0)
    boxes, labels, points = random_targets(3)

    def run(*transforms):
        return fastaug.Compose([flip, *transforms], seed=SEED, backend="torch")(x, bboxes=boxes, labels=labels, keypoints=points)

    flipped = run()
    assert any(not torch.equal(flipped["bboxes"][i], boxes[i]) for i in range(B))  # some samples flipped
    only_xy, only_cd = run(fastaug.XYMasking(**xy, p=0.8)), run(fastaug.XYMasking(**xy, p=0.0), cd)
    both = run(fastaug.XYMasking(**xy, p=0.8), cd)
    xy_holes, cd_holes = only_xy["image"][:, 0] == 0, only_cd["image"][:, 0] == 0
    fb, fl, fp = flipped["bboxes"], flipped["labels"], flipped["keypoints"]
    check(only_xy, oracle(fb, fl, fp, [(xy_holes, 0.0, 0.6)]))
    check(only_cd, oracle(fb, fl, fp, [(cd_holes, 5.0, 0.0)]))
    check(both, oracle(fb, fl, fp, [(xy_holes, 0.0, 0.6), (cd_holes, 5.0, 0.0)]))
    assert torch.equal(both["image"][:, 0] == 0, xy_holes | cd_holes)


def test_random_erasing_filters_nothing():
    x = torch.full((B, 3, H, W), 0.5)
    boxes, labels, points = random_targets(4)
    out = fastaug.Compose([fastaug.RandomErasing(p=1.0, scale=(0.3, 0.5))], seed=SEED, backend="torch")(
        x, bboxes=boxes, labels=labels, keypoints=points
    )
    assert (out["image"][:, 0] == 0).any()
    for i in range(B):
        assert torch.equal(out["bboxes"][i], boxes[i]) and torch.equal(out["labels"][i], labels[i])
        assert out["keypoints_visible"][i].all()


def test_filters_run_on_the_device_without_host_reads():
    """On fake CUDA tensors: drawing the holes and computing which boxes and keypoints survive copies nothing."""
    from fake_cuda import fake_cuda

    aug = fastaug.Compose([fastaug.CoarseDropout((1, 3), (2, 6), (2, 6), p=0.5, min_visibility=0.5),
                           fastaug.XYMasking(1, 1, (1, 4), (1, 4), p=0.5)])  # fmt: skip
    with fake_cuda() as log:
        x = torch.empty(4, 3, H, W, dtype=torch.uint8, device="cuda")
        calls = aug.draw(x, torch.arange(4, device="cuda"), 0)
        boxes = [torch.empty(n, 4, device="cuda") for n in (3, 0, 5, 1)]
        points = [torch.empty(n, 2, device="cuda") for n in (2, 1, 0, 4)]
        log.reset()
        moved, keep = targets.filter_boxes_by_holes(boxes, calls, (H, W))
        visible = targets.keypoints_outside_holes(points, calls)
    assert log.host_to_device == [] and log.host_to_device_async == [] and log.device_to_host == []
    assert [tuple(k.shape) for k in keep] == [(3,), (0,), (5,), (1,)] and all(k.device.type == "cuda" for k in keep)
    assert [tuple(m.shape) for m in moved] == [(3, 4), (0, 4), (5, 4), (1, 4)]
    assert [tuple(v.shape) for v in visible] == [(2,), (1,), (0,), (4,)]


def test_bad_thresholds_raise_naming_them():
    for cls in (fastaug.CoarseDropout, fastaug.XYMasking):
        for kwargs, exc, name in [
            ({"min_area": -1}, ValueError, "min_area"),
            ({"min_area": float("nan")}, ValueError, "min_area"),
            ({"min_area": "1"}, TypeError, "min_area"),
            ({"min_area": True}, TypeError, "min_area"),
            ({"min_visibility": 1.5}, ValueError, "min_visibility"),
            ({"min_visibility": float("nan")}, ValueError, "min_visibility"),
            ({"min_visibility": None}, ValueError, "min_visibility"),
        ]:
            with pytest.raises(exc, match=name):
                cls(**kwargs)


@pytest.mark.parametrize("seed", range(4))
def test_summed_area_table_and_visible_spans_against_brute_force(seed):
    """The one int32 table the filter keeps: the cumulative sums of the visible pixels (holes painted one by one),
    and the first / last row and column with a visible pixel inside each box (the per-line counts read off the
    table), against a direct scan of the visible mask."""
    from fastaug.ops.calls import RectCall

    g = torch.Generator().manual_seed(seed)
    b, r, h, w = 5, 4, 17 + seed, 23 - seed
    x0, y0 = torch.randint(0, w, (b, r), generator=g), torch.randint(0, h, (b, r), generator=g)
    x1 = torch.minimum(x0 + torch.randint(0, w, (b, r), generator=g), torch.tensor(w))
    y1 = torch.minimum(y0 + torch.randint(0, h, (b, r), generator=g), torch.tensor(h))
    call = RectCall(name="coarse_dropout", rects=torch.stack([x0, y0, x1, y1], -1).to(torch.int32),
                    active=torch.rand(b, r, generator=g) < 0.8, applied=torch.tensor([True, True, False, True, True]))  # fmt: skip
    visible = torch.ones(b, h, w, dtype=torch.bool)
    for i in range(b):
        for j in range(r):
            if call.painted()[i, j]:
                visible[i, y0[i, j] : y1[i, j], x0[i, j] : x1[i, j]] = False
    table = targets._visible_table(call, (h, w))
    assert table.dtype == torch.int32 and table.shape == (b, h + 1, w + 1)
    want = torch.nn.functional.pad(visible.to(torch.int64).cumsum(2).cumsum(1), (1, 0, 1, 0))
    assert torch.equal(table.to(torch.int64), want)
    n = 40
    sample = torch.randint(0, b, (n,), generator=g)
    bx0, by0 = torch.randint(0, w, (n,), generator=g), torch.randint(0, h, (n,), generator=g)
    bx1 = torch.minimum(bx0 + torch.randint(0, w, (n,), generator=g), torch.tensor(w))
    by1 = torch.minimum(by0 + torch.randint(0, h, (n,), generator=g), torch.tensor(h))
    first_y, last_y = targets._visible_span(table, sample, by0, by1, bx0, bx1, along_y=False)
    first_x, last_x = targets._visible_span(table, sample, bx0, bx1, by0, by1, along_y=True)
    for k in range(n):
        seen = visible[sample[k], by0[k] : by1[k], bx0[k] : bx1[k]]
        rows, cols = seen.any(1).nonzero()[:, 0] + by0[k], seen.any(0).nonzero()[:, 0] + bx0[k]
        assert (int(first_y[k]), int(last_y[k])) == ((int(rows[0]), int(rows[-1])) if len(rows) else (h, -1)), k
        assert (int(first_x[k]), int(last_x[k])) == ((int(cols[0]), int(cols[-1])) if len(cols) else (w, -1)), k


def test_bool_thresholds_and_bad_mask_fills_raise_naming_them():
    """A bool is no threshold (min_visibility=True is not 1.0, as min_area=True is not 1 pixel); XYMasking's fill_mask
    is checked as CoarseDropout's (and PixelDropout's mask_drop_value) are: None or a finite number."""
    for cls in (fastaug.CoarseDropout, fastaug.XYMasking):
        for kwargs, exc, name in [
            ({"min_visibility": True}, TypeError, "min_visibility"),
            ({"min_visibility": False}, TypeError, "min_visibility"),
            ({"min_area": False}, TypeError, "min_area"),
            ({"fill_mask": (1, 2)}, TypeError, "fill_mask"),
            ({"fill_mask": "x"}, TypeError, "fill_mask"),
            ({"fill_mask": True}, TypeError, "fill_mask"),
            ({"fill_mask": float("nan")}, TypeError, "fill_mask"),
            ({"fill_mask": float("inf")}, TypeError, "fill_mask"),
        ]:
            with pytest.raises(exc, match=name):
                cls(**kwargs)
        assert cls(fill_mask=3, min_visibility=1, min_area=2).fill_mask == 3  # ints are numbers
    with pytest.raises(TypeError, match="mask_drop_value"):
        fastaug.PixelDropout(mask_drop_value=float("inf"))
