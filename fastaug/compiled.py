"""``torch.compile`` without graph breaks: a Compose call as one torch custom op.

Under ``torch.compile`` (``torch.compiler.is_compiling()``), ``Compose(x, indices=..., epoch=...)`` on an image
batch (no targets, no record) dispatches to ``fastaug::compose``: one opaque node in the graph that draws the
parameters, compiles the Plan and runs the fused passes (numba / triton kernels) eagerly. Its fake
implementation gives the output's shape and dtype (from a one-sample Plan drawn on the host, cached per input
shape), and its autograd registration runs ``fastaug::compose_backward``: the Plan drawn again from the same
(seed, epoch, indices) (draws are a pure function of them) and the fused backward of :mod:`fastaug.autograd`, so
gradients reach the image (magnitudes drawn inside the op carry none). Dynamo never traces into fastaug: no
graph break inside fastaug, on every backend.

Calls with targets: :func:`run_with_mask` (image and masks, ``fastaug::compose_mask``: no graph break, image gradient);
:func:`run_with_targets` (boxes, labels, keypoints, with masks or without: ``fastaug::compose_targets``, see below; the
surviving boxes have data-dependent sizes, so with boxes it needs a graph that may hold them); :func:`eager` for every
other call (``return_record``, tv_tensors images, nested structures, integer targets): run eagerly, one graph break at
fastaug's boundary and none inside. ``Compose.forward`` routes calls made while compiling to them. fastaug.functional
ops: see below. Gradients reach the image only: magnitudes read from the transforms inside the op (a learnable one,
``fastaug.learn``) get none under torch.compile.

Keys: a Compose holds its key (``_compiled_key``, from a counter: never reused, unlike ``id``) and the registry maps
keys to Composes weakly, so a collected Compose leaves nothing behind and a new one never meets its entries.

Output metadata: at trace time each node gets the Compose's configuration (the transforms' repr) as a constant
argument, a number the Compose assigns per distinct configuration (``configuration_id``). The fake implementation
records the output metadata of that configuration and input kind on the Compose (dropped with it; an entry is never
overwritten), and every eager run checks its output against the entry of its own node's configuration: a Compose
changed after a graph was traced raises in that graph (reset / compile again) instead of feeding it a tensor of
another shape, while a graph traced after the change runs. (The metadata itself cannot be the constant: under
dynamic shapes the input's size is symbolic while tracing, and a constant result needs concrete arguments.)
"""

from __future__ import annotations

import inspect
import itertools
import weakref

import torch

from fastaug import autograd
from fastaug.plan import unfold

_PIPELINES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_KEYS = itertools.count(1)
_META_ATTR = "_compiled_meta"  # on the Compose: {(configuration id, C, H, W, dtype): ((C', H', W'), dtype')}
_CONFIG_ATTR = "_compiled_configurations"  # on the Compose: {configuration (repr): its id}


def key_of(aug) -> int:
    """The registry key of a Compose (assigned on first use; constant for its life, so graphs are reused)."""
    key = getattr(aug, "_compiled_key", None)
    if key is None or _PIPELINES.get(key) is not aug:
        key = next(_KEYS)
        aug._compiled_key = key
        _PIPELINES[key] = aug
    return key


def _pipeline(key: int):
    aug = _PIPELINES.get(key)
    if aug is None:
        raise RuntimeError(f"fastaug::compose: no Compose registered under key {key}")
    return aug


def _plan(aug, x: torch.Tensor, indices: torch.Tensor, epoch: torch.Tensor):
    from fastaug.compiler import compile_plan

    idx = indices.to(device=x.device, dtype=torch.int64)
    calls = aug.draw(x, idx, int(epoch))
    return compile_plan(calls, tuple(x.shape), x.dtype, x.device)


@torch.library.custom_op("fastaug::compose", mutates_args=())
def compose_op(x: torch.Tensor, indices: torch.Tensor, epoch: torch.Tensor, key: int, backend: str, config: int) -> torch.Tensor:
    """Compose ``key`` on the batch ``x`` [B,C,H,W] (eager: draws, Plan, fused passes); ``config``: the configuration
    the node was traced with (:func:`configuration_id`), whose output metadata the result must have."""
    aug = _pipeline(key)
    out = aug._run(x, indices, int(epoch), backend)[0]
    _check_meta(aug, config, x, out)
    return out.clone() if out is x else out  # a custom op may not return its input


