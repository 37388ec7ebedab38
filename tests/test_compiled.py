"""torch.compile: a Compose call inside a compiled step is one custom op (fastaug::compose): no graph break, the
same output and image gradient as eager."""

import pytest
import torch
import tv

import fastaug
from fastaug import compiled


def _aug(backend="numba"):
    return fastaug.Compose([
        fastaug.RandomResizedCrop(12), fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1), fastaug.RandomHorizontalFlip(),
        fastaug.Normalize([0.5] * 3, [0.25] * 3),
    ], seed=2, backend=backend)  # fmt: skip


def _aug_folded(backend="numba"):
    """A SHARPNESS folded after the crop (plan.Fold), statistics after it: the backward runs the split Plan."""
    return fastaug.Compose([
        fastaug.RandomResizedCrop(12), fastaug.RandomAdjustSharpness(2.0, p=1.0), fastaug.RandomAutocontrast(p=1.0),
        fastaug.Normalize([0.5] * 3, [0.25] * 3),
    ], seed=2, backend=backend)  # fmt: skip


@pytest.mark.parametrize("make", [_aug, _aug_folded], ids=["jitter", "folded"])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_compiled_step_has_no_graph_break_and_matches_eager(backend, make):
    aug = make(backend)
    weight = torch.randn(3, 3, 3, 3)

    def step(x, idx):
        z = aug(x, indices=idx, epoch=1)
        return torch.nn.functional.conv2d(z, weight).square().mean()

    x = torch.rand(4, 3, 16, 16)
    idx = torch.tensor([3, 1, 4, 1])
    explained = torch._dynamo.explain(step)(x, idx)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = step(xe, idx)
    eager.backward()
    fn = torch.compile(step, backend="aot_eager", fullgraph=True)
    got = fn(xc, idx)
    got.backward()
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-6, rtol=1e-5)


