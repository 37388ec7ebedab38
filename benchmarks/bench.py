"""Side-by-side throughput of a pipeline: fastaug against kornia, albumentations, torchvision (and
triton-augment when installed), all in one run, on one device.

The reference pipeline (``--pipeline reference``; uint8 in; normalized float32 out on CPU, float16 on
GPU), the same ops with the same (bilinear) interpolation for every library::

    RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10, bilinear) + ColorJitter(0.4, 0.4, 0.4, 0.1)
    + RandomHorizontalFlip() + RandomPosterize(4, p=0.5) + RandomSolarize(128, p=0.5)
    + Normalize(ImageNet mean, std)

The second pipeline (``--pipeline blur-noise-dropout``; every op applied to every image)::

    RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10, bilinear) + ColorJitter(0.4, 0.4, 0.4, 0.1)
    + GaussianBlur(5, sigma=(0.1, 2.0)) + GaussianNoise(0, 0.05) + CoarseDropout(1-4 holes of 10-20 %)
    + Normalize(ImageNet mean, std)

The third pipeline (``--pipeline affine-flip-color``; the ops triton-augment also has, with the same
semantics: its contrast is a different formula and it has no hue, posterize, solarize, blur or noise)::

    RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10, bilinear) + RandomHorizontalFlip()
    + ColorJitter(brightness=0.4, saturation=0.4) + Normalize(ImageNet mean, std)

Usage: ``python -m benchmarks.bench`` (B=64, 224x224), ``--batch 64 256 --size 224 512`` for the full
grid, ``--peers fastaug-numba kornia`` for a subset; ``fastaug bench`` runs :func:`main`. Writes
``benchmarks/results/<device>-<date>.json`` and a PNG chart (matplotlib: the ``bench`` extra), prints a
markdown table (:func:`render_table`). See ``benchmarks/README.md`` for the parameter mapping.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PEERS = (
    "fastaug-numba", "fastaug-triton", "fastaug-torch", "kornia", "albumentations",
    "torchvision-per-sample", "torchvision-batch-wide", "triton-augment", "fastaug-triton-graph",
)  # fmt: skip
BATCH_WIDE = "batch-wide (one draw per batch)"
PIPELINES = ("reference", "blur-noise-dropout", "affine-flip-color")
QUICK_PEERS = tuple(p for p in PEERS if p != "fastaug-torch")  # the reference backend is slow: opt in


@dataclass
class Peer:
    """One library's pipeline: ``setup(x)`` returns the callable timed on the uint8 batch ``x``."""

    name: str
    label: str
    semantics: str  # "per-sample" or "batch-wide (one draw per batch)"
    setup: Callable[[torch.Tensor, torch.device], Callable[[], object]]
    backward: Callable[[torch.Tensor, torch.device], Callable[[], object] | None] | None = None
    devices: tuple[str, ...] = ("cpu", "cuda")


# ------------------------------------------------------------------------------------------------
# pipelines


def _out_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


def pipeline_text(pipeline: str) -> str:
    """The pipeline's ops as this module's docstring writes them."""
    block = __doc__.split("::")[PIPELINES.index(pipeline) + 1]
    return block.strip().split("\n\n")[0].strip()


def fastaug_pipeline(device: torch.device, seed: int = 0, float_input: bool = False, pipeline: str = "reference"):
    """The pipeline (for a float input in [0, 1] the solarize threshold is 128/255)."""
    import fastaug

    steps = [
        fastaug.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation="bilinear"),
        fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1),
    ]
    if pipeline == "affine-flip-color":
        steps = [steps[0], fastaug.RandomHorizontalFlip(), fastaug.ColorJitter(brightness=0.4, saturation=0.4)]
    elif pipeline == "reference":
        steps += [
            fastaug.RandomHorizontalFlip(),
            fastaug.RandomPosterize(4, p=0.5),
            fastaug.RandomSolarize(128 / 255 if float_input else 128, p=0.5),
        ]
    else:
        steps += [
            fastaug.GaussianBlur(5, (0.1, 2.0)),
            fastaug.GaussianNoise(0.0, 0.05),
            fastaug.CoarseDropout((1, 4), (0.1, 0.2), (0.1, 0.2), fill=0, p=1.0),
        ]
    steps.append(fastaug.Normalize(list(MEAN), list(STD)))
    if _out_dtype(device) != torch.float32:
        steps.append(fastaug.ToDtype(_out_dtype(device)))
    return fastaug.Compose(steps, seed=seed)


