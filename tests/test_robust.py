"""fastaug.robust: ops, boundary search (known invariances), cache and resume, realism ranges, evaluate, bad input."""

import json

import pytest
import torch

from fastaug.compose import Compose
from fastaug.robust import Analyzer, RobustAugment, errors, per_file, per_image
from fastaug.robust import boundaries as B
from fastaug.robust import ops as O


def brightness_classifier(threshold: float = 128.0):
    """Class 1 when the image's mean value is above ``threshold``: invariant to hue, sensitive to brightness."""
    return lambda batch: (batch.float().mean((1, 2, 3)) > threshold).long()


def constant(values, size: int = 8) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, size, size).contiguous()


def test_ops_cover_the_catalogue():
    covered = {op.function for op in O.OPS}
    assert covered | set(O.EXCLUDED) == O.catalogue_functions()
    assert not covered & set(O.EXCLUDED)
    for pair in (("brighten", "darken"), ("contrast", "decontrast"), ("saturate", "desaturate"), ("hue", "dehue"),
                 ("more_red", "less_red"), ("more_green", "less_green"), ("more_blue", "less_blue")):  # fmt: skip
        assert all(name in O.BY_NAME for name in pair)


@pytest.mark.parametrize("op", [o.name for o in O.OPS if o.name not in ("superpixels",)])
def test_intensity_zero_is_identity_and_nan_is_off(op):
    x = (torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    t = torch.tensor([[0.0], [1.0], [float("nan")]])
    y = Compose([RobustAugment([op], t)])(x, indices=torch.arange(3))
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    assert not torch.equal(y[1], x[1])


def test_boundary_of_a_brightness_classifier_lands_where_it_must():
    # brighten: factor 1 + 2t on value 100 passes 128 first at t = 0.15 (130); darken: factor 1 - t on 200 falls to
    # 128 or below first at t = 0.40 (120; t = 0.35 gives 130)
    model = brightness_classifier()
    a = Analyzer(model, ops=["brighten", "darken", "hue", "dehue"], progress=False)
    a.search_boundaries(constant([100] * 4 + [200] * 4), step=0.05)
    c = a.curves
    assert c["brighten"].fraction_differs[2] == 0.0 and c["brighten"].fraction_differs[3] == 0.5  # t = 0.10, 0.15
    b = a.boundaries()
    assert b["hue"] == B.Boundary("hue", 1.0, 1.0, False) and b["dehue"].fails is False  # gray images: hue is invariant
    only_bright = Analyzer(model, ops=["brighten", "darken"], progress=False)
    only_bright.search_boundaries(constant([100] * 4), step=0.05)
    assert only_bright.boundaries()["brighten"] == B.Boundary("brighten", 0.10, 0.15, True)
    assert only_bright.boundaries()["darken"].fails is False  # darker stays class 0
    only_dark = Analyzer(model, ops=["darken"], progress=False)
    only_dark.search_boundaries(constant([200] * 4), step=0.05)
    assert only_dark.boundaries()["darken"] == B.Boundary("darken", 0.35, 0.40, True)
    # realism: 1 -> [0, start], 0 -> [0, fail], -1 -> [0, fail + (fail - start)]
    assert only_dark.ranges(1.0)["darken"] == (0.0, 0.35)
    assert only_dark.ranges(0.0)["darken"] == (0.0, 0.40)
    assert only_dark.ranges(-1.0)["darken"] == pytest.approx((0.0, 0.45))
    only_dark.set_realism("darken", 1.0)
    assert only_dark.ranges(0.0)["darken"] == (0.0, 0.35)


def test_with_labels_the_error_is_against_the_labels_and_evaluate_counts():
    model = brightness_classifier()
    x = constant([100, 100, 200, 200])
    a = Analyzer(model, progress=False, ops=["brighten"])
    labels = torch.tensor([1, 1, 1, 1])  # the dark samples are wrong
    curve = a.search_boundaries(x, labels, step=0.5)["brighten"]
    assert curve.mean_diff_error == [0.5, 0.0, 0.0]  # brighter, they become right
    ev = a.evaluate(x, labels)
    assert ev == {"avg_diff_error": 0.5, "output_differs_count": 2, "differing_output_errs": [1.0, 1.0]}


def test_resume_after_a_kill_gives_the_same_cache(tmp_path):
    x = (torch.rand(6, 3, 10, 10, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    model = brightness_classifier(110.0)
    ops = ["brighten", "darken", "rotate", "gaussian_noise"]
    clean = tmp_path / "clean.json"
    Analyzer(model, ops=ops, batch_size=4, progress=False).search_boundaries(x, step=0.25, cache=clean)
    calls = {"n": 0}

    def dies(batch):
        calls["n"] += 1
        if calls["n"] > 20:  # inside the third op
            raise KeyboardInterrupt
        return model(batch)

    killed = tmp_path / "killed.json"
    with pytest.raises(KeyboardInterrupt):
        Analyzer(dies, ops=ops, batch_size=4, progress=False).search_boundaries(x, step=0.25, cache=killed)
    assert list(json.loads(killed.read_text())["curves"]) == ["brighten", "darken"]
    calls["n"] = -1000
    seen = []
    resumed = Analyzer(lambda b: seen.append(1) or model(b), ops=ops, batch_size=4, progress=False)
    resumed.search_boundaries(x, step=0.25, cache=killed)
    assert len(seen) == 2 + 2 * 8  # the reference (6 samples in batches of 4), two ops left: 6 x 5 pairs in batches of 4
    strip = lambda p: {k: {f: v for f, v in c.items() if f != "seconds"} for k, c in json.loads(p.read_text())["curves"].items()}  # noqa: E731
    assert strip(killed) == strip(clean)
    with pytest.raises(ValueError, match="other settings"):
        resumed.search_boundaries(x, step=0.5, cache=killed)


def test_batching_does_not_change_the_curves_or_the_pixels():
    x = (torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    model = brightness_classifier(120.0)
    ops = ["crop", "gaussian_noise", "darken", "motion_blur", "gaussian_blur"]
    seen = {1: [], 64: []}

    def recording(size):
        return lambda batch: seen[size].append(batch.clone()) or model(batch)

    one = Analyzer(recording(1), ops=ops, batch_size=1, progress=False).search_boundaries(x, step=0.2)
    many = Analyzer(recording(64), ops=ops, batch_size=64, progress=False).search_boundaries(x, step=0.2)
    assert all(one[o].mean_diff_error == many[o].mean_diff_error for o in ops)
    assert torch.equal(torch.cat(seen[1]), torch.cat(seen[64]))  # every (sample, intensity) pair in the same order


def test_gaussian_blur_of_a_sample_does_not_depend_on_its_batch():
    # with the kernel sized by the batch's largest sigma, ~25 of these pixels differed by 1 LSB
    x = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    for dtype in (torch.uint8, torch.float32):
        xs = x if dtype == torch.uint8 else x.float() / 255
        alone = Compose([RobustAugment(["gaussian_blur"], torch.tensor([[0.3]]))])(xs[:1], indices=torch.arange(1))
        together = Compose([RobustAugment(["gaussian_blur"], torch.tensor([[0.3], [1.0]]))])(xs, indices=torch.arange(2))
        assert torch.equal(alone[0], together[0])


def test_diff_errors():
    assert errors.label_error(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3])).tolist() == [0.0, 1.0, 0.0]
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert errors.probability_error(p, torch.tensor([[0.0, 1.0], [0.5, 0.5]])).tolist() == [1.0, 0.0]
    m = torch.zeros(1, 4, 4, dtype=torch.long)
    m2 = m.clone()
    m[0, :2] = 1
    m2[0, :1] = 1
    assert errors.mask_iou_error(m, m2).tolist() == [0.5]
    box = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    assert errors.box_iou_error()(box, [torch.tensor([[0.0, 0.0, 10.0, 5.0]])]).tolist() == [0.0]  # IoU 0.5
    assert errors.box_iou_error(0.6)(box, [torch.tensor([[0.0, 0.0, 10.0, 5.0]])]).tolist() == [1.0]
    assert errors.box_iou_error()([torch.zeros(0, 4)], [torch.zeros(0, 4)]).tolist() == [0.0]
    kp = errors.keypoint_error(1.0)([torch.tensor([[0.0, 0.0], [5.0, 5.0]])], [torch.tensor([[0.5, 0.0], [9.0, 5.0]])])
    assert kp.tolist() == [0.5]


def test_per_image_and_per_file_wrappers_match_the_batch_model():
    x = constant([90, 150, 200])
    model = brightness_classifier()
    assert torch.equal(per_image(lambda im: int(im.float().mean() > 128))(x), model(x))
    import numpy as np
    from PIL import Image

    def from_file(path):
        return int(np.asarray(Image.open(path)).mean() > 128)

    assert torch.equal(per_file(from_file)(x), model(x))


def test_bad_input_names_the_argument():
    model = brightness_classifier()
    with pytest.raises(TypeError, match="predict"):
        Analyzer(3)
    with pytest.raises(ValueError, match="ops: unknown op 'nope'"):
        Analyzer(model, ops=["nope"])
    with pytest.raises(ValueError, match="failure"):
        Analyzer(model, tolerance=0.5, failure=0.2)
    with pytest.raises(ValueError, match="batch_size"):
        Analyzer(model, batch_size=0)
    a = Analyzer(model, ops=["brighten"], progress=False)
    with pytest.raises(ValueError, match="step"):
        a.search_boundaries(constant([1, 2]), step=0)
    with pytest.raises(TypeError, match="images"):
        a.search_boundaries([[1]])
    with pytest.raises(ValueError, match="labels"):
        a.search_boundaries(constant([1, 2]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="no boundaries yet"):
        a.boundaries()
    with pytest.raises(ValueError, match="saturate needs 3 channels"):
        Analyzer(model, ops=["saturate"], progress=False).search_boundaries(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    a.search_boundaries(constant([1, 2]), step=0.5)
    with pytest.raises(ValueError, match="realism"):
        a.set_realism("brighten", float("nan"))
    with pytest.raises(ValueError, match="weight"):
        a.set_weight("brighten", -1)
    with pytest.raises(ValueError, match="darken has no boundary"):
        a.set_weight("darken", 1)
    with pytest.raises(ValueError, match="diff_error must return values in"):
        Analyzer(model, diff_error=lambda a, b: torch.full((a.shape[0],), 2.0), progress=False).evaluate(constant([1]), torch.tensor([0]))


def test_a_cache_or_synthesis_of_another_model_is_refused(tmp_path):
    x = constant([100, 200])
    cache = tmp_path / "b.json"
    a = Analyzer(brightness_classifier(), ops=["brighten"], progress=False, model_id="sha256:aaa")
    a.search_boundaries(x, step=0.5, cache=cache)
    assert json.loads(cache.read_text())["settings"]["model"] == "sha256:aaa"
    a.synthesize(count=2, min_ops=1, max_ops=1, out=tmp_path / "s")
    other = Analyzer(brightness_classifier(), ops=["brighten"], progress=False, model_id="sha256:bbb")
    with pytest.raises(ValueError, match=r"cache '.*b\.json' holds a search with other settings \(model: 'sha256:aaa' then"):
        other.search_boundaries(x, step=0.5, cache=cache)
    other.search_boundaries(x, step=0.5)
    with pytest.raises(ValueError, match="holds a synthesis with other settings.*model"):
        other.synthesize(count=2, min_ops=1, max_ops=1, out=tmp_path / "s")
    with pytest.raises(ValueError, match="backend: 'auto' then, 'torch' now"):
        Analyzer(brightness_classifier(), ops=["brighten"], progress=False, model_id="sha256:aaa",
                 backend="torch").search_boundaries(x, step=0.5, cache=cache)  # fmt: skip
    with pytest.raises(TypeError, match="model_id"):
        Analyzer(brightness_classifier(), model_id=3)
