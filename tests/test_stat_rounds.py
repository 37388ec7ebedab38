"""Statistics rounds per stage: the compiler's static bound on the statistics ops one sample runs."""

import pytest
import torch

import fastaug as fa
import fastaug.functional as F
from fastaug.compiler import compile_plan
from fastaug.engine import stat_positions


def _stages(pipe: fa.Compose, n: int = 64):
    x = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)
    plan = compile_plan(pipe.draw(x, torch.arange(n), 0), tuple(x.shape), x.dtype, x.device)
    return [s for s in plan.stages if s.stat_slots]


@pytest.mark.parametrize(("transforms", "rounds"), [
    ([fa.ColorJitter(0.4, 0.4, 0.4, 0.1)], [1]),  # CONTRAST in one of four slots: one round
    ([fa.ColorJitter(0.4, 0.4, 0.4, 0.1), fa.RandomAutocontrast(p=0.5)], [2]),
    ([fa.AutoAugment()], [2]),  # two independent slots of a sub-policy
    ([fa.ColorJitter(0.4, 0.4, 0.4, 0.1), fa.ColorJitter(0.2, 0.2)], [2]),  # two permutations: one round each
    ([fa.ColorJitter(brightness=0.4, saturation=0.4)], []),  # no statistics op
    ([fa.RandAugment(2, 9)], [2]),  # each slot may be SHARPNESS, folded in (plan.Fold): one stage, a round per slot
])  # fmt: skip
def test_rounds_bound_the_busiest_sample(transforms, rounds):
    stages = _stages(fa.Compose(transforms, seed=1))
    assert [s.rounds() for s in stages] == rounds
    for s in stages:
        assert int(stat_positions(s).sum(1).max()) <= s.rounds()


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_one_round_gives_contrast_the_mean_its_earlier_ops_left(backend):
    """ColorJitter's single round (CONTRAST anywhere among four slots) + EQUALIZE: each sample equals its listed
    calls applied one at a time with fastaug.functional (each op's statistics from the image as it reaches it)."""
    pipe = fa.Compose([fa.ColorJitter(0.5, 0.5, 0.5, 0.2), fa.RandomEqualize(p=0.5), fa.RandomAutocontrast(p=0.5)],
                      seed=3, backend=backend)  # fmt: skip
    x = torch.randint(0, 256, (24, 3, 20, 24), dtype=torch.uint8)
    y, record = pipe(x, indices=torch.arange(24), return_record=True)
    positions = set()
    for i in range(24):
        img = x[i]
        names = []
        for name, kwargs in record.calls(i):
            img = getattr(F, name)(img, **kwargs, backend="torch")
            names.append(name)
        positions.add(names.index("adjust_contrast") if "adjust_contrast" in names else -1)
        assert torch.equal(img, y[i]), (i, names)
    assert len(positions - {-1}) >= 3  # CONTRAST seen at several of its slots