def test_custom_op_shapes_dtype_and_opcheck():
    aug = _aug("torch")
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = compiled.run(aug, x, None, 0, "torch")
    assert out.shape == (2, 3, 12, 12) and out.dtype == torch.float32 and torch.equal(out, aug(x))
    key = aug._compiled_key
    args = (torch.rand(2, 3, 16, 16), torch.arange(2), torch.tensor(0), key, "torch", compiled.configuration_id(key))
    torch.library.opcheck(compiled.compose_op, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_a_copied_compose_registers_itself():
    import copy

    aug = _aug("torch")
    other = copy.deepcopy(aug)
    assert other._compiled_key != aug._compiled_key and compiled._pipeline(other._compiled_key) is other


def test_keys_are_never_reused_and_metadata_dies_with_its_compose():
    """Keys come from a counter held by the Compose (ids are reused after collection; keys are not); the fake's cached
    output metadata lives on the Compose, so a collected Compose leaves nothing a new one could meet."""
    import gc

    first = fastaug.Compose([fastaug.RandomResizedCrop(12)], seed=1, backend="torch")
    key = first._compiled_key
    assert compiled._out_meta(key, compiled.configuration_id(key), 3, 16, 16, torch.uint8) == ((3, 12, 12), torch.uint8)
    del first
    gc.collect()
    with pytest.raises(RuntimeError, match="no Compose registered"):
        compiled._pipeline(key)
    for size in (8, 5, 9):  # new Composes (often at a freed address): their own keys and metadata
        aug = fastaug.Compose([fastaug.RandomResizedCrop(size)], seed=1, backend="torch")
        meta = compiled._out_meta(aug._compiled_key, compiled.configuration_id(aug._compiled_key), 3, 16, 16, torch.uint8)
        assert aug._compiled_key > key and meta == ((3, size, size), torch.uint8)
    assert not hasattr(compiled, "_META")


def test_a_compose_changed_after_tracing_raises_instead_of_a_wrong_shape():
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.RandomHorizontalFlip()], seed=2, backend="torch")
    torch._dynamo.reset()
    step = torch.compile(lambda x: aug(x) * 2, backend="aot_eager", fullgraph=True)
    x = torch.rand(2, 3, 16, 16)
    assert step(x).shape == (2, 3, 12, 12)
    aug.transforms[1] = fastaug.RandomVerticalFlip()  # same output shape: runs (eager inside the op), current draws
    torch.testing.assert_close(step(x), aug(x) * 2)
    aug.transforms[0] = fastaug.RandomResizedCrop(8)
    with pytest.raises(RuntimeError, match=r"gives \[3, 8, 8\] torch.float32 per sample where the traced graph expects \[3, 12, 12\]"):
        step(x)
    torch._dynamo.reset()
    step = torch.compile(lambda x: aug(x) * 2, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(step(x), aug(x) * 2)


def test_each_graph_checks_the_shape_it_was_traced_with():
    """Graph A traced, the Compose changed, graph B traced: each node carries its own configuration, so A raises (its
    expected [3, 12, 12]; the latest trace's [3, 8, 8] would have let it through) and B runs; changing the Compose
    back makes A run again."""
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.RandomHorizontalFlip()], seed=2, backend="torch")
    torch._dynamo.reset()
    x = torch.rand(2, 3, 16, 16)
    step_a = torch.compile(lambda x: aug(x) * 2, backend="aot_eager", fullgraph=True)
    assert step_a(x).shape == (2, 3, 12, 12)
    aug.transforms[0] = fastaug.RandomResizedCrop(8)
    step_b = torch.compile(lambda x: aug(x) + 1, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(step_b(x), aug(x) + 1)
    with pytest.raises(RuntimeError, match=r"gives \[3, 8, 8\] torch.float32 per sample where the traced graph expects \[3, 12, 12\]"):
        step_a(x)
    torch.testing.assert_close(step_b(x), aug(x) + 1)
    aug.transforms[0] = fastaug.RandomResizedCrop(12)
    torch.testing.assert_close(step_a(x), aug(x) * 2)
    with pytest.raises(RuntimeError, match=r"gives \[3, 12, 12\] torch.float32 per sample where the traced graph expects \[3, 8, 8\]"):
        step_b(x)


def _functional_step(backend):
    from fastaug import functional as F

    def step(x, f):
        y = F.adjust_brightness(x, f, backend=backend)
        y = F.resized_crop(y, 2, 3, 10, 9, [8, 7], backend=backend)
        y = F.rotate(y, f * 10, "bilinear", backend=backend)
        y = F.normalize(y, [0.5] * 3, [0.2] * 3, backend=backend)
        return y.square().mean()

    return step


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_functional_ops_compile_without_graph_breaks_with_magnitude_gradients(backend):
    """Each fastaug.functional call is one fastaug::functional node (33 / 63 graph breaks for this step before, torch /
    numba backend with suppress_errors); forward, image gradient and per-sample magnitude gradient equal eager."""
    step = _functional_step(backend)
    x, f = torch.rand(4, 3, 16, 16), torch.rand(4) + 0.5
    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(x, f)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    xe, fe, xc, fc = x.clone().requires_grad_(), f.clone().requires_grad_(), x.clone().requires_grad_(), f.clone().requires_grad_()
    eager = step(xe, fe)
    eager.backward()
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(xc, fc)
    got.backward()
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(fc.grad, fe.grad, atol=1e-7, rtol=1e-5)
    assert fc.grad.abs().sum() > 0


def test_functional_ops_that_set_shape_or_dtype_compile_to_the_eager_result():
    """The fake implementation's rules (crop, resized_crop, rgb_to_grayscale, to_dtype, normalize of uint8), an
    unbatched image, and integer tensors (no gradient)."""
    from fastaug import functional as F

    def step(x, angle, top):
        a = F.crop(x, top, 1, 7, 9, backend="torch")
        b = F.rgb_to_grayscale(F.resized_crop(x, 0, 0, 12, 12, 6, backend="torch"), backend="torch")
        c = F.normalize(F.to_dtype(x, torch.float64, scale=True, backend="torch"), [0.5], [0.25], backend="torch")
        d = F.affine(x[0].float() / 255, angle[0], [2.0, -1.0], 1.1, angle[1:], backend="torch")
        e = F.normalize(x, [0.4, 0.5, 0.6], [0.2, 0.2, 0.2], backend="torch")
        return a, b, c, d, e

    x = torch.randint(0, 256, (2, 3, 14, 15), dtype=torch.uint8)
    angle, top = torch.tensor([10.0, -3.0, 5.0]), torch.tensor([1, 2])
    torch._dynamo.reset()
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(x, angle, top)
    for g, e in zip(got, step(x, angle, top), strict=True):
        assert g.shape == e.shape and g.dtype == e.dtype
        torch.testing.assert_close(g, e)
    assert [g.shape[-3:] for g in got] == [(3, 7, 9), (1, 6, 6), (3, 14, 15), (3, 14, 15), (3, 14, 15)]
    assert got[2].dtype == torch.float64 and got[4].dtype == torch.float32


def test_functional_custom_op_opcheck():
    from fastaug import functional as F

    x, f = torch.rand(2, 3, 9, 10), torch.rand(2) + 0.5
    key = compiled._spec_key("adjust_contrast", ((compiled._TENSOR, 0), (compiled._TENSOR, 1)), (("backend", "torch"),))
    torch.testing.assert_close(compiled.functional_op([x, f], key), F.adjust_contrast(x, f, backend="torch"))
    torch.library.opcheck(compiled.functional_op, ([x, f], key), test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_image_and_mask_compile_as_one_custom_op(backend):
    """aug(x, mask=m) as fastaug::compose_mask: no graph break; image, mask and image gradient equal the eager call."""
    ops = [fastaug.RandomResizedCrop(12), fastaug.ColorJitter(0.4, 0.4), fastaug.RandomRotation(20)]
    aug = fastaug.Compose(ops, seed=2, backend=backend)
    x, m = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4, 2, 16, 16))

    def step(x, m):
        out = compiled.run_with_mask(aug, x, m, torch.tensor([5, 6, 7, 8]), 1, backend)
        return out["image"].square().mean(), out["mask"]

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(x, m)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = aug(xe, mask=m, indices=torch.tensor([5, 6, 7, 8]), epoch=1)
    ref["image"].square().mean().backward()
    loss, mask = torch.compile(step, backend="aot_eager", fullgraph=True)(xc, m)
    loss.backward()
    torch.testing.assert_close(loss, ref["image"].detach().square().mean())
    assert torch.equal(mask, ref["mask"]) and mask.shape == (4, 2, 12, 12)
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-7, rtol=1e-5)


