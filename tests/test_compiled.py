"""torch.compile: a Compose call inside a compiled step is one custom op (fastaug::compose): no graph break, the
same output and image gradient as eager."""

import pytest
import torch

import fastaug
from fastaug import compiled


def _aug(backend="numba"):
    return fastaug.Compose([
        fastaug.RandomResizedCrop(12), fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1), fastaug.RandomHorizontalFlip(),
        fastaug.Normalize([0.5] * 3, [0.25] * 3),
    ], seed=2, backend=backend)  # fmt: skip


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_compiled_step_has_no_graph_break_and_matches_eager(backend):
    aug = _aug(backend)
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
    args = (torch.rand(2, 3, 16, 16), torch.arange(2), torch.tensor(0), aug._compiled_key, "torch")
    torch.library.opcheck(compiled.compose_op, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_a_copied_compose_registers_itself():
    import copy

    aug = _aug("torch")
    other = copy.deepcopy(aug)
    assert other._compiled_key != aug._compiled_key and compiled._pipeline(other._compiled_key) is other