def _fastaug(backend: str, pipeline: str):
    def setup(x: torch.Tensor, device: torch.device):
        aug = fastaug_pipeline(device, pipeline=pipeline)
        state = {"epoch": 0}

        def run():
            state["epoch"] += 1  # fresh draws every call
            return aug(x, epoch=state["epoch"], backend=backend)

        return run

    def backward(x: torch.Tensor, device: torch.device):
        """Forward+backward on a float input, if fastaug's autograd is there (capability check)."""
        aug = fastaug_pipeline(device, float_input=True, pipeline=pipeline)
        xf = (x.float() / 255).requires_grad_()
        try:
            out = aug(xf, backend=backend)
        except Exception:
            return None
        if not out.requires_grad:
            return None

        def run():
            xf.grad = None
            aug(xf, backend=backend).float().sum().backward()

        return run

    return setup, backward


def _kornia_pipeline(device: torch.device, pipeline: str = "reference"):
    import kornia.augmentation as K

    if pipeline == "affine-flip-color":
        return K.AugmentationSequential(
            K.RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10, resample="bilinear", padding_mode="zeros", p=1.0),
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(brightness=0.4, saturation=0.4, p=1.0),
            K.Normalize(mean=torch.tensor(MEAN), std=torch.tensor(STD)),
        ).to(device)
    if pipeline != "reference":
        # GaussianBlur: kornia's separable 5x5 with reflect borders, sigma per image in (0.1, 2.0);
        # GaussianNoise(std 0.05) on [0, 1] floats; kornia has no CoarseDropout: RandomErasing of ONE
        # rectangle of 1-4 % of the area (fastaug paints 1-4 holes of 10-20 % x 10-20 %: less work for kornia).
        return K.AugmentationSequential(
            K.RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10, resample="bilinear", padding_mode="zeros", p=1.0),
            K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0),
            K.RandomGaussianBlur((5, 5), (0.1, 2.0), p=1.0),
            K.RandomGaussianNoise(mean=0.0, std=0.05, p=1.0),
            K.RandomErasing(scale=(0.01, 0.04), ratio=(0.5, 2.0), value=0.0, p=1.0),
            K.Normalize(mean=torch.tensor(MEAN), std=torch.tensor(STD)),
        ).to(device)

    # kornia parameterisation, mapped to the same distribution of work:
    # - RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10): shear=10 is an x-shear in (-10, 10) degrees,
    #   as torchvision's; resample bilinear, zero padding (fastaug's default fill 0).
    # - ColorJitter (torchvision semantics; not ColorJiggle): factors per sample; kornia draws one order
    #   of the four ops per batch where fastaug / torchvision draw one per sample: same work per image.
    # - RandomPosterize(bits=(4, 4)): kornia's int `bits=x` means uniform in (x, 8) - pin it to 4 bits.
    # - RandomSolarize(thresholds=(128/255,)*2, additions=(0, 0)): kornia's float `thresholds=x` means
    #   0.5 +- x in [0, 1] - pin it to torchvision's 128 on the 0..255 scale, and no brightness addition.
    # - Normalize(mean, std). Input: uint8 -> float32 / 255 first (kornia works on float); on GPU the
    #   result is cast to float16.
    return K.AugmentationSequential(
        K.RandomAffine(degrees=30, translate=(0.1, 0.1), shear=10, resample="bilinear", padding_mode="zeros", p=1.0),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0),
        K.RandomHorizontalFlip(p=0.5),
        K.RandomPosterize(bits=(4, 4), p=0.5),
        K.RandomSolarize(thresholds=(128 / 255, 128 / 255), additions=(0.0, 0.0), p=0.5),
        K.Normalize(mean=torch.tensor(MEAN), std=torch.tensor(STD)),
    ).to(device)


def _kornia_setup(x: torch.Tensor, device: torch.device, pipeline: str = "reference"):
    aug = _kornia_pipeline(device, pipeline)
    dtype = _out_dtype(device)
    return lambda: aug(x.float().div_(255)).to(dtype)


def _kornia_backward(x: torch.Tensor, device: torch.device, pipeline: str = "reference"):
    aug = _kornia_pipeline(device, pipeline)
    xf = (x.float() / 255).requires_grad_()

    def run():
        xf.grad = None
        aug(xf).sum().backward()

    return run


