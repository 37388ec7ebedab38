"""The public entry points of the CUDA path, run on fake CUDA tensors (``fake_cuda``): what each call dispatches.

``python tests/cuda_cases.py`` prints the table of torch ops, Triton launches and host <-> device copies per call
(the numbers quoted in ``benchmarks/README.md``); ``test_cuda_host.py`` asserts on the same runs."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fake_cuda import CudaLog, fake_cuda  # noqa: E402

import fastaug as fa  # noqa: E402

B, H, W = 8, 224, 224
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _bench(pipeline: str):
    def build(float_input: bool = False):
        from benchmarks import bench

        return bench.fastaug_pipeline(torch.device("cuda"), float_input=float_input, pipeline=pipeline)

    return build


CASES = {
    "reference pipeline": _bench("reference"),
    "blur-noise pipeline": _bench("blur-noise-dropout"),
    "RandAugment + Normalize": lambda: fa.Compose([fa.RandAugment(2, 9), fa.Normalize(MEAN, STD)]),
    "TrivialAugmentWide + Normalize": lambda: fa.Compose([fa.TrivialAugmentWide(), fa.Normalize(MEAN, STD)]),
    "AutoAugment + Normalize": lambda: fa.Compose([fa.AutoAugment(), fa.Normalize(MEAN, STD)]),
    "MarkovPolicy(length=3) + Normalize": lambda: fa.Compose([fa.MarkovPolicy.from_autoaugment(length=3), fa.Normalize(MEAN, STD)]),
    "XYMasking + RandomErasing": lambda: fa.Compose([
        fa.XYMasking(num_masks_x=2, num_masks_y=2, mask_x_length=(10, 20), mask_y_length=(10, 20)),
        fa.RandomErasing(p=1.0), fa.Normalize(MEAN, STD)]),  # fmt: skip
    "RandomPerspective + RandomResizedCrop": lambda: fa.Compose([fa.RandomPerspective(p=1.0), fa.RandomResizedCrop(128),
                                                                 fa.Normalize(MEAN, STD)]),  # fmt: skip
    "ElasticTransform + RandomFog": lambda: fa.Compose([fa.ElasticTransform(), fa.RandomFog(p=1.0), fa.Normalize(MEAN, STD)]),
}

_FLOAT_AWARE = ("reference pipeline", "blur-noise pipeline")  # their solarize threshold follows the input range


@contextlib.contextmanager
def spy_plans():
    """Every Plan compiled inside the block, in order, as (plan, shape, dtype): a Compose's, and functional ops' (such as
    ElasticTransform's displacement field, compiled inside its draw)."""
    import fastaug.compose
    import fastaug.functional

    seen, original = [], fastaug.compose.compile_plan

    def spy(calls, shape, dtype, device):
        seen.append((original(calls, shape, dtype, device), tuple(shape), dtype))
        return seen[-1][0]

    modules = (fastaug.compose, fastaug.functional)
    for module in modules:
        module.compile_plan = spy
    try:
        yield seen
    finally:
        for module in modules:
            module.compile_plan = original


def run_case(name: str, host_indices: bool = False, dtype: torch.dtype = torch.uint8, device_epoch: bool = False) -> tuple[CudaLog, object]:
    """Build the case's pipeline (on the host, as a user does), call it twice on a fake CUDA batch (epochs 0 and 1) and
    return the log of the second call (the first builds the cached constants) and the second output.
    ``host_indices``: the dataset indices as a CPU tensor (a DataLoader's), else on the device. ``device_epoch``: the
    epoch as a 0-dim device tensor (what a captured CUDA graph reads at replay). Forward only: autograd
    on a fake CUDA tensor aborts a CPU-only torch (its gradient accumulator opens a CUDA device guard in C++)."""
    pipe = CASES[name](float_input=True) if dtype.is_floating_point and name in _FLOAT_AWARE else CASES[name]()
    host_idx = torch.arange(B)
    with fake_cuda() as log:
        idx = host_idx if host_indices else torch.arange(B, device="cuda")
        for epoch in range(2):
            x = torch.empty(B, 3, H, W, dtype=dtype, device="cuda")
            log.reset()
            out = pipe(x, indices=idx, epoch=torch.full((), epoch, dtype=torch.int64, device="cuda") if device_epoch else epoch)
    return log, out


BACKWARD_CASES = ("reference pipeline", "RandAugment + Normalize", "TrivialAugmentWide + Normalize", "XYMasking + RandomErasing")


def run_backward(name: str) -> tuple[CudaLog, object, object]:
    """The image gradient of the case's second call on a float32 batch: ``fastaug.autograd.plan_backward`` on the call's
    Plan with the forward's statistics tables, as ``PlanFunction.backward`` runs it (the autograd engine itself cannot
    run on fake CUDA tensors). Returns the log of the second backward alone, the gradient and the Plan."""
    from fastaug import autograd
    from fastaug.plan import unfold

    pipe = CASES[name](float_input=True) if name in _FLOAT_AWARE else CASES[name]()
    with spy_plans() as plans, fake_cuda() as log:
        idx = torch.arange(B, device="cuda")
        x = torch.empty(B, 3, H, W, dtype=torch.float32, device="cuda")
        for epoch in range(2):
            out = pipe(x, indices=idx, epoch=epoch)
        plan = unfold(plans[-1][0])  # as autograd.execute runs it
        tensors = autograd.plan_tensors(plan)
        _, tables = autograd._fused_forward(plan, x, "triton")
        grad = torch.empty(out.shape, dtype=out.dtype, device="cuda")
        for _ in range(2):  # the second is logged (the first builds the backward's cached constants)
            log.reset()
            gx, _ = autograd.plan_backward(autograd._Spec(plan, "triton", False), x, tensors, grad, True,
                                           [False] * len(tensors), tables)  # fmt: skip
    return log, gx, plan


def draw_launches(log: CudaLog) -> int:
    """The parameter-draw launches of a logged call (``rng.bank``'s one, and any single draw)."""
    return log.launches.count("hash32_kernel") + log.launches.count("hash32_table_kernel")


def table() -> str:
    rows = ["| call (B=8, 3x224x224, fake CUDA) | torch ops dispatched | of them kernels | Triton: apply + reduce + tables + geometry "
            "+ round setup + fold fill | draws | host->device | device->host |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in CASES:
        log, _ = run_case(name)
        s = log.summary()
        draws = draw_launches(log)
        kinds = [log.launches.count(k) for k in ("apply_kernel", "reduce_kernel", "stats_tables_kernel", "compose_kernel",
                                                  "round_setup_kernel", "fold_fill_kernel")]
        rows.append(f"| {name} | {s['torch_ops']} | {s['torch_kernel_ops']} | {' + '.join(map(str, kinds))} | {draws} | "
                    f"{s['host_to_device']} | {s['device_to_host']} |")  # fmt: skip
    for name in BACKWARD_CASES:
        log, _, _ = run_backward(name)
        s = log.summary()
        rows.append(f"| backward of {name} (image gradient) | {s['torch_ops']} | {s['torch_kernel_ops']} | "
                    f"{log.launches.count('backward_kernel')} backward | 0 | {s['host_to_device']} | {s['device_to_host']} |")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