def test_other_compose_calls_run_eagerly_with_one_break_at_the_boundary():
    """Boxes (a per-sample count of survivors), keypoints, records, nested structures: compiled.eager runs the call
    eagerly; the graph breaks only where it is called (before: 43 / 62 breaks inside fastaug for a mask call, 29 / 43 for
    return_record, torch / numba backend with suppress_errors)."""
    aug = _aug("torch")
    x = torch.rand(4, 3, 16, 16)
    boxes, labels = torch.tensor([[[1.0, 2.0, 9.0, 10.0]]] * 4), torch.tensor([[1]] * 4)

    def step(x):
        out = compiled.eager(aug, x, bboxes=boxes, labels=labels)
        y, record = compiled.eager(aug, x, return_record=True)
        return out["image"].sum() + sum(b.sum() for b in out["bboxes"]) + y.sum(), record

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(x)
    assert explained.graph_break_count <= 2  # one per eager call at most (none counted where no graph precedes it)
    assert all("disable" in str(b.reason) for b in explained.break_reasons)  # nothing breaks inside fastaug
    got, record = torch.compile(step, backend="aot_eager")(x)
    want, _ = step(x)
    torch.testing.assert_close(got, want)
    assert torch.equal(record.replay(x), aug(x))


# ------------------------------------------------------------------------------- boxes and keypoints (fastaug::compose_targets)

TV = tv.load()


def _target_cases():
    b = 4
    boxes = [torch.tensor([[1.0, 2.0, 9.0, 10.0], [3.0, 3.0, 15.0, 12.0], [0.0, 0.0, 2.0, 2.0]])] * b
    labels = [torch.tensor([1, 2, 3])] * b
    points = [torch.tensor([[1.0, 2.0], [5.0, 6.0], [15.0, 1.0]])] * b
    mask = torch.randint(0, 3, (b, 16, 16), generator=torch.Generator().manual_seed(1))
    cases = {
        "boxes-labels": dict(bboxes=boxes, labels=labels),
        "keywords-tensors-mask": dict(image=True, bboxes=torch.stack(boxes), labels=torch.stack(labels), mask=mask),
        "keypoints": dict(keypoints=points),
        "boxes-keypoints-float64": dict(bboxes=[x.double() for x in boxes], keypoints=[p.double() for p in points]),
    }
    if TV is not None:
        from torchvision import tv_tensors

        cases["tv-boxes-labels"] = dict(
            bboxes=[tv_tensors.BoundingBoxes(x, format="XYXY", canvas_size=(16, 16)) for x in boxes], labels=labels
        )
        cases["tv-cxcywh-keypoints"] = dict(
            bboxes=[tv_tensors.BoundingBoxes(x, format="CXCYWH", canvas_size=(16, 16)) for x in boxes],
            keypoints=[tv_tensors.KeyPoints(p, canvas_size=(16, 16)) for p in points],
        )
    return cases


