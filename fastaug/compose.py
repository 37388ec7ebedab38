"""Compose: a pipeline of transforms compiled into one Plan per batch; records that replay it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from fastaug import autograd, compiled, rng, tv_types
from fastaug.compiler import compile_plan
from fastaug.functional import Canvas
from fastaug.ops.calls import Call, ColorCall, DtypeCall, GeometricCall, NormalizeCall, RectCall
from fastaug.ops.catalogue import COLOR_OPS, INTEGER_ARGS, decode_dropout_mode
from fastaug.plan import Op
from fastaug.targets import filter_boxes_by_holes, keypoints_outside_holes, transform_boxes, transform_keypoints, transform_masks
from fastaug.transforms import SLOTS_PER_TRANSFORM, Context, Transform
from fastaug.validation import as_batch, check_epoch, check_indices

_MAX_BANK_COLUMNS = 4096  # draws per sample a Compose banks (a pipeline drawing more draws the rest one by one)
_MAX_BANK_KINDS = 64  # input kinds (shape, dtype, device) whose draw layouts a Compose keeps


def _plain(value, i: int, integer: bool = False):
    if isinstance(value, torch.Tensor):
        v = (value[i] if value.dim() > 0 else value).tolist()
        return int(v) if integer and isinstance(v, float) and v.is_integer() else v
    if isinstance(value, torch.dtype):
        return value
    return value


def _per_sample(values, b: int, name: str) -> list[torch.Tensor]:
    if isinstance(values, torch.Tensor) and values.dim() >= 1 and values.shape[0] == b and b > 0 and values.dim() >= 2:
        return list(values)
    if not isinstance(values, (list, tuple)) or len(values) != b:
        raise ValueError(f"{name} must hold one entry per sample (B={b})")
    return [torch.as_tensor(v) for v in values]


def _is_applied(call: Call, i: int) -> bool:
    return call.applied is None or bool(call.applied[i])


@dataclass
class Record:
    """Everything drawn for one batch: replays it exactly and lists each sample's calls."""

    op_calls: list[Call]
    seed: int
    epoch: int
    indices: torch.Tensor
    shape: tuple[int, ...]
    extras: dict = field(default_factory=dict)
    dtype: torch.dtype | None = None  # the input's dtype (None: unknown; erase values are then listed as drawn)
    straight_through: bool = False  # the Compose's flag: replay keeps it

    def _execution_order(self) -> list[tuple[Call, bool | None]]:
        """The calls in the order the compiler runs them, each with, for an erasing before normalize, whether
        its value must move from uint8's range to [0, 1] (True) or back (False); None: listed as drawn.

        The compiler composes every geometric op into one resampling that runs first, runs the color ops
        (and dtype conversions) in order, then paints the rects (erasing, masking) drawn before normalize in
        the value range the image has at that point, then normalizes, then paints the rects drawn after it."""
        u8 = None if self.dtype is None else self.dtype == torch.uint8
        geo, chain, rects, post = [], [], [], []
        normalize = None
        for call in self.op_calls:
            if isinstance(call, GeometricCall):
                geo.append(call)
            elif isinstance(call, NormalizeCall):
                normalize = call
            elif normalize is not None:
                post.append(call)  # erasing in the normalized range, to_dtype: in order, after normalize
            elif isinstance(call, RectCall):
                rects.append((call, u8))  # painted after the chain, in the range the image has now
            else:
                chain.append(call)
                if isinstance(call, DtypeCall) and call.scale and u8 is not None and u8 != (not call.dtype.is_floating_point):
                    u8 = not u8  # uint8 <-> float with scaling changes the value range
        final = u8
        moved = [(call, None if q is None or q == final else q) for call, q in rects]
        tail = ([(normalize, None)] if normalize is not None else []) + [(call, None) for call in post]
        return [(call, None) for call in geo + chain] + moved + tail

    def calls(self, i: int) -> list[tuple[str, dict]]:
        """Sample i's applied ops as (fastaug.functional name, plain kwargs) in execution order, so that
        applying them one by one (torchvision or fastaug.functional) gives sample i: the geometric ops first
        (they compose into one resampling), then the color ops in order, then erasing, then normalize."""
        out: list[tuple[str, dict]] = []
        for call, to_float in self._execution_order():
            if not _is_applied(call, i):
                continue
            if isinstance(call, ColorCall):
                code = int(call.code[i]) if isinstance(call.code, torch.Tensor) else int(call.code)
                if code == int(Op.IDENTITY):
                    continue
                name, args = COLOR_OPS[code]
                vals = call.params[i].tolist() if call.params is not None else []
                kw = {a: (int(round(vals[j])) if a in INTEGER_ARGS else vals[j]) for j, a in enumerate(args)}
                if code == int(Op.GRAYSCALE):
                    kw["num_output_channels"] = self.shape[1]
                if code == int(Op.GAUSSIAN_BLUR):  # torchvision's signature: kernel_size, sigma = [x, y]
                    kw = {"kernel_size": list(call.kwargs["kernel_size"]), "sigma": [vals[0], vals[1]]}
                if code == int(Op.GAUSSIAN_NOISE):
                    kw["clip"] = vals[2] > 0.5
                if code == int(Op.MULTIPLICATIVE_NOISE):
                    kw["per_channel"] = vals[2] > 0.5
                if code == int(Op.PIXEL_DROPOUT):  # params[2]: catalogue.dropout_mode(per_channel, channel)
                    kw["per_channel"], channel = decode_dropout_mode(vals[2])
                    if channel > 0:
                        continue  # one value per channel: listed once, with the slot of channel 0
                    if channel == 0:
                        kw["drop_value"] = _plain(call.kwargs["drop_value"], i)
                if code == int(Op.SUPERPIXELS):
                    kw["max_size"] = call.segment_size or None
                if code == int(Op.DOWNSCALE):
                    mode = int(round(vals[1]))
                    kw = {"scale": vals[0], "down_interpolation": "bilinear" if mode & 1 else "nearest",
                          "up_interpolation": "bilinear" if mode & 2 else "nearest"}  # fmt: skip
                if call.keys is not None:  # random ops: the per-pixel draws' key (fastaug.functional takes ``key=``)
                    kw["key"] = int(call.keys[i])
                if code == int(Op.CONVOLVE):  # sharpen / emboss / motion_blur / convolve: the call's own arguments
                    name = call.name if call.name in ("sharpen", "emboss", "motion_blur") else "convolve"
                    kw = {k: _plain(v, i, k in INTEGER_ARGS) for k, v in call.kwargs.items()}
                out.append((name, kw))
            elif isinstance(call, RectCall):
                for r in range(call.rects.shape[1]):
                    if call.active is not None and not bool(call.active[i, r]):
                        continue
                    x0, y0, x1, y1 = (int(v) for v in call.rects[i, r].tolist())
                    v = call.values[i, r].tolist()
                    if to_float is True:  # painted in uint8's range (truncated), the image ends in [0, 1]
                        v = [math.floor(a) / 255.0 for a in v]
                    elif to_float is False:  # painted in [0, 1], the image ends in uint8's range
                        v = [float(math.floor(a * 255.999)) for a in v]
                    out.append(("erase", {"i": y0, "j": x0, "h": y1 - y0, "w": x1 - x0, "v": v}))
            elif isinstance(call, NormalizeCall):
                out.append(("normalize", {"mean": call.mean.tolist(), "std": call.std.tolist()}))
            elif isinstance(call, DtypeCall):
                out.append(("to_dtype", {"dtype": call.dtype, "scale": call.scale}))
            else:
                out.append((call.name, {k: _plain(v, i, k in INTEGER_ARGS) for k, v in call.kwargs.items()}))
        return out

    def replay(self, images: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """Re-run exactly the recorded parameters on ``images`` (same shape as recorded)."""
        x, unbatched = as_batch(images, "images")
        if tuple(x.shape) != tuple(self.shape):
            raise ValueError(f"images must have the recorded shape {list(self.shape)}, got {list(x.shape)}")
        plan = compile_plan(self.op_calls, tuple(x.shape), x.dtype, x.device)
        out = autograd.execute(plan, x, backend, self.straight_through)
        return out[0] if unbatched else out


class Compose(torch.nn.Module):
    """A pipeline of transforms drawn per sample and run as one fused pass per stage.

    Call with an image batch ``[B,C,H,W]`` (uint8 or float in [0, 1]); targets in albumentations
    style (``mask=``, ``bboxes=`` with ``labels=``, ``keypoints=``) make it return a dict.
    Draws are a pure function of (seed, epoch, sample index): pass the dataset ``indices``.
    """

    def __init__(self, transforms: list[Transform], seed: int = 0, backend: str = "auto", straight_through: bool = False):
        super().__init__()
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"transforms must be fastaug transforms, got {type(t).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.transforms = list(transforms)
        self.seed = seed
        self.backend = backend
        self.straight_through = straight_through  # posterize/solarize/autocontrast/equalize: identity gradient
        compiled.key_of(self)  # the key of its torch.compile custom op (fastaug.compiled)

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        compiled.key_of(self)  # a copy (pickled to a worker, deep-copied) registers itself

    def draw(self, x: torch.Tensor, indices: torch.Tensor, epoch: int) -> list[Call]:
        """Op calls for a batch shaped like ``x`` (parameters only). All draws of the call come from one launch
        (``rng.bank``) laid out as the draws of the previous call of this input kind; new draws join the layout."""
        b, c, h, w = x.shape
        uint8 = x.dtype == torch.uint8
        calls: list[Call] = []
        layouts = self.__dict__.setdefault("_draw_layouts", {})  # per input kind: the draws of the last call (rng.bank)
        kind = (tuple(x.shape), x.dtype, x.device, isinstance(epoch, torch.Tensor))
        with rng.bank(self.seed, epoch, indices, layouts.get(kind)) as bank:
            for pos, t in enumerate(self.transforms):
                ctx = Context(Canvas(b, c, h, w, x.device), self.seed, epoch, indices, (pos + 1) * SLOTS_PER_TRANSFORM, uint8)
                new = t.calls(ctx)
                for call in new:
                    if isinstance(call, GeometricCall) and call.out_size is not None:
                        h, w = call.out_size
                    if isinstance(call, DtypeCall) and call.scale:
                        uint8 = not call.dtype.is_floating_point
                calls.extend(new)
        if bank.missed and (layout := bank.layout.merged(bank.missed)).columns <= _MAX_BANK_COLUMNS:
            if kind not in layouts and len(layouts) >= _MAX_BANK_KINDS:
                layouts.pop(next(iter(layouts), None), None)  # the oldest input kind (many image sizes: bounded memory)
            layouts[kind] = layout  # the next call draws them all in one launch
            layout.table(b, indices.device)  # its column table, copied to the device now (not inside the next call)
        return calls

    def forward(
        self,
        *inputs,
        image: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        bboxes=None,
        labels=None,
        keypoints=None,
        indices: torch.Tensor | None = None,
        epoch: int = 0,
        return_record: bool = False,
        backend: str | None = None,
    ):
        """``aug(x)``: the augmented batch (targets as keywords: a dict); ``aug(image=x, ...)``: always a dict
        (albumentations style); ``aug(image, target)`` or any nested tuple / list / dict: the same structure
        back (torchvision v2 style, see :mod:`fastaug.tv_types`). tv_tensors come back with their types."""
        backend = backend or self.backend
        if torch.compiler.is_compiling():
            return self._compiled_call(inputs, image, mask, bboxes, labels, keypoints, indices, epoch, return_record, backend)
        if image is not None:
            if inputs:
                raise TypeError("pass the image either positionally or as image=, not both")
            if isinstance(image, np.ndarray):
                return _numpy_call(self, image, mask, bboxes, labels, keypoints, indices, epoch, return_record, backend)
            return self._augment(image, mask, bboxes, labels, keypoints, indices, epoch, return_record, backend, as_dict=True)
        if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor):
            return self._augment(inputs[0], mask, bboxes, labels, keypoints, indices, epoch, return_record, backend)
        if not inputs:
            raise TypeError("Compose needs an image: aug(images), aug(image=images, ...) or aug(image, target)")
        if any(t is not None for t in (mask, bboxes, labels, keypoints)):
            raise TypeError("targets as keywords (mask=, bboxes=, ...) need the image as aug(images) or aug(image=images)")
        tree = inputs[0] if len(inputs) == 1 else inputs
        records = []

        def run(img, calls=None):
            out, calls, plan, record = self._run(img, indices, epoch, backend, calls)
            records.append(record)
            return (out, calls, plan) if len(records) == 1 else out

        result = tv_types.apply_structure(tree, run, backend)
        return (result, records[0]) if return_record else result

    def _compiled_call(self, inputs, image, mask, bboxes, labels, keypoints, indices, epoch, return_record, backend: str):
        """A call inside a torch.compile region: one custom op where fastaug has one (a plain image batch, with masks or
        without: no graph break), else the call runs eagerly (``compiled.eager``: a break at fastaug's boundary, none
        inside)."""
        keyword = image is not None and not inputs  # aug(image=x, ...): a dict, as albumentations
        x = image if keyword else (inputs[0] if len(inputs) == 1 and image is None else None)
        plain = type(x) is torch.Tensor and not return_record and not self._learning()
        no_boxes = all(t is None for t in (bboxes, labels, keypoints))
        if plain and no_boxes and mask is None:
            out = compiled.run(self, x, indices, epoch, backend)
            return {"image": out} if keyword else out
        if plain and no_boxes and type(mask) is torch.Tensor and x.dim() == 4:
            return compiled.run_with_mask(self, x, mask, indices, epoch, backend)
        if plain and x.dim() == 4:  # boxes / keypoints (with masks or without): one node where their form allows
            out = compiled.run_with_targets(self, x, mask, bboxes, labels, keypoints, indices, epoch, backend)
            if out is not None:
                return out
        return compiled.eager(self, *inputs, image=image, mask=mask, bboxes=bboxes, labels=labels, keypoints=keypoints,
                              indices=indices, epoch=epoch, return_record=return_record, backend=backend)  # fmt: skip

    def _learning(self) -> bool:
        """A transform holds parameters that want gradients (``fastaug.learn``): the custom ops give the image's only,
        so such a call runs eagerly inside a compiled region (a break at the boundary), where its magnitudes get them."""
        if not torch.is_grad_enabled():
            return False
        modules = [t for t in self.transforms if isinstance(t, torch.nn.Module)]
        return any(p.requires_grad for m in modules for p in m.parameters())

    def _run(self, image: torch.Tensor, indices, epoch, backend: str, calls: list[Call] | None = None):
        """The image (plain, tv Image or Video) through one Plan -> (output of the same type, calls, plan, record);
        ``calls``: drawn already (a second image of the same call)."""
        kind = tv_types.tv_kind(image)
        lead = None
        if kind == "Video":
            x, idx, lead = tv_types.video_batch(image, indices)
            x, unbatched = as_batch(x, "image")
            idx = check_indices(idx, x.shape[0], x.device)
        else:
            x, unbatched = as_batch(tv_types.plain(image), "image")
            idx = check_indices(indices, x.shape[0], x.device)
        epoch = check_epoch(epoch)
        if calls is None:
            calls = self.draw(x, idx, epoch)
        plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
        out = autograd.execute(plan, x, backend, self.straight_through)  # differentiable when anything requires grad
        record = Record(calls, self.seed, epoch, idx, tuple(x.shape), dtype=x.dtype, straight_through=self.straight_through)
        if lead is not None:
            out = out.reshape(*lead, *out.shape[1:])
        elif unbatched:
            out = out[0]
        return tv_types.wrap_like(out, image), calls, plan, record

    def _augment(self, image, mask, bboxes, labels, keypoints, indices, epoch, return_record, backend, as_dict=False):
        out, calls, plan, record = self._run(image, indices, epoch, backend)
        video = tv_types.tv_kind(image) == "Video"
        if video and (bboxes is not None or keypoints is not None):
            raise ValueError("bboxes= / keypoints= with a Video are not supported: pass the frames as an image batch")
        targets = {}
        if mask is not None:
            targets["mask"] = self._masks(mask, image, calls, backend, video)
        if bboxes is not None:
            typed = tv_types.tv_kind(bboxes) == "BoundingBoxes" or (
                isinstance(bboxes, (list, tuple)) and bboxes and tv_types.tv_kind(bboxes[0]) == "BoundingBoxes"
            )
            if typed:
                boxes, keep = tv_types.map_box_list(bboxes, plan, drop=True)
            else:
                boxes, keep = transform_boxes(bboxes, None, plan.notes["matrix64"], plan.out_size, min_size=-1.0,
                                              displacement=plan.notes["displacement"])  # fmt: skip
                keep = [((bx[:, 2:] - bx[:, :2]) > 1e-3).all(1).to(bx.device) for bx in boxes]
                boxes = [bx[k] for bx, k in zip(boxes, keep, strict=True)]
            single = isinstance(boxes, torch.Tensor)
            boxes, keep = ([boxes], [keep]) if single else (boxes, keep)
            plain_boxes = [tv_types.plain(bx) for bx in boxes]
            if typed:
                moved, hole_keep = plain_boxes, [torch.ones(bx.shape[0], dtype=torch.bool, device=bx.device) for bx in boxes]
            else:
                moved, hole_keep = filter_boxes_by_holes(plain_boxes, calls, plan.out_size)  # CoarseDropout / XYMasking holes
            out_boxes = [tv_types.wrap_like(m[k], bx) for m, k, bx in zip(moved, hole_keep, boxes, strict=True)]
            targets["bboxes"] = out_boxes[0] if single else out_boxes
            if labels is not None:
                lab = [labels] if single else _per_sample(labels, len(keep), "labels")
                for i, (lb, k) in enumerate(zip(lab, keep, strict=True)):
                    if lb.shape[0] != k.shape[0]:
                        raise ValueError(f"sample {i}: {k.shape[0]} boxes but {lb.shape[0]} labels")
                lab = [lb[k.to(lb.device)][h.to(lb.device)] for lb, k, h in zip(lab, keep, hole_keep, strict=True)]
                targets["labels"] = lab[0] if single else lab
            else:
                targets["labels"] = None
        elif labels is not None:
            raise ValueError("labels= needs bboxes=")
        if keypoints is not None:
            if tv_types.tv_kind(keypoints) == "KeyPoints":
                targets["keypoints"] = tv_types.map_keypoints(keypoints, plan, 0)
            elif isinstance(keypoints, (list, tuple)) and keypoints and tv_types.tv_kind(keypoints[0]) == "KeyPoints":
                targets["keypoints"] = [tv_types.map_keypoints(kp, plan, i) for i, kp in enumerate(keypoints)]
            else:
                points, visible = transform_keypoints(keypoints, plan.notes["matrix64"], plan.out_size, plan.notes["displacement"])
                uncovered = keypoints_outside_holes(points, calls)
                targets["keypoints"] = points
                targets["keypoints_visible"] = [v & u for v, u in zip(visible, uncovered, strict=True)]
        if targets or as_dict:
            result = {"image": out, **targets}
            return (result, record) if return_record else result
        return (out, record) if return_record else out

    @staticmethod
    def _masks(mask, image, calls: list[Call], backend: str, video: bool):
        m = tv_types.plain(mask) if isinstance(mask, torch.Tensor) else mask
        if video and isinstance(m, torch.Tensor):
            lead = tuple(image.shape[:-3])
            if tuple(m.shape[: len(lead)]) != lead:
                raise ValueError(f"mask with a Video must start with the video's dimensions {list(lead)}, got {list(m.shape)}")
            frames = m.reshape(-1, *m.shape[len(lead) :])
            return tv_types.wrap_like(transform_masks(frames, calls, backend).reshape(*lead, *frames.shape[1:]), mask)
        if isinstance(m, torch.Tensor) and image.dim() == 3:  # one image: its mask [H,W] or [K,H,W]
            return tv_types.wrap_like(transform_masks(m.unsqueeze(0), calls, backend)[0], mask)
        return tv_types.wrap_like(transform_masks(m, calls, backend), mask)

    def to_json(self, path):
        """Write the pipeline as versioned JSON, atomically (``fastaug.load(path)`` reads it back)."""
        from fastaug.serialize import to_json

        return to_json(self, path)

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose([\n    {inner}\n], seed={self.seed})"