def _albumentations_setup(x: torch.Tensor, device: torch.device, pipeline: str = "reference"):
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    # albumentations parameterisation (per image, uint8 HWC numpy, cv2), mapped to the same work:
    # - Affine(rotate=(-30, 30), translate_percent=+-0.1 per axis, shear={"x": (-10, 10), "y": 0}) in degrees,
    #   scale 1, INTER_LINEAR, BORDER_CONSTANT with fill 0.
    # - ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=1): the same factor ranges
    #   (brightness/contrast/saturation in [0.6, 1.4], hue shift in [-0.1, 0.1] of the circle) in a random
    #   order per image, computed on uint8 (its own rounding and hue units internally).
    # - HorizontalFlip(p=0.5), Posterize(num_bits=4, p=0.5).
    # - Solarize(threshold_range=(0.5, 0.5), p=0.5): threshold 0.5 * 255 = 127.5 on uint8, i.e. pixels
    #   >= 128 inverted, as torchvision's 128.
    # - Normalize(mean, std, max_pixel_value=255) -> float32, then ToTensorV2 (HWC -> CHW view, no copy).
    # The outputs are left as a list of CHW tensors: no collate / stack into a batch (that would add a copy).
    # The second pipeline: GaussianBlur(blur_limit=(5, 5), sigma_limit=(0.1, 2.0)) (cv2, BORDER_REFLECT_101),
    # GaussNoise(std_range=(0.05, 0.05), per_channel=True) (fraction of 255 on uint8), CoarseDropout with the same
    # argument names and meaning as fastaug's (fastaug's follows albumentations), every op with p=1.
    color = A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=1.0)
    if pipeline == "affine-flip-color":  # the flip first, then brightness and saturation only
        color = A.Compose([A.HorizontalFlip(p=0.5), A.ColorJitter(brightness=0.4, contrast=0.0, saturation=0.4, hue=0.0, p=1.0)])
    middle = [] if pipeline == "affine-flip-color" else [
        A.HorizontalFlip(p=0.5),
        A.Posterize(num_bits=4, p=0.5),
        A.Solarize(threshold_range=(0.5, 0.5), p=0.5),
    ] if pipeline == "reference" else [
        A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(0.1, 2.0), p=1.0),
        A.GaussNoise(std_range=(0.05, 0.05), mean_range=(0.0, 0.0), per_channel=True, p=1.0),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.1, 0.2), hole_width_range=(0.1, 0.2), fill=0, p=1.0),
    ]
    aug = A.Compose([
        A.Affine(rotate=(-30, 30), translate_percent={"x": (-0.1, 0.1), "y": (-0.1, 0.1)}, shear={"x": (-10, 10), "y": (0, 0)},
                 interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
        color,
        *middle,
        A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0),
        ToTensorV2(),
    ])  # fmt: skip
    images = [np.ascontiguousarray(img.permute(1, 2, 0).numpy()) for img in x.cpu()]  # decoded images are HWC
    return lambda: [aug(image=img)["image"] for img in images]