@compose_op.register_fake
def _compose_fake(x, indices, epoch, key, backend, config):
    b, c, h, w = x.shape
    (oc, oh, ow), dtype = _out_meta(key, config, int(c), int(h), int(w), x.dtype)
    return x.new_empty((b, oc, oh, ow), dtype=dtype)


def _configuration(aug) -> str:
    return repr(aug.transforms)


@torch._dynamo.assume_constant_result
def configuration_id(key: int) -> int:
    """The number of the Compose's current configuration (one per distinct transforms' repr, for the Compose's life):
    a constant of the graph being traced."""
    aug = _pipeline(key)
    ids = aug.__dict__.setdefault(_CONFIG_ATTR, {})
    return ids.setdefault(_configuration(aug), len(ids) + 1)


def _out_meta(key: int, config: int, c: int, h: int, w: int, dtype: torch.dtype):
    """(channels, height, width) and dtype of the Compose's output for [*, C, H, W] inputs under configuration
    ``config``: a one-sample Plan, recorded on the Compose per configuration and input kind (never overwritten)."""
    aug = _pipeline(key)
    cache = aug.__dict__.setdefault(_META_ATTR, {})
    hit = cache.get((config, c, h, w, dtype))
    if hit is None:
        if configuration_id(key) != config:
            raise RuntimeError(f"fastaug::compose: the Compose changed while torch.compile traced it (configuration {config})")
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily():
            x = torch.zeros(1, c, h, w, dtype=dtype)
            plan = _plan(aug, x, torch.zeros(1, dtype=torch.int64), torch.tensor(0))
            hit = cache[(config, c, h, w, dtype)] = ((plan.epilogue.out_channels, *plan.out_size), plan.epilogue.out_dtype)
    return hit


def _check_meta(aug, config: int, x: torch.Tensor, out: torch.Tensor) -> None:
    """The eager output against the metadata its node's configuration was traced with (when it was: the fake ran)."""
    hit = aug.__dict__.get(_META_ATTR, {}).get((config, *(int(s) for s in x.shape[1:]), x.dtype))
    if hit is not None and (tuple(out.shape[1:]), out.dtype) != hit:
        (shape, dtype) = hit
        raise RuntimeError(
            f"fastaug::compose: the Compose gives [{', '.join(map(str, out.shape[1:]))}] {out.dtype} per sample where the traced "
            f"graph expects [{', '.join(map(str, shape))}] {dtype}: it changed after torch.compile traced it "
            "(call torch._dynamo.reset() or compile again)"
        )


class _autograd_dispatch:
    """Re-enable the autograd dispatch keys that a custom op's implementation runs without."""

    def __enter__(self):
        keys = (torch._C.DispatchKey.AutogradFunctionality, torch._C.DispatchKey.ADInplaceOrView)
        self._guards = [torch._C._SetExcludeDispatchKeyGuard(k, False) for k in keys]
        for g in self._guards:
            g.__enter__()

    def __exit__(self, *exc):
        for g in reversed(self._guards):
            g.__exit__(*exc)


@torch.library.custom_op("fastaug::compose_backward", mutates_args=())
def compose_backward_op(
    grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, epoch: torch.Tensor, key: int, backend: str
) -> torch.Tensor:
    """The gradient of ``fastaug::compose`` to its image: the Plan drawn again, the fused backward."""
    from fastaug import engine

    aug = _pipeline(key)
    plan = unfold(_plan(aug, x, indices, epoch))  # as autograd.execute runs it: the backward passes run split stages
    spec = autograd._Spec(plan, engine.resolve_backend(backend, x.device), aug.straight_through)
    tensors = autograd.plan_tensors(plan)
    with _autograd_dispatch():  # a custom op runs below autograd: the reference backward needs it back
        gx, _ = autograd.plan_backward(spec, x, tensors, grad.contiguous(), True, [False] * len(tensors))
    return torch.zeros_like(x) if gx is None else gx


@compose_backward_op.register_fake
def _compose_backward_fake(grad, x, indices, epoch, key, backend):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, indices, epoch, key, backend, _ = inputs
    ctx.save_for_backward(x, indices, epoch)
    ctx.key, ctx.backend = key, backend


def _backward(ctx, grad):
    x, indices, epoch = ctx.saved_tensors
    return compose_backward_op(grad, x, indices, epoch, ctx.key, ctx.backend), None, None, None, None, None