def _numpy_call(aug: Compose, image: np.ndarray, mask, bboxes, labels, keypoints, indices, epoch, return_record, backend):
    """albumentations' habit: one numpy image ``[H,W,C]`` / ``[H,W]`` (uint8, or float in [0, 1]), a numpy mask
    ``[H,W]`` / ``[H,W,K]``, boxes ``[N,4]`` (pascal_voc: pixel x_min, y_min, x_max, y_max) and keypoints ``[N,2]``
    as arrays or lists; returns numpy arrays in the same layouts (labels as they came, minus dropped boxes)."""
    if image.ndim not in (2, 3):
        raise ValueError(f"a numpy image must have shape [H,W,C] or [H,W], got {list(image.shape)}")
    hwc = image.ndim == 3
    x = torch.from_numpy(np.ascontiguousarray(image if hwc else image[..., None])).permute(2, 0, 1)
    m = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim not in (2, 3):
            raise ValueError(f"a numpy mask must have shape [H,W] or [H,W,K], got {list(mask.shape)}")
        m = torch.from_numpy(np.ascontiguousarray(mask if mask.ndim == 2 else mask.transpose(2, 0, 1)))
    boxes = None if bboxes is None else [torch.as_tensor(np.asarray(bboxes, dtype=np.float64).reshape(-1, 4))]
    lab = None if labels is None else [torch.as_tensor(np.arange(len(labels)))]  # positions: any label type rides along
    points = None if keypoints is None else [torch.as_tensor(np.asarray(keypoints, dtype=np.float64).reshape(-1, 2))]
    res = aug._augment(x, m, boxes, lab, points, indices, epoch, return_record, backend, as_dict=True)
    out, record = res if return_record else (res, None)
    img = out["image"].permute(1, 2, 0).numpy()
    result = {"image": img if hwc else img[..., 0]}
    if mask is not None:
        mo = out["mask"].numpy()
        result["mask"] = mo if mask.ndim == 2 else mo.transpose(1, 2, 0)
    if bboxes is not None:
        result["bboxes"] = out["bboxes"][0].numpy()
        if labels is not None:
            result["labels"] = [labels[int(k)] for k in out["labels"][0]]
    if keypoints is not None:
        result["keypoints"], result["keypoints_visible"] = out["keypoints"][0].numpy(), out["keypoints_visible"][0].numpy()
    return (result, record) if return_record else result