def import_torchvision():
    """torchvision with its C extension unloadable: skip the fake-op registrations that need it
    (transforms v2 are pure torch)."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    import torch.library as L

    orig = L.register_fake
    L.register_fake = lambda *a, **k: (lambda f: f)
    try:
        import torchvision
    finally:
        L.register_fake = orig
    return torchvision


def _torchvision_pipeline(device: torch.device, pipeline: str = "reference"):
    import_torchvision()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    if pipeline == "affine-flip-color":
        return T.Compose([
            T.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation=InterpolationMode.BILINEAR),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.4, saturation=0.4),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(MEAN), list(STD)),
            T.ToDtype(_out_dtype(device)),
        ])  # fmt: skip
    if pipeline != "reference":
        # torchvision has no CoarseDropout: RandomErasing of ONE rectangle of 1-4 % of the area (less work)
        return T.Compose([
            T.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation=InterpolationMode.BILINEAR),
            T.ColorJitter(0.4, 0.4, 0.4, 0.1),
            T.GaussianBlur(5, (0.1, 2.0)),
            T.ToDtype(torch.float32, scale=True),
            T.GaussianNoise(0.0, 0.05),
            T.RandomErasing(p=1.0, scale=(0.01, 0.04), ratio=(0.5, 2.0), value=0),
            T.Normalize(list(MEAN), list(STD)),
            T.ToDtype(_out_dtype(device)),
        ])  # fmt: skip
    return T.Compose([
        T.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation=InterpolationMode.BILINEAR),
        T.ColorJitter(0.4, 0.4, 0.4, 0.1),
        T.RandomHorizontalFlip(),
        T.RandomPosterize(4, p=0.5),
        T.RandomSolarize(128, p=0.5),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(list(MEAN), list(STD)),
        T.ToDtype(_out_dtype(device)),
    ])  # fmt: skip


def _torchvision_per_sample(x: torch.Tensor, device: torch.device, pipeline: str = "reference"):
    aug = _torchvision_pipeline(device, pipeline)
    return lambda: [aug(img) for img in x]  # per-sample draws: a Python loop (no stack into a batch)


def _torchvision_batch(x: torch.Tensor, device: torch.device, pipeline: str = "reference"):
    aug = _torchvision_pipeline(device, pipeline)
    return lambda: aug(x)  # ONE draw for the whole batch: every image gets the same parameters


def _triton_augment_setup(x: torch.Tensor, device: torch.device, pipeline: str = "reference"):
    """triton-augment's one-kernel ``TritonFusedAugment`` (float input in [0, 1], per-sample parameters): only the
    third pipeline, whose ops it has with the same meaning (its contrast is a different formula, and it has no hue,
    posterize, solarize, blur or noise). It applies flip and color after the affine, brightness before saturation."""
    if pipeline != "affine-flip-color":
        raise NotImplementedError(f"triton-augment cannot run the {pipeline} pipeline (no hue, posterize, solarize, blur, noise)")
    import triton_augment as ta

    aug = ta.TritonFusedAugment(degrees=30, translate=(0.1, 0.1), shear=10, interpolation=ta.InterpolationMode.BILINEAR, fill=0.0,
                                horizontal_flip_p=0.5, brightness=0.4, saturation=0.4, mean=MEAN, std=STD)  # fmt: skip
    dtype = _out_dtype(device)
    return lambda: aug(x.float().div_(255)).to(dtype)  # uint8 -> float / 255 timed, as for kornia: the same input


def _fastaug_graph(pipeline: str):
    """fastaug (triton) replayed from a CUDA graph: the call captured once (after eager warm-up calls) and
    replayed; the replay must equal the eager call with the same epoch (else the peer is recorded unavailable).
    A replay repeats the captured epoch's draws (the same work per image as fresh draws)."""

    def setup(x: torch.Tensor, device: torch.device):
        aug = fastaug_pipeline(device, pipeline=pipeline)
        want = aug(x, epoch=1, backend="triton")
        aug(x, epoch=1, backend="triton")
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            got = aug(x, epoch=1, backend="triton")
        graph.replay()
        torch.cuda.synchronize(device)
        if not torch.equal(got, want):
            raise RuntimeError(f"graph replay differs from the eager call (max |diff| {(got.float() - want.float()).abs().max().item()})")
        return graph.replay

    return setup


def peer_table(pipeline: str = "reference") -> dict[str, Peer]:
    fa = {b: _fastaug(b, pipeline) for b in ("numba", "triton", "torch")}

    def on(fn):
        return None if fn is None else (lambda x, dev: fn(x, dev, pipeline))

    _kornia_setup_, _kornia_backward_, _albumentations_setup_ = on(_kornia_setup), on(_kornia_backward), on(_albumentations_setup)
    _torchvision_per_sample_, _torchvision_batch_ = on(_torchvision_per_sample), on(_torchvision_batch)
    return {
        "fastaug-numba": Peer("fastaug-numba", "fastaug (numba)", "per-sample", fa["numba"][0], fa["numba"][1], ("cpu",)),
        "fastaug-triton": Peer("fastaug-triton", "fastaug (triton)", "per-sample", fa["triton"][0], fa["triton"][1], ("cuda",)),
        "fastaug-torch": Peer("fastaug-torch", "fastaug (torch reference backend)", "per-sample", fa["torch"][0], fa["torch"][1]),
        "kornia": Peer("kornia", "kornia", "per-sample", _kornia_setup_, _kornia_backward_),
        "albumentations": Peer("albumentations", "albumentations (per image, cv2)", "per-sample", _albumentations_setup_, None, ("cpu",)),
        "torchvision-per-sample": Peer(
            "torchvision-per-sample", "torchvision v2 (per-sample loop)", "per-sample", _torchvision_per_sample_
        ),
        "torchvision-batch-wide": Peer(
            "torchvision-batch-wide", "torchvision v2 (batch-wide: one draw per batch)", BATCH_WIDE, _torchvision_batch_
        ),
        "triton-augment": Peer("triton-augment", "triton-augment (one kernel)", "per-sample", on(_triton_augment_setup), None, ("cuda",)),
        "fastaug-triton-graph": Peer("fastaug-triton-graph", "fastaug (triton, CUDA graph replay)", "per-sample", _fastaug_graph(pipeline),
                                     None, ("cuda",)),  # fmt: skip
    }


