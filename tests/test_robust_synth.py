"""fastaug.robust synthesis and report: realism ranges, the diff-error window, resume, boxes on their objects, HTML."""

import json
import re

import pytest
import torch

from fastaug.robust import Analyzer, box_iou_error
from fastaug.robust import synthesize as S


def brightness_classifier(batch):
    return (batch.float().mean((1, 2, 3)) > 128).long()


def images(n: int = 8, size: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 200 + 28).to(torch.uint8)


OPS = ["brighten", "darken", "rotate", "gaussian_noise", "contrast", "crop"]


def searched(**kw) -> Analyzer:
    a = Analyzer(brightness_classifier, ops=OPS, progress=False, batch_size=32, **kw)
    a.search_boundaries(images(), step=0.25)
    return a


def test_intensities_stay_inside_the_realism_ranges_and_ops_counts(tmp_path):
    a = searched()
    a.set_weight("contrast", 0.0)
    a.set_realism("rotate", -1.0)
    for realism in (1.0, 0.5, 0.0):
        res = a.synthesize(realism=realism, count=24, min_ops=2, max_ops=3, out=tmp_path / f"r{realism}")
        ranges = a.ranges(realism)
        assert ranges["rotate"] == a.ranges(-1.0)["rotate"]
        for rec in res.records:
            assert 2 <= len(rec["ops"]) <= 3 and "contrast" not in rec["ops"]
            for op, v in rec["ops"].items():
                lo, hi = ranges[op]
                assert lo <= v["intensity"] <= hi
        assert all(p is not None for p in res.paths) and res.rejected == 0
        assert res.labels == [int(brightness_classifier(images()[k % 8 : k % 8 + 1])) for k in range(24)]  # class labels ride along
    x, labels, recs = S.load(tmp_path / "r0.0")
    assert x.shape == (24, 3, 10, 10) and len(labels) == 24


def test_the_predicted_diff_error_window_holds_with_counted_retries(tmp_path):
    a = searched()
    a.realism = -1.0  # hard samples: many flip
    hard = a.synthesize(count=16, min_predicted_diff_error=1.0, out=tmp_path / "hard", max_retries=20)
    easy = a.synthesize(count=16, max_predicted_diff_error=0.0, out=tmp_path / "easy", max_retries=20)
    for res, want in ((hard, 1.0), (easy, 0.0)):
        accepted = [r for r in res.records if r["accepted"]]
        assert accepted and all(r["diff_error"] == want for r in accepted)
        assert res.retries == sum(r["attempts"] - 1 for r in res.records)
    assert hard.retries > 0
    never = a.synthesize(count=4, min_predicted_diff_error=0.5, max_predicted_diff_error=0.6, out=tmp_path / "none", max_retries=3)
    assert never.rejected == 4 and never.retries == 4 * 3 and never.paths == [None] * 4


def test_resume_after_a_kill_writes_what_a_clean_run_writes(tmp_path):
    a = searched()
    clean = a.synthesize(count=20, out=tmp_path / "clean")
    calls = {"n": 0}
    model = a.predict

    def dies(batch):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return model(batch)

    a.batch_size = 8
    a.predict = dies
    with pytest.raises(KeyboardInterrupt):
        a.synthesize(count=20, out=tmp_path / "killed")
    assert len(list((tmp_path / "killed" / "labels").glob("*.json"))) == 8
    a.predict = model
    resumed = a.synthesize(count=20, out=tmp_path / "killed")
    assert resumed.written == 12
    for k in range(20):
        assert (tmp_path / "clean" / clean.records[k]["image"]).read_bytes() == (
            tmp_path / "killed" / resumed.records[k]["image"]
        ).read_bytes()
    assert clean.records == resumed.records
    with pytest.raises(ValueError, match="other settings"):
        a.synthesize(count=21, out=tmp_path / "killed")


def square_scene(n: int = 6, size: int = 32):
    """A bright square on black per image, its box as the label; a detector that boxes the bright pixels."""
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    boxes = []
    for i in range(n):
        x0, y0, s = 6 + i, 8 + (i % 3), 8 + i % 4
        x[i, :, y0 : y0 + s, x0 : x0 + s] = 255
        boxes.append(torch.tensor([[x0, y0, x0 + s, y0 + s]], dtype=torch.float32))
    return x, boxes


