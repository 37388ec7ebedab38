"""Which runtime ints the Triton kernels leave unspecialised (``do_not_specialize``), and that a batch of another
resolution, another statistics pass (KT) or another seed / epoch (the hash prefix) gets the same specialisation, so
it reuses the compiled kernel. No GPU and no compile: the specialisation key is read off ``aot.ast_source``, which
applies Triton's JIT rules (ints == 1 become constants, 16-divisible ints get a hint) and the kernels' lists."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from fastaug.kernels.triton import aot, fused  # noqa: E402
from fastaug.kernels.triton import backward as tb  # noqa: E402

from fastaug.plan import Op  # noqa: E402

CHOSEN = {
    "apply_kernel": ("H", "W", "Ho"),
    "reduce_kernel": ("H", "W"),
    "hash32_kernel": ("h0", "slot"),
    "hash32_table_kernel": ("h0",),
    "backward_kernel": ("KT", "H", "W", "Ho", "Wo", "ssb", "ssc", "ssh", "gsb", "gsc", "gsh"),
    "stats_tables_kernel": ("B", "K", "pixels"),
    "compose_kernel": ("B",),
    "round_setup_kernel": ("B", "K", "SS", "GS", "ES"),
    "fold_fill_kernel": ("H", "W"),
}


def _fn(name: str):
    if name == "backward_kernel":
        return tb.kernel_module(interpret=False).backward_kernel
    return aot.kernel_of(fused.Launch(name, (1, 1), {}, {}))


def _key(spec: fused.Launch):
    src = aot.ast_source(spec, _fn(spec.kernel))
    return repr((src.signature, src.constants, src.attrs))


@pytest.mark.parametrize("name", sorted(CHOSEN))
def test_do_not_specialize_lists(name):
    fn = _fn(name)
    assert tuple(fn.do_not_specialize) == CHOSEN[name]
    assert aot.unspecialized(fn) == CHOSEN[name]
    assert {p.name for p in fn.params if p.do_not_specialize} == set(CHOSEN[name])
    # kept, because they make the plain passes' loads and stores 16 bytes wide: Wo and the strides of the forward
    if name == "apply_kernel":
        assert not {"Wo", "ssb", "ssc", "ssh", "ssw", "osb", "osc", "osh", "osw"} & set(CHOSEN[name])


def test_unspecialised_ints_stay_runtime_arguments():
    """Every listed argument is a runtime int of its kernel's launches (not a constexpr, not a pointer), and ``ast_source``
    neither folds it in when it is 1 nor gives it a divisibility hint when it is 16-divisible."""
    specs = {**aot.representative_launches(), **tb.representative_launches()}
    for spec in specs.values():
        fn = _fn(spec.kernel)
        src = aot.ast_source(spec, fn)
        for name in CHOSEN[spec.kernel]:
            assert name in spec.args and isinstance(spec.args[name], int), (spec.kernel, name)
            i = fn.arg_names.index(name)
            assert src.signature[name] in ("i32", "i64") and (i,) not in src.attrs, (spec.kernel, name)
        sixteen = {**spec.args, **{n: 16 for n in CHOSEN[spec.kernel]}}
        one = {**spec.args, **{n: 1 for n in CHOSEN[spec.kernel]}}
        base = _key(spec)
        for args in (sixteen, one):
            assert _key(fused.Launch(spec.kernel, spec.grid, args, spec.constexprs)) == base, spec.kernel


def _apply_launch(h: int, w: int, ho: int, wo: int) -> fused.Launch:
    b, c = 2, 3
    src = torch.zeros(b, c, h, w, dtype=torch.uint8)
    st = aot._stage(b, [(0, 1, 2)], 1, geometry=aot._geometry(b, c, True, True, False), out_size=(ho, wo))
    return fused.prepare_apply(src, st, *aot._tables(b, 1, c), aot._epilogue(b, c, torch.float16, True, 0),
                               torch.empty(b, c, ho, wo, dtype=torch.float16))


def test_other_resolutions_share_the_forward_specialisation():
    """A resized batch from 240, 241, 1 or 33 input rows into 224, 225 or 231 output rows: one specialisation. (The input
    width, and so the row stride, keeps its divisibility: 320 here; the output width too: 224.)"""
    base = _key(_apply_launch(240, 320, 224, 224))
    for h, ho in ((241, 224), (240, 225), (1, 224), (33, 231)):
        assert _key(_apply_launch(h, 320, ho, 224)) == base, (h, ho)
    b, c = 2, 3
    reduce = [fused.prepare_reduce(torch.zeros(b, c, h, 320, dtype=torch.uint8), aot._stage(b, [(0, 2)], 1),
                                   *aot._tables(b, 1, c), 0) for h in (224, 225)]
    assert reduce[0].args["H"] != reduce[1].args["H"]  # (Ho == H without geometry: kept specialised in reduce)
    key0, key1 = (aot.ast_source(s, _fn("reduce_kernel")) for s in reduce)
    i_h = _fn("reduce_kernel").arg_names.index("H")
    assert key0.signature["H"] == key1.signature["H"] == "i32" and (i_h,) not in key0.attrs


def test_seeds_and_epochs_share_the_hash_specialisation():
    """h0 is a hash of (seed, epoch): 16-divisible or 1 for some epochs, the same kernel for all."""
    idx = torch.arange(8)
    for make in (lambda h0: fused.prepare_hash32(h0, idx, 5, 3)[1],
                 lambda h0: fused.prepare_hash32_table(h0, idx, torch.tensor([[64], [0], [0], [1]]))[1]):
        keys = [_key(make(h0)) for h0 in (0x9E3779B9, 0x9E3779B0, 1)]
        assert keys[0] == keys[1] == keys[2]


def test_backward_passes_and_resolutions_share_a_specialisation():
    """The statistics passes (KT = 2, 1, 0) and the final pass (KT = -1) of a stage differ only in constexprs; a batch
    of 224x240, 225x232 and 33x236 (one tile shape; their strides 16-divisible or not) give the same specialisation."""
    b, c = 2, 3
    keys = {}
    for h, w in ((224, 240), (225, 232), (33, 236)):
        x = torch.zeros(b, c, h, w)
        stage = aot._stage(b, [(0, int(Op.CONTRAST)), (0, int(Op.AUTOCONTRAST)), (0, int(Op.CONTRAST))], 3)
        launches, _ = tb.prepare_backward(x, stage, *aot._tables(b, 3, c), None, torch.zeros(b, c, h, w),
                                          tb.StageNeeds(src=True, params=True))
        assert [s.args["KT"] for s in launches] == [2, 1, 0, -1]
        passes = {_key(s) for s in launches[:-1]}
        assert len(passes) == 1
        keys[(h, w)] = (passes.pop(), _key(launches[-1]))
    assert len(set(keys.values())) == 1