# ------------------------------------------------------------------------------------------------
# measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call, ``repeats`` times after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":  # device time between two events on the stream (the host's launch work included)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float], batch: int) -> dict:
    """img/s: median over repeats, with the interquartile range and min / max (all in img/s)."""
    rates = sorted(batch / t for t in times)
    q = statistics.quantiles(rates, n=4) if len(rates) >= 2 else [rates[0]] * 3
    return {
        "img_s": statistics.median(rates), "q1": q[0], "q3": q[2], "min": rates[0], "max": rates[-1],
        "ms_per_batch": 1e3 * statistics.median(times), "repeats": len(times),
        "times_ms": [round(1e3 * t, 3) for t in times],
    }  # fmt: skip


def copy_bandwidth(device: torch.device, nbytes: int = 256 << 20, repeats: int = 7) -> float:
    """Copy bandwidth in bytes/s (read + write) of ``dst.copy_(src)`` on preallocated tensors."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = min(time_call(lambda: dst.copy_(src), device, 2, repeats))
    return 2 * nbytes / best


def bytes_per_image(c: int, h: int, w: int, out_dtype: torch.dtype) -> int:
    """uint8 in + out: the least memory traffic of one augmented image."""
    return c * h * w * (1 + torch.empty((), dtype=out_dtype).element_size())


# ------------------------------------------------------------------------------------------------
# device and versions


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict:
    info = {"type": device.type, "cpu": cpu_name(), "cpu_cores": os.cpu_count(), "platform": platform.platform()}
    if hasattr(os, "sched_getaffinity"):
        info["cpu_cores_usable"] = len(os.sched_getaffinity(0))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


_VECTOR = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4.2")
# An AVX2 machine emulated on an AVX-512 one: numba's code for Haswell *without* the host's AVX-512 features
# (NUMBA_CPU_NAME alone keeps the host's feature string, so it still emits AVX-512), OpenCV's dispatch and torch's
# ATen kernels restricted to AVX2 as well, so that every library runs the code an AVX2-only machine would run.
AVX2_ENV = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": "+avx2,+fma,+avx,+sse4.2,+popcnt,+bmi,+bmi2,+f16c,+lzcnt,+movbe,-avx512f",
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX,AVX512-COMMON,AVX512-CLX,AVX512-CNL,AVX512-ICL",  # OpenCV 4/5 names
    "ATEN_CPU_CAPABILITY": "avx2",
}


def cpu_isa() -> dict:
    """The CPU microarchitecture and vector ISA as LLVM (numba's code generator) sees them, and the ISA of the code
    this process runs: numba's kernels are compiled for the host unless ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``
    say otherwise (see :data:`AVX2_ENV`), so results from machines with other vector widths differ."""
    try:
        import llvmlite.binding as llvm

        feats = llvm.get_host_cpu_features()
        host = [f for f in _VECTOR if feats.get(f)]
        override = os.environ.get("NUMBA_CPU_FEATURES")
        code = host
        if override is not None:
            flags = {f[1:]: f[0] == "+" for f in override.split(",") if f[:1] in "+-" and len(f) > 1}
            code = [f for f in _VECTOR if flags.get(f, f in host) and not (f.startswith("avx512") and flags.get("avx512f") is False)]
        return {"llvm_cpu": llvm.get_host_cpu_name(), "vector_isa": host, "numba_cpu_name": os.environ.get("NUMBA_CPU_NAME"),
                "numba_cpu_features": override, "code_isa": code, "opencv_cpu_disable": os.environ.get("OPENCV_CPU_DISABLE"),
                "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"), "opencv_features": _opencv_features(),
                "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}  # fmt: skip
    except Exception as e:  # noqa: BLE001 - informational
        return {"unavailable": f"{type(e).__name__}: {e}"}


def _opencv_features() -> str | None:
    """OpenCV's dispatch line (``*AVX512-SKX?``: compiled in, disabled)."""
    try:
        import cv2

        return cv2.getCPUFeaturesLine()
    except Exception:  # noqa: BLE001 - informational
        return None


def isa_tag(isa: dict) -> str:
    """``avx2`` for a run under :data:`AVX2_ENV` (or another ``NUMBA_CPU_NAME``), '' for native code."""
    if isa.get("numba_cpu_features") == AVX2_ENV["NUMBA_CPU_FEATURES"]:
        return "avx2"
    return isa.get("numba_cpu_name") or ""


def device_slug(info: dict) -> str:
    name = info.get("gpu") or f"{info['cpu']}-{info.get('cpu_cores_usable', info['cpu_cores'])}c"
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("fastaug", "torch", "numba", "numpy", "triton", "kornia", "albumentations", "cv2", "triton_augment"):
        try:
            m = importlib.import_module(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception as e:  # noqa: BLE001 - an unavailable peer is recorded, not fatal
            out[mod] = f"unavailable ({type(e).__name__})"
    try:
        out["torchvision"] = import_torchvision().__version__
    except Exception as e:  # noqa: BLE001
        out["torchvision"] = f"unavailable ({type(e).__name__})"
    return out


def configure_threads(threads: int) -> dict:
    """Each library's best fair setting on ``threads`` cores: torch (kornia, torchvision, fastaug's
    torch backend) and numba get ``threads`` threads; albumentations runs per image in one process with
    OpenCV's default threading (what users run)."""
    torch.set_num_threads(threads)
    out = {"torch": torch.get_num_threads()}
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        out["numba"] = numba.get_num_threads()
    except ImportError:
        pass
    try:
        import cv2

        out["cv2"] = cv2.getNumThreads()
    except ImportError:
        pass
    return out


# ------------------------------------------------------------------------------------------------
# the run


def run(
    batches: tuple[int, ...] = (64,),
    sizes: tuple[int, ...] = (224,),
    peers: tuple[str, ...] = QUICK_PEERS,
    device: str | None = None,
    threads: int | None = None,
    warmup: int = 2,
    repeats: int = 7,
    backward: bool = True,
    log: Callable[[str], None] = print,
    pipeline: str = "reference",
) -> dict:
    """Time every available peer on every (batch, size); returns the results dict (see ``README.md``)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    thread_cfg = configure_threads(threads)
    table = peer_table(pipeline)
    bw = copy_bandwidth(dev)
    log(f"device {dev}: {cpu_name()}, {threads} threads {thread_cfg}; copy bandwidth {bw / 1e9:.1f} GB/s")
    results = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": device_info(dev),
        "versions": versions(),
        "threads": thread_cfg,
        "pipeline_name": pipeline,
        "pipeline": pipeline_text(pipeline),
        "copy_bandwidth_gb_s": bw / 1e9,
        "cpu_isa": cpu_isa(),
        "load_avg_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "warmup": warmup,
        "repeats": repeats,
        "configs": [],
    }
    out_dtype = _out_dtype(dev)
    for b in batches:
        for s in sizes:
            gen = torch.Generator().manual_seed(b * 1000 + s)
            x = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=gen).to(dev)
            per_image = bytes_per_image(3, s, s, out_dtype)
            cfg = {"batch": b, "size": s, "in": "uint8", "out": str(out_dtype).replace("torch.", ""),
                   "bytes_per_image": per_image, "roofline_img_s": bw / per_image, "peers": {}}  # fmt: skip
            fns, bfns = {}, {}
            for name in peers:
                peer = table[name]
                if dev.type not in peer.devices:
                    continue
                entry = {"label": peer.label, "semantics": peer.semantics}
                cfg["peers"][name] = entry
                try:
                    fns[name] = peer.setup(x, dev)
                    time_call(fns[name], dev, warmup, 0)
                except Exception as e:  # noqa: BLE001 - a missing peer is recorded as unavailable
                    fns.pop(name, None)
                    entry["unavailable"] = f"{type(e).__name__}: {e}"[:200]
                    log(f"  B={b} {s}x{s} {name}: unavailable ({entry['unavailable']})")
                    continue
                if backward and peer.backward is not None:
                    bfn = peer.backward(x, dev)
                    if bfn is None:
                        entry["backward"] = "skipped: no autograd support detected"
                    else:
                        bfns[name] = bfn
            # round robin: repeat r of every peer before repeat r + 1 of any, so that a busy neighbour
            # or frequency drift hits every peer alike (the ratios are what we report)
            times = {n: [] for n in fns}
            for _ in range(repeats):
                for n, fn in fns.items():
                    times[n] += time_call(fn, dev, 0, 1)
            for n, bfn in bfns.items():
                cfg["peers"][n]["forward_backward"] = summarize(time_call(bfn, dev, 1, max(3, repeats // 2)), b)
            for n, ts in times.items():
                entry = cfg["peers"][n]
                entry["forward"] = f = summarize(ts, b)
                f["roofline_fraction"] = f["img_s"] / cfg["roofline_img_s"]
                log(f"  B={b} {s}x{s} {entry['label']:48s} {f['img_s']:9.0f} img/s  (IQR {f['q1']:.0f}-{f['q3']:.0f})"
                    + (f"  fwd+bwd {entry['forward_backward']['img_s']:.0f} img/s" if "forward_backward" in entry else ""))
            cfg["ratios"] = ratios(cfg)
            results["configs"].append(cfg)
    results["load_avg_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return results


def ratios(cfg: dict) -> dict:
    """fastaug (each backend measured) over each peer: ratio of the median img/s, and (``paired``) the
    median over repeats of the per-round ratio (same round of the round robin: robust to a busy machine)."""
    out = {}
    fwd = {n: e["forward"] for n, e in cfg["peers"].items() if "forward" in e}
    for ours in (n for n in fwd if n.startswith("fastaug")):
        out[ours] = {peer: f_["img_s"] and fwd[ours]["img_s"] / f_["img_s"] for peer, f_ in fwd.items() if peer != ours}
        out[ours + " (paired)"] = {
            peer: statistics.median(tp / to for tp, to in zip(f_["times_ms"], fwd[ours]["times_ms"]))
            for peer, f_ in fwd.items() if peer != ours
        }  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------
# outputs


def render_table(results: dict) -> str:
    """A README markdown table of a results dict: img/s (IQR), fastaug's ratio, roofline fraction."""
    lines = []
    dev = results["device"]
    name = dev.get("gpu") or f"{dev['cpu']} ({dev.get('cpu_cores_usable', dev['cpu_cores'])} cores)"
    isa = results.get("cpu_isa", {})
    arch = f"; CPU {isa['llvm_cpu']} ({', '.join(isa['vector_isa'])})" if "llvm_cpu" in isa else ""
    if isa_tag(isa) == "avx2":
        arch += "; **AVX2 code** for every library (numba for haswell without AVX-512, OpenCV and ATen restricted to AVX2)"
    elif isa.get("numba_cpu_name"):
        arch += f"; numba code for {isa['numba_cpu_name']} ({', '.join(isa.get('code_isa', []))})"
    lines.append(f"Device: {name}{arch}; threads {results['threads']}; copy bandwidth {results['copy_bandwidth_gb_s']:.1f} GB/s; "
                 f"{results['date'][:10]}")  # fmt: skip
    for cfg in results["configs"]:
        ours = next((n for n in ("fastaug-numba", "fastaug-triton") if n in cfg["ratios"]), None)
        lines += ["", f"**B={cfg['batch']}, {cfg['size']}x{cfg['size']}, uint8 -> normalized {cfg['out']}**", ""]
        lines.append(f"| library | semantics | img/s (median) | IQR | {ours or 'fastaug'} / this | roofline | fwd+bwd img/s |")
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for n, e in cfg["peers"].items():
            if "forward" not in e:
                lines.append(f"| {e['label']} | {e['semantics']} | unavailable | | | | |")
                continue
            f = e["forward"]
            paired = cfg["ratios"].get(f"{ours} (paired)", {}).get(n, float("nan"))
            ratio = "" if ours is None or n == ours else f"{cfg['ratios'][ours][n]:.2f}x (paired {paired:.2f}x)"
            fb = e.get("forward_backward", {}).get("img_s")
            fb = f"{fb:.0f}" if fb else ("n/a" if e.get("backward") is None else "skipped")
            lines.append(f"| {e['label']} | {e['semantics']} | {f['img_s']:.0f} | {f['q1']:.0f}-{f['q3']:.0f} | {ratio} | "
                         f"{100 * f['roofline_fraction']:.1f}% | {fb} |")  # fmt: skip
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path | None:
    """A grouped bar chart (img/s, log scale) of every configuration; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cfgs = results["configs"]
    names = [n for n in PEERS if any("forward" in c["peers"].get(n, {}) for c in cfgs)]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(cfgs) + 2), 4.5))
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        vals = [c["peers"].get(n, {}).get("forward", {}).get("img_s", 0) for c in cfgs]
        lo = [v - c["peers"].get(n, {}).get("forward", {}).get("q1", v) for v, c in zip(vals, cfgs)]
        hi = [c["peers"].get(n, {}).get("forward", {}).get("q3", v) - v for v, c in zip(vals, cfgs)]
        xs = [j + i * width for j in range(len(cfgs))]
        ax.bar(xs, vals, width, yerr=[lo, hi], label=cfgs[0]["peers"].get(n, {}).get("label", n) if cfgs else n)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cfgs))])
    ax.set_xticklabels([f"B={c['batch']}, {c['size']}²" for c in cfgs])
    ax.set_yscale("log")
    ax.set_ylabel("images / s (median, IQR bars)")
    dev = results["device"]
    name = results.get("pipeline_name", "reference")
    ax.set_title(f"{name} pipeline, {dev.get('gpu') or dev['cpu']} ({results['threads'].get('torch')} threads)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(results: dict, out_dir: Path = RESULTS_DIR) -> tuple[Path, Path | None]:
    """``<out_dir>/<device>-<date>.json`` and the chart next to it (same stem, ``.png``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{device_slug(results['device'])}-{results['date'][:10]}"
    if results.get("pipeline_name", "reference") != "reference":
        stem = f"{results['pipeline_name']}-{stem}"
    if tag := isa_tag(results.get("cpu_isa", {})):
        stem = f"{stem}-{tag}"
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path, plot(results, out_dir / f"{stem}.png")


def run_isas(module: str, isa: str, argv: list[str] | None) -> bool:
    """Run ``python -m module argv --isa native`` in a fresh process under :data:`AVX2_ENV` when ``isa`` asks for AVX2
    code (numba, OpenCV and ATen read their ISA settings once, at import; this checkout stays importable from any
    working directory). ``auto``: both on an AVX-512 host, else native. Returns whether to run native code here."""
    if isa == "auto":
        isa = "both" if "avx512f" in cpu_isa().get("vector_isa", []) else "native"
    if isa in ("avx2", "both") and isa_tag(cpu_isa()) != "avx2":
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, **AVX2_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        args = _without_isa(sys.argv[1:] if argv is None else argv)
        subprocess.run([sys.executable, "-m", module, *args, "--isa", "native"], env=env, check=True)
        return isa == "both"
    return True


def _without_isa(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--isa":
            skip = True
        elif not arg.startswith("--isa="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> dict:
    """``fastaug bench`` / ``python -m benchmarks.bench``: run, write JSON + PNG, print the table."""
    p = argparse.ArgumentParser(prog="fastaug bench", description="side-by-side throughput of the reference pipeline")
    p.add_argument("--batch", type=int, nargs="+", default=[64], help="batch sizes (default 64; full grid: 64 256)")
    p.add_argument("--size", type=int, nargs="+", default=[224], help="square image sizes (default 224; full grid: 224 512)")
    p.add_argument("--peers", nargs="+", default=list(QUICK_PEERS), choices=PEERS, help="libraries to time (fastaug-torch: opt in)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="threads for torch and numba (default: all usable cores)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-backward", action="store_true", help="skip forward+backward timings")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--pipeline", default="reference", choices=PIPELINES, help="which pipeline (see benchmarks/README.md)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--isa", default="auto", choices=("auto", "native", "avx2", "both"),
                   help="native code, AVX2 code for every library (a subprocess with AVX2_ENV), or both; "
                        "auto: both on an AVX-512 machine, else native")
    a = p.parse_args(argv)
    if not run_isas("benchmarks.bench", a.isa, argv):
        return {}
    results = run(tuple(a.batch), tuple(a.size), tuple(a.peers), a.device, a.threads, a.warmup, a.repeats, not a.no_backward,
                  pipeline=a.pipeline)
    if not a.no_write:
        path, png = write(results, a.out_dir)
        print(f"wrote {path}" + (f" and {png}" if png else " (no chart: pip install matplotlib, the `bench` extra)"))
    print(render_table(results))
    return results


if __name__ == "__main__":
    main()