TARGET_CASES = _target_cases()


def _same(a, b) -> None:
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            _same(u, v)
    elif a is None:
        assert b is None
    else:
        assert type(a) is type(b) and a.dtype == b.dtype and torch.equal(a, b)
        for attr in ("format", "canvas_size", "clamping_mode"):
            assert getattr(a, attr, None) == getattr(b, attr, None)


def _target_step(aug, kwargs):
    kw = dict(kwargs)
    keyword = kw.pop("image", False)

    def step(x):
        x = x * 1.0  # a graph before the call, and one after: a break at the call would show
        out = aug(image=x, **kw) if keyword else aug(x, **kw, indices=torch.tensor([5, 6, 7, 8]), epoch=1)
        loss = out["image"].square().mean()
        for name in ("bboxes", "keypoints"):
            loss = loss + sum(t.sum() for t in out.get(name) or [])
        return loss, out

    return step


@pytest.mark.parametrize("name", sorted(TARGET_CASES))
def test_image_with_boxes_and_keypoints_compiles_as_one_custom_op(name):
    """aug(x, bboxes=, labels=, keypoints=, mask=) and aug(image=x, ...) with per-sample lists or [B,N,K] tensors,
    plain or tv_tensors: one fastaug::compose_targets node, no graph break where the graph may hold data-dependent
    sizes (the surviving boxes: fullgraph=True or capture_dynamic_output_shape_ops); the same dict as eager (types,
    tv_tensors metadata on the output canvas, values). Before: one break at fastaug's boundary (compiled.eager)."""
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12, scale=(0.3, 1.0)), fastaug.ColorJitter(0.4), fastaug.RandomHorizontalFlip(),
                           fastaug.RandomRotation(30)], seed=2, backend="torch")  # fmt: skip
    step = _target_step(aug, TARGET_CASES[name])
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    # tv_tensors inputs: torch's first-run aliasing check of custom ops fails on them (compiled.tv_targets_allowed)
    with torch._functorch.config.patch(check_custom_op_aliasing=not name.startswith("tv")):
        torch._dynamo.reset()
        with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
            explained = torch._dynamo.explain(step)(x)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
        want = step(x)
        torch._dynamo.reset()
        got = torch.compile(step, backend="aot_eager", fullgraph=True)(x)
    _same(got, want)
    if "boxes" in name:
        assert sum(len(b) for b in want[1]["bboxes"]) < 4 * 3  # some boxes dropped: per-sample sizes differ from the input's


def test_boxes_compile_with_the_image_gradient():
    ops = [fastaug.RandomResizedCrop(12), fastaug.ColorJitter(0.4, 0.4), fastaug.RandomRotation(20)]
    step = _target_step(fastaug.Compose(ops, seed=2, backend="torch"), TARGET_CASES["boxes-labels"])
    x = torch.rand(4, 3, 16, 16)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = step(xe)
    want[0].backward()
    torch._dynamo.reset()
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(xc)
    got[0].backward()
    torch.testing.assert_close(got[0], want[0])
    _same(got[1]["bboxes"], want[1]["bboxes"])
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-7, rtol=1e-5)


def test_without_dynamic_sizes_boxes_run_eagerly_and_keypoints_stay_one_node():
    """Under torch.compile's defaults (no fullgraph, capture_dynamic_output_shape_ops off) dynamo breaks at any op whose
    output size depends on data: a boxes call runs eagerly (one break, at fastaug's boundary: compiled.eager, as
    before), a keypoints-only call (sizes as they came) stays one node with no break."""
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.RandomHorizontalFlip()], seed=2, backend="torch")
    x = torch.rand(4, 3, 16, 16)
    torch._dynamo.reset()
    boxes = torch._dynamo.explain(_target_step(aug, TARGET_CASES["boxes-labels"]))(x)
    assert boxes.graph_break_count == 1 and "disable" in str(boxes.break_reasons[0].reason)
    torch._dynamo.reset()
    points = torch._dynamo.explain(_target_step(aug, TARGET_CASES["keypoints"]))(x)
    assert points.graph_break_count == 0 and points.graph_count == 1
    step = _target_step(aug, TARGET_CASES["boxes-labels"])
    torch._dynamo.reset()
    _same(torch.compile(step, backend="eager")(x), step(x))