compose_op.register_autograd(_backward, setup_context=_setup_context)


def run(aug, x: torch.Tensor, indices, epoch, backend: str) -> torch.Tensor:
    """A Compose call inside a compiled region: one ``fastaug::compose`` node."""
    if x.dim() == 3:
        return run(aug, x.unsqueeze(0), indices, epoch, backend)[0]
    idx = torch.arange(x.shape[0], device=x.device) if indices is None else torch.as_tensor(indices, device=x.device)
    ep = epoch if isinstance(epoch, torch.Tensor) else torch.tensor(epoch, dtype=torch.int64)
    return compose_op(x, idx, ep, aug._compiled_key, backend, configuration_id(aug._compiled_key))


@torch.library.custom_op("fastaug::compose_mask", mutates_args=())
def compose_mask_op(
    x: torch.Tensor, mask: torch.Tensor, indices: torch.Tensor, epoch: torch.Tensor, key: int, backend: str, config: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose ``key`` on the batch ``x`` and its masks (``aug(x, mask=mask)``, eager): (image, mask)."""
    aug = _pipeline(key)
    out = aug._augment(x, mask, None, None, None, indices, int(epoch), False, backend)
    _check_meta(aug, config, x, out["image"])
    image, moved = out["image"], out["mask"]
    return image.clone() if image is x else image, moved.clone() if moved is mask else moved


@compose_mask_op.register_fake
def _compose_mask_fake(x, mask, indices, epoch, key, backend, config):
    image = _compose_fake(x, indices, epoch, key, backend, config)
    return image, mask.new_empty((*mask.shape[:-2], *image.shape[-2:]))


def _mask_backward(ctx, grad, grad_mask):
    return (*_backward(ctx, grad)[:1], None, None, None, None, None, None)


def _mask_setup_context(ctx, inputs, output):
    x, _, indices, epoch, key, backend, config = inputs
    _setup_context(ctx, (x, indices, epoch, key, backend, config), output)


compose_mask_op.register_autograd(_mask_backward, setup_context=_mask_setup_context)


def run_with_mask(aug, x: torch.Tensor, mask: torch.Tensor, indices, epoch, backend: str) -> dict:
    """``aug(x, mask=mask)`` on a batch [B,C,H,W] with masks [B,H,W] or [B,K,H,W] inside a compiled region: one
    ``fastaug::compose_mask`` node, ``{"image", "mask"}`` as the eager call returns."""
    idx = torch.arange(x.shape[0], device=x.device) if indices is None else torch.as_tensor(indices, device=x.device)
    ep = epoch if isinstance(epoch, torch.Tensor) else torch.tensor(epoch, dtype=torch.int64)
    image, moved = compose_mask_op(x, mask, idx, ep, aug._compiled_key, backend, configuration_id(aug._compiled_key))
    return {"image": image, "mask": moved}


# ----------------------------------------------------------------------------- image with boxes, labels, keypoints
#
# ``aug(x, bboxes=..., labels=..., keypoints=..., mask=...)`` (or ``aug(image=x, ...)``) on a batch, with one box /
# keypoint tensor per sample (a list or a [B,N,K] tensor; plain float tensors or tv_tensors.BoundingBoxes / KeyPoints)
# is one fastaug::compose_targets node. A sample's surviving box count is only known when the op runs: the fake gives
# each sample's boxes (and labels) an unbacked size (``new_dynamic_size``), so the graph does not break on it. The
# tv_tensors metadata (format, clamping mode) is a constant of the node (``_targets_key``); the wrapper
# rebuilds BoundingBoxes / KeyPoints on the output canvas in the graph (torchvision's ``wrap`` is compiler-disabled;
# the constructor traces).

# the tv_tensors attributes kept (those the type has); not canvas_size: the input's is the image's size (a symbolic
# int under dynamic shapes, which assume_constant_result cannot take), the output's the Plan's
_TV_META = ("format", "clamping_mode")
_TARGET_SPECS: dict[int, tuple] = {}
_TARGET_KEYS: dict[tuple, int] = {}


@torch._dynamo.assume_constant_result
def _targets_key(spec: tuple) -> int:
    """The key of a call's constant part: (mask?, boxes kind, labels?, keypoints kind), a kind being None, "plain" or
    (tv type name, ((attribute, value), ...) per sample)."""
    if spec not in _TARGET_KEYS:
        _TARGET_KEYS[spec] = len(_TARGET_KEYS) + 1
        _TARGET_SPECS[_TARGET_KEYS[spec]] = spec
    return _TARGET_KEYS[spec]


def _typed(tensors: list, kind, canvas: tuple[int, int]):
    """Plain tensors back to the tv_tensors they were, on the input image's ``canvas`` (op body: fastaug's eager code
    reads their metadata)."""
    if kind is None:
        return None
    if kind == "plain":
        return list(tensors)
    from fastaug import tv_types

    cls = getattr(tv_types.tv_module(), kind[0])
    return [cls(t, **dict(meta), canvas_size=canvas) for t, meta in zip(tensors, kind[1], strict=True)]


def _fresh(t: torch.Tensor, inputs) -> torch.Tensor:
    """A custom op's output may not alias an input."""
    return t.clone() if any(t is i or t._base is i or (t._base is not None and t._base is i._base) for i in inputs) else t