def detect(batch):
    out = []
    for img in batch:
        ys, xs = torch.nonzero(img[0] > 127, as_tuple=True)
        box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).to(torch.float32).view(1, 4) if ys.numel() else None
        out.append(torch.zeros(0, 4) if box is None else box)
    return out


def test_boxes_stay_on_their_objects(tmp_path):
    x, boxes = square_scene()
    a = Analyzer(detect, diff_error=box_iou_error(0.5), ops=["rotate", "translate_x", "zoom_in", "zoom_out", "shear_y", "brighten"],
                 progress=False)  # fmt: skip
    a.search_boundaries(x, boxes, step=0.5)
    assert a.curves["brighten"].mean_diff_error == [0.0, 0.0, 0.0]
    res = a.synthesize(realism=0.0, count=18, min_ops=1, max_ops=3, out=tmp_path / "boxes")
    out, labels, recs = S.load(tmp_path / "boxes")
    checked = 0
    for img, label, rec in zip(out, labels, recs):
        ys, xs = torch.nonzero(img[0] > 127, as_tuple=True)
        if not label or ys.numel() == 0:
            continue
        ((x0, y0, x1, y1),) = label
        # every bright pixel lies inside the moved box (half a pixel of resampling), and the box is no larger than the
        # rotated square's corners allow
        assert xs.min() >= x0 - 1.5 and xs.max() + 1 <= x1 + 1.5 and ys.min() >= y0 - 1.5 and ys.max() + 1 <= y1 + 1.5, rec
        checked += 1
    assert checked >= 10 and res.written == 18


def test_report_has_a_plot_per_op_and_opens_from_disk(tmp_path):
    pytest.importorskip("matplotlib")
    a = searched()
    page = a.render(tmp_path / "report")
    text = page.read_text()
    for op in OPS:
        assert f'src="plots/{op}.png"' in text and (tmp_path / "report" / "plots" / f"{op}.png").stat().st_size > 1000
        assert (tmp_path / "report" / "examples" / f"{op}.png").exists()
    assert not re.search(r'src="(/|https?:)', text)  # relative links only
    res = a.synthesize(count=4, out=tmp_path / "s", preview_html=tmp_path / "s" / "preview.html")
    assert (tmp_path / "s" / "preview.html").read_text().count("<figure>") == 4 and res.written == 4


def test_synthesize_bad_input_names_the_argument(tmp_path):
    a = searched()
    with pytest.raises(ValueError, match="max_ops"):
        a.synthesize(min_ops=4, max_ops=2, out=tmp_path / "x")
    with pytest.raises(ValueError, match="max_predicted_diff_error"):
        a.synthesize(min_predicted_diff_error=0.8, max_predicted_diff_error=0.2, out=tmp_path / "x")
    with pytest.raises(ValueError, match="count"):
        a.synthesize(count=-1, out=tmp_path / "x")
    with pytest.raises(ValueError, match="no boundaries yet"):
        Analyzer(brightness_classifier).synthesize(images(), torch.zeros(8, dtype=torch.long), out=tmp_path / "y")
    json.dumps(a.ranges())


@pytest.mark.parametrize("bad", [300, -1])
def test_mask_ids_outside_8_bits_are_refused_before_anything_is_written(tmp_path, bad):
    a = searched()
    masks = torch.zeros(8, 10, 10, dtype=torch.long)
    masks[3, 2:5, 2:5] = bad
    with pytest.raises(ValueError, match=rf"mask ids must be integers in 0\.\.255 .*8-bit PNG.*{bad}"):
        a.synthesize(images(), masks, count=4, out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_png_writes_the_uint8_image_atomically(tmp_path):
    import numpy as np
    from PIL import Image

    from fastaug.robust.labels import to_uint8

    x = torch.tensor([[[-0.5, 0.0, 0.5, 1.0, 2.0]]]).expand(3, 2, 5)
    assert to_uint8(x)[0, 0].tolist() == [0, 0, 128, 255, 255]
    S._png(tmp_path / "a.png", x)
    S._png(tmp_path / "g.png", x[:1])
    with Image.open(tmp_path / "a.png") as im, Image.open(tmp_path / "g.png") as gray:
        assert im.mode == "RGB" and gray.mode == "L"
        assert torch.equal(torch.from_numpy(np.array(im)).permute(2, 0, 1), to_uint8(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "g.png"]  # no temporaries left
