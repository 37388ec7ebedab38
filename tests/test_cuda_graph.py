"""Native CUDA (``pytest -m gpu`` on a lent GPU; ``scripts/gpu_check.sh`` runs it): a whole Compose or policy call
captured in a CUDA graph replays with fresh draws from a device epoch tensor, equal to the eager call."""

from __future__ import annotations

import pytest
import torch

import fastaug as fa

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _pipelines():
    from benchmarks import bench

    return {
        "reference": bench.fastaug_pipeline(torch.device("cuda"), pipeline="reference"),
        "blur-noise": bench.fastaug_pipeline(torch.device("cuda"), pipeline="blur-noise-dropout"),
        "randaugment": fa.Compose([fa.RandAugment(2, 9), fa.Normalize(MEAN, STD)]),
        "markov": fa.Compose([fa.MarkovPolicy.from_autoaugment(length=(1, 3)), fa.Normalize(MEAN, STD)]),
        "xymasking": fa.Compose([fa.XYMasking(num_masks_x=2, num_masks_y=2, mask_x_length=(10, 20), mask_y_length=(10, 20)),
                                 fa.Normalize(MEAN, STD)]),  # fmt: skip
    }


@pytest.mark.parametrize("name", ["reference", "blur-noise", "randaugment", "markov", "xymasking"])
def test_graph_replay_with_a_new_epoch_equals_eager(name):
    aug = _pipelines()[name]
    x = torch.randint(0, 256, (16, 3, 96, 128), dtype=torch.uint8, device="cuda")
    idx = torch.arange(100, 116, device="cuda")
    epoch = torch.zeros((), dtype=torch.int64, device="cuda")
    aug(x, indices=idx, epoch=epoch)  # compile the kernels and fill the constant caches outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = aug(x, indices=idx, epoch=epoch)
    for e in (3, 4):
        epoch.fill_(e)
        graph.replay()
        torch.cuda.synchronize()
        want = aug(x, indices=idx.cpu(), epoch=e)
        assert torch.equal(out, want), (name, e)
    assert not torch.equal(aug(x, indices=idx, epoch=3), aug(x, indices=idx, epoch=4))  # the epoch changes the draws