@torch.library.custom_op("fastaug::compose_targets", mutates_args=())
def compose_targets_op(
    x: torch.Tensor,
    mask: list[torch.Tensor],
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    points: list[torch.Tensor],
    indices: torch.Tensor,
    epoch: torch.Tensor,
    key: int,
    backend: str,
    config: int,
    spec: int,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Compose ``key`` on the batch ``x`` with its targets (eager: ``aug(x, mask=, bboxes=, labels=, keypoints=)``) ->
    (image, [mask], boxes per sample, labels per sample, keypoints per sample, keypoints_visible per sample); absent
    targets are empty lists. ``spec``: :func:`_targets_key`."""
    from fastaug import tv_types

    aug = _pipeline(key)
    has_mask, box_kind, has_labels, point_kind = _TARGET_SPECS[spec]
    canvas = (int(x.shape[-2]), int(x.shape[-1]))
    out = aug._augment(x, mask[0] if has_mask else None, _typed(boxes, box_kind, canvas), list(labels) if has_labels else None,
                       _typed(points, point_kind, canvas), indices, int(epoch), False, backend)  # fmt: skip
    _check_meta(aug, config, x, out["image"])
    result = (
        out["image"], [out["mask"]] if has_mask else [], [tv_types.plain(b) for b in out["bboxes"]] if box_kind else [],
        list(out["labels"]) if has_labels else [], [tv_types.plain(k) for k in out["keypoints"]] if point_kind else [],
        list(out["keypoints_visible"]) if point_kind == "plain" else [],
    )  # fmt: skip
    _check_targets(result, boxes, labels, points)
    inputs = [x, *mask, *boxes, *labels, *points]
    return tuple(_fresh(r, inputs) if isinstance(r, torch.Tensor) else [_fresh(t, inputs) for t in r] for r in result)


def _check_targets(result, boxes, labels, points) -> None:
    """The eager targets against the fake's rule: boxes [n_i, K] and labels [n_i, ...] of their input dtypes, keypoints
    as they came."""
    _, _, out_boxes, out_labels, out_points, _ = result
    for i, (o, b) in enumerate(zip(out_boxes, boxes, strict=True)):
        lab = out_labels[i] if out_labels else None
        want = None if lab is None else ((o.shape[0], *labels[i].shape[1:]), labels[i].dtype)
        if o.shape[1:] != b.shape[1:] or o.dtype != b.dtype or (lab is not None and (lab.shape, lab.dtype) != want):
            raise RuntimeError(f"fastaug::compose_targets: sample {i}'s boxes came back {list(o.shape)} {o.dtype}, or their labels "
                               "differ from the traced rule")  # fmt: skip
    for i, (o, k) in enumerate(zip(out_points, points, strict=True)):
        if o.shape != k.shape or o.dtype != k.dtype:
            raise RuntimeError(f"fastaug::compose_targets: sample {i}'s keypoints came back {list(o.shape)} {o.dtype}, not {list(k.shape)}")


@compose_targets_op.register_fake
def _compose_targets_fake(x, mask, boxes, labels, points, indices, epoch, key, backend, config, spec):
    image = _compose_fake(x, indices, epoch, key, backend, config)
    ctx = torch.library.get_ctx()
    out_boxes, out_labels = [], []
    for i, b in enumerate(boxes):
        n = ctx.new_dynamic_size()  # the boxes that survive: known when the op runs
        out_boxes.append(b.new_empty((n, *b.shape[1:])))
        if labels:
            out_labels.append(labels[i].new_empty((n, *labels[i].shape[1:])))
    visible = [k.new_empty(k.shape[:-1], dtype=torch.bool) for k in points] if _TARGET_SPECS[spec][3] == "plain" else []
    return (image, [m.new_empty((*m.shape[:-2], *image.shape[-2:])) for m in mask], out_boxes, out_labels,
            [torch.empty_like(k) for k in points], visible)  # fmt: skip


def _targets_setup(ctx, inputs, output):
    x, mask, boxes, labels, points, indices, epoch, key, backend, config, _ = inputs
    _setup_context(ctx, (x, indices, epoch, key, backend, config), output)
    ctx.list_lengths = (len(mask), len(boxes), len(labels), len(points))


def _targets_backward(ctx, grad, *target_grads):
    """The image gradient (targets carry none); the same structure as the inputs (a None per listed tensor)."""
    return (_backward(ctx, grad)[0], *([None] * n for n in ctx.list_lengths), *([None] * 6))


compose_targets_op.register_autograd(_targets_backward, setup_context=_targets_setup)


def _per_sample(value, b: int, kind: str | None):
    """``value`` as a list of ``b`` tensors of one kind (None: plain; else that tv_tensors type), or None when it is
    not one (the call then runs eagerly)."""
    from fastaug import tv_types

    if kind is None and type(value) is torch.Tensor and value.dim() >= 2 and value.shape[0] == b:
        return list(value.unbind(0))
    if isinstance(value, (list, tuple)) and len(value) == b and all(isinstance(t, torch.Tensor) for t in value):
        if all((type(t) is torch.Tensor) if kind is None else (tv_types.tv_kind(t) == kind) for t in value):
            return list(value)
    return None


@torch._dynamo.assume_constant_result
def tv_targets_allowed() -> bool:
    """Whether tv_tensors targets may go into the node: torch's first-run check of custom ops' aliasing
    (``torch._functorch.config.check_custom_op_aliasing``, on by default) fails on any graph input that is a
    ``__torch_function__`` subclass (tv_tensors are) in a graph holding a custom op (aot_eager, inductor); with it on,
    such calls run eagerly (one break at fastaug's boundary)."""
    return not getattr(torch._functorch.config, "check_custom_op_aliasing", False)


def _target_kind(value, b: int, typed: str, float_only: bool):
    """(per-sample tensors as the op takes them, their kind for the spec) or None."""
    for kind in (None, typed) if tv_targets_allowed() else (None,):
        found = _per_sample(value, b, kind)
        if found is not None and (not float_only or all(t.is_floating_point() for t in found)):
            if kind is None:
                return found, "plain"
            meta = tuple(tuple((a, _meta_value(getattr(t, a))) for a in _TV_META if hasattr(t, a)) for t in found)
            return [torch.ops.aten.alias.default(t) for t in found], (typed, meta)  # plain (dynamo traces no as_subclass)
    return None


def _meta_value(v):
    return v.name if hasattr(v, "name") and not isinstance(v, str) else (tuple(int(s) for s in v) if isinstance(v, (tuple, list)) else v)


def _rewrap(tensors: list, kind, canvas: tuple[int, int]) -> list:
    if kind == "plain":
        return tensors
    from fastaug import tv_types

    cls = getattr(tv_types.tv_module(), kind[0])
    return [cls(t, **dict(meta), canvas_size=canvas) for t, meta in zip(tensors, kind[1], strict=True)]


@torch._dynamo.assume_constant_result
def dynamic_sizes_allowed() -> bool:
    """Whether the graph being traced may hold an op whose output size depends on data (``fullgraph=True`` or
    ``torch._dynamo.config.capture_dynamic_output_shape_ops``); else dynamo breaks the graph at such an op."""
    ctx = torch._guards.TracingContext.try_get()
    env = None if ctx is None or ctx.fake_mode is None else ctx.fake_mode.shape_env
    return bool(env is not None and env.allow_dynamic_output_shape_ops)


def run_with_targets(aug, x: torch.Tensor, mask, bboxes, labels, keypoints, indices, epoch, backend: str):
    """``aug(x, mask=, bboxes=, labels=, keypoints=)`` on a batch [B,C,H,W] inside a compiled region: one
    ``fastaug::compose_targets`` node and the dict the eager call returns; None when the call has another form
    (the caller then runs it eagerly: a graph break at fastaug's boundary)."""
    b = x.shape[0]
    if (labels is not None and bboxes is None) or (mask is not None and type(mask) is not torch.Tensor):
        return None
    box = point = lab = None
    if bboxes is not None and (not dynamic_sizes_allowed() or (box := _target_kind(bboxes, b, "BoundingBoxes", True)) is None):
        return None  # surviving boxes: a data-dependent size; where the graph may not hold one, eager (one break, not two)
    if keypoints is not None and (point := _target_kind(keypoints, b, "KeyPoints", True)) is None:
        return None
    if labels is not None and ((lab := _per_sample(labels, b, None)) is None or any(t.dim() < 1 for t in lab)):
        return None
    idx = torch.arange(b, device=x.device) if indices is None else torch.as_tensor(indices, device=x.device)
    ep = epoch if isinstance(epoch, torch.Tensor) else torch.tensor(epoch, dtype=torch.int64)
    spec = (mask is not None, None if box is None else box[1], lab is not None, None if point is None else point[1])
    key = aug._compiled_key
    image, masks, boxes, out_labels, points, visible = compose_targets_op(
        x, [] if mask is None else [mask], [] if box is None else box[0], lab or [], [] if point is None else point[0],
        idx, ep, key, backend, configuration_id(key), _targets_key(spec),
    )  # fmt: skip
    canvas = (image.shape[-2], image.shape[-1])
    out = {"image": image}
    if mask is not None:
        out["mask"] = masks[0]
    if box is not None:
        out["bboxes"], out["labels"] = _rewrap(boxes, box[1], canvas), out_labels if lab is not None else None
    if point is not None:
        out["keypoints"] = _rewrap(points, point[1], canvas)
        if point[1] == "plain":
            out["keypoints_visible"] = visible
    return out


@torch.compiler.disable
def eager(aug, *inputs, **kwargs):
    """A Compose call that is not one ``fastaug::compose`` node (targets: masks, boxes, keypoints; ``return_record``;
    tv_tensors and nested structures), made from a compiled region: it runs eagerly, so the step has one graph break
    at fastaug's boundary and none inside (dynamo does not trace fastaug's Python). Compose.forward hands such calls
    here while compiling."""
    return aug(*inputs, **kwargs)


# ----------------------------------------------------------------------------------------------- functional ops
#
# Under torch.compile every public op of fastaug.functional is replaced (torch.compiler.substitute_in_graph) by a
# traceable stand-in: it splits the call into its tensors and the rest (numbers, strings, dtypes, lists of them:
# constants of the graph, registered once per distinct call and named by a key), then calls fastaug::functional, one
# opaque node that runs the op eagerly. Its fake implementation gives the output's shape and dtype from the input and
# the constants; its autograd runs the op again under autograd (fastaug::functional_backward), so gradients reach the
# image and every per-sample magnitude tensor, as in eager mode.

_TENSOR = "\x00fastaug.tensor"  # a tensor's place in a registered call
_SPECS: dict[int, tuple[str, tuple, tuple]] = {}  # key -> (op name, args, kwargs items) with tensor places
_SPEC_KEYS: dict[str, int] = {}


def _split(value, tensors: list):
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return (_TENSOR, len(tensors) - 1)
    if isinstance(value, list):
        return [_split(v, tensors) for v in value]
    if isinstance(value, tuple):
        return tuple([_split(v, tensors) for v in value])
    return value


def _join(value, tensors):
    if isinstance(value, tuple) and len(value) == 2 and value[0] == _TENSOR:
        return tensors[value[1]]
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    if isinstance(value, tuple):
        return tuple(_join(v, tensors) for v in value)
    return value


@torch._dynamo.assume_constant_result
def _spec_key(name: str, args: tuple, kwargs: tuple) -> int:
    """The key of a call's constant part (run once, while tracing)."""
    text = repr((name, args, kwargs))
    if text not in _SPEC_KEYS:
        _SPEC_KEYS[text] = len(_SPEC_KEYS) + 1
        _SPECS[_SPEC_KEYS[text]] = (name, args, kwargs)
    return _SPEC_KEYS[text]


def _bound(key: int, tensors) -> tuple[str, dict]:
    from fastaug import functional

    name, args, kwargs = _SPECS[key]
    a, k = _join(args, tensors), {n: _join(v, tensors) for n, v in kwargs}
    sig = inspect.signature(getattr(functional, name))
    bound = sig.bind(*a, **k)
    bound.apply_defaults()
    return name, bound.arguments


def _call(key: int, tensors) -> torch.Tensor:
    from fastaug import functional

    name, args, kwargs = _SPECS[key]
    return getattr(functional, name)(*_join(args, tensors), **{n: _join(v, tensors) for n, v in kwargs})


def _size_of(size) -> tuple[int, int]:
    s = [size] if isinstance(size, int) else list(size)
    return (int(s[0]), int(s[0])) if len(s) == 1 else (int(s[0]), int(s[1]))


def functional_meta(key: int, tensors) -> tuple[tuple[int, ...], torch.dtype]:
    """The output shape and dtype of a registered functional call: the image's, but for the ops that set them."""
    name, a = _bound(key, tensors)
    img = a["img"]
    *lead, c, h, w = img.shape
    dtype = img.dtype
    if name == "crop":
        h, w = int(a["height"]), int(a["width"])
    elif name == "resized_crop":
        h, w = _size_of(a["size"])
    elif name == "rgb_to_grayscale":
        c = int(a["num_output_channels"])
    elif name == "to_dtype":
        dtype = a["dtype"]
    elif name == "normalize" and dtype == torch.uint8:
        dtype = torch.float32
    return (*lead, c, h, w), dtype


@torch.library.custom_op("fastaug::functional", mutates_args=())
def functional_op(tensors: list[torch.Tensor], key: int) -> torch.Tensor:
    """The registered fastaug.functional call ``key`` on ``tensors`` (eager)."""
    out = _call(key, tensors)
    shape, dtype = functional_meta(key, tensors)
    if (tuple(out.shape), out.dtype) != (tuple(shape), dtype):  # the fake's rule must hold
        raise RuntimeError(
            f"fastaug::functional: {_SPECS[key][0]} gave {list(out.shape)} {out.dtype}, the graph expects {list(shape)} {dtype}"
        )
    return out.clone() if any(out is t or out._base is t for t in tensors) else out


@functional_op.register_fake
def _functional_fake(tensors, key):
    shape, dtype = functional_meta(key, tensors)
    img = _bound(key, tensors)[1]["img"]
    return img.new_empty(shape, dtype=dtype)


@torch.library.custom_op("fastaug::functional_backward", mutates_args=())
def functional_backward_op(grad: torch.Tensor, tensors: list[torch.Tensor], key: int) -> list[torch.Tensor]:
    """Gradients of ``fastaug::functional`` to each of its tensors (zeros for integer ones): the op run again under
    autograd (eager: fastaug's fused backward)."""
    with _autograd_dispatch(), torch.enable_grad():
        leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in tensors]
        out = _call(key, leaves)
        wanted = [t for t in leaves if t.requires_grad]
        grads = torch.autograd.grad(out, wanted, grad, allow_unused=True) if wanted and out.requires_grad else [None] * len(wanted)
    found = iter(grads)
    result = []
    for t in leaves:
        g = next(found) if t.requires_grad else None
        result.append(torch.zeros_like(t) if g is None else g)
    return result


@functional_backward_op.register_fake
def _functional_backward_fake(grad, tensors, key):
    return [torch.empty_like(t) for t in tensors]


def _functional_setup(ctx, inputs, output):
    tensors, key = inputs
    ctx.save_for_backward(*tensors)
    ctx.key = key


def _functional_backward(ctx, grad):
    tensors = list(ctx.saved_tensors)
    grads = functional_backward_op(grad, tensors, ctx.key)
    return [g if t.is_floating_point() else None for g, t in zip(grads, tensors, strict=True)], None


functional_op.register_autograd(_functional_backward, setup_context=_functional_setup)


def _stand_in(name: str):
    def traceable(*args, **kwargs):
        tensors: list = []
        spec_args = _split(tuple(args), tensors)
        spec_kwargs = tuple([(k, _split(v, tensors)) for k, v in kwargs.items()])
        return functional_op(tensors, _spec_key(name, spec_args, spec_kwargs))

    return traceable


def _install_functional() -> None:
    from fastaug import functional

    for name in functional.__all__:
        fn = getattr(functional, name)
        if name != "run_calls" and inspect.isfunction(fn) and next(iter(inspect.signature(fn).parameters), None) == "img":
            torch.compiler.substitute_in_graph(fn, skip_signature_check=True)(_stand_in(name))


_install_functional()