@pytest.mark.skipif(TV is None, reason="torchvision not installed")
def test_tv_targets_run_eagerly_under_torch_aliasing_check():
    """torch._functorch.config.check_custom_op_aliasing (on by default) fails on tv_tensors graph inputs in a graph
    holding a custom op: with it on, tv_tensors boxes / keypoints run eagerly (one break at fastaug's boundary, as
    before), and the step compiles (inductor, default backend: checked by hand; eager backend here)."""
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.RandomHorizontalFlip()], seed=2, backend="torch")
    x = torch.rand(4, 3, 16, 16)
    step = _target_step(aug, TARGET_CASES["tv-cxcywh-keypoints"])
    with torch._functorch.config.patch(check_custom_op_aliasing=True), torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        torch._dynamo.reset()
        explained = torch._dynamo.explain(step)(x)
        assert explained.graph_break_count == 1 and "disable" in str(explained.break_reasons[0].reason)
        torch._dynamo.reset()
        _same(torch.compile(step, backend="eager")(x), step(x))


def test_keyword_image_call_compiles_to_the_eager_dict():
    aug = _aug("torch")
    x = torch.rand(4, 3, 16, 16)

    def step(x):
        return aug(image=x * 1.0)

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    _same(torch.compile(step, backend="aot_eager", fullgraph=True)(x), step(x))


def test_targets_custom_op_opcheck():
    aug = fastaug.Compose([fastaug.RandomResizedCrop(12), fastaug.RandomRotation(20)], seed=2, backend="torch")
    key = aug._compiled_key
    boxes = [torch.tensor([[1.0, 2.0, 9.0, 10.0], [0.0, 0.0, 2.0, 2.0]])] * 2
    spec = compiled._targets_key((True, "plain", True, "plain"))
    x, mask, labels, points = torch.rand(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)), [torch.tensor([1, 2])] * 2, [torch.ones(1, 2)] * 2
    args = (x, [mask], boxes, labels, points, torch.arange(2), torch.tensor(0), key, "torch", compiled.configuration_id(key), spec)
    out = compiled.compose_targets_op(*args)
    want = aug(x, mask=mask, bboxes=boxes, labels=labels, keypoints=points, indices=torch.arange(2))
    _same(list(out), [want["image"], [want["mask"]], want["bboxes"], want["labels"], want["keypoints"], want["keypoints_visible"]])
    checks = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(compiled.compose_targets_op, args, test_utils=checks)


def test_tv_boxes_of_several_image_sizes_compile_with_fullgraph():
    """tv_tensors boxes (aliasing check off, data-dependent sizes allowed) at three image sizes under fullgraph=True:
    the node's constant holds no canvas size (symbolic under dynamic shapes), and the outputs equal eager."""
    import tv

    if tv.load() is None:
        pytest.skip("torchvision not installed")
    from torchvision import tv_tensors

    aug = fastaug.Compose([fastaug.RandomResizedCrop(12, scale=(0.3, 1.0)), fastaug.RandomHorizontalFlip()], seed=2, backend="torch")
    base = torch.tensor([[1.0, 2.0, 9.0, 10.0], [3.0, 3.0, 12.0, 12.0], [0.0, 0.0, 6.0, 6.0]])

    def step(x, boxes):
        return aug(x, bboxes=boxes, indices=torch.tensor([5, 6, 7, 8]), epoch=1)

    with torch._functorch.config.patch(check_custom_op_aliasing=False), \
            torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):  # fmt: skip
        torch._dynamo.reset()
        compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
        for s in (16, 20, 24):
            x = torch.rand(4, 3, s, s)
            boxes = [tv_tensors.BoundingBoxes(base, format="XYXY", canvas_size=(s, s)) for _ in range(4)]
            got, want = compiled(x, boxes), step(x, boxes)
            for g, w in zip(got["bboxes"], want["bboxes"], strict=True):
                assert torch.equal(g, w) and type(g) is type(w) and tuple(g.canvas_size) == tuple(w.canvas_size) == (12, 12)
