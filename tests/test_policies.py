"""RandAugment, TrivialAugmentWide, AutoAugment: record replay against independent oracles, the draws'
distribution, determinism, no host sync.

Replay, per sample, in lockstep (so that a 1-LSB float32-vs-float64 difference in one op is not
amplified by the next one into a false failure): the listed geometric ops, composed into one sampling
map built here from ``tests/oracle.py``'s inverse-affine formula, must give the fused geometry; then
every listed color op, run with ``fastaug.functional`` on the current image, must match the oracle's
(and torchvision's) op on that same image; and the chain of functional ops must end exactly at the
fused policy output. Nearest sampling points within 1e-3 px of a rounding tie are excluded (float32
and float64 grids may round them differently); every other pixel is compared.
"""

from __future__ import annotations

import math

import numpy as np
import oracle
import pytest
import torch

import fastaug
import fastaug.functional as F
from fastaug.functional import Canvas
from fastaug.ops.calls import GeometricCall
from fastaug.policies import AutoAugment, MarkovPolicy, RandAugment, SubPolicies, TrivialAugmentWide, subpolicies
from fastaug.transforms import SLOTS_PER_TRANSFORM, Context


def _torchvision_functional():
    import torch.library as lib

    original = lib.register_fake
    lib.register_fake = lambda *a, **k: (lambda f: f)
    try:
        import torchvision.transforms.v2.functional as tf
    except ImportError:
        return None
    finally:
        lib.register_fake = original
    return tf


TF = _torchvision_functional()
GEOMETRIC = ("affine", "rotate")


def images(b: int, dtype: torch.dtype, c: int = 3, h: int = 20, w: int = 24, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random images (a gradient plus noise) so that statistics ops have work to do."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, w).view(1, 1, 1, w) * torch.rand(b, c, 1, 1, generator=g)
    x = (0.6 * ramp + 0.4 * torch.rand(b, c, h, w, generator=g)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


# ------------------------------------------------------------------------------------ oracle replay
def _index_map(name: str, kw: dict, h: int, w: int) -> np.ndarray:
    """Output pixel index -> input pixel index of one listed geometric call, from the oracle's formulas."""
    if name == "rotate":
        m = oracle.inverse_affine_matrix([0.0, 0.0], -float(kw["angle"]), [0.0, 0.0], 1.0, [0.0, 0.0])
    else:
        center = kw.get("center")
        ctr = [0.0, 0.0] if center is None else [center[0] - w * 0.5, center[1] - h * 0.5]
        m = oracle.inverse_affine_matrix(ctr, float(kw["angle"]), kw["translate"], float(kw["scale"]), kw["shear"])
    cx, cy = (w - 1) * 0.5, (h - 1) * 0.5  # oracle._affine_coords: centred pixel coordinates
    return np.array(
        [
            [m[0], m[1], m[2] + cx - m[0] * cx - m[1] * cy],
            [m[3], m[4], m[5] + cy - m[3] * cx - m[4] * cy],
            [0.0, 0.0, 1.0],
        ]
    )


def oracle_geometry(img: torch.Tensor, geo: list[tuple[str, dict]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The listed geometric calls composed into one sampling (oracle), and the pixels safe to compare."""
    _, h, w = img.shape
    safe = torch.ones(h, w, dtype=torch.bool)
    if not geo:
        return img, safe
    total = np.eye(3)
    for name, kw in geo:
        total = total @ _index_map(name, kw, h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    t = torch.from_numpy(total)
    ix = t[0, 0] * xs + t[0, 1] * ys + t[0, 2]
    iy = t[1, 0] * xs + t[1, 1] * ys + t[1, 2]
    mode, fill = geo[0][1]["interpolation"], geo[0][1]["fill"]
    if mode == "nearest":
        safe = ((ix - ix.floor() - 0.5).abs() > 1e-3) & ((iy - iy.floor() - 0.5).abs() > 1e-3)
    return oracle._sample(img, ix, iy, mode, fill).image, safe


def assert_matches(ours: torch.Tensor, ref: torch.Tensor, safe: torch.Tensor, what: str, float_tol: float = 1e-5) -> None:
    """uint8 within 1 LSB, float within ``float_tol``, on the safe pixels."""
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, what
    d = (ours.double() - ref.double()).abs()[safe.expand_as(ref)]
    tol = 1.0 if ref.dtype == torch.uint8 else float_tol
    assert d.numel() == 0 or d.max() <= tol, f"{what}: max diff {d.max():.3g}"


def replay_in_lockstep(x, y, record, reference, max_geometric: int | None = None) -> int:
    """Check every sample (see the module docstring); ``reference(name, kwargs, img)`` is the independent op.
    Returns the number of samples checked (those with at most ``max_geometric`` geometric ops)."""
    geo_calls = [c for c in record.op_calls if isinstance(c, GeometricCall)]
    fused_geo = F.run_calls(x, geo_calls, backend="torch") if geo_calls else x
    checked = 0
    for i in range(x.shape[0]):
        calls = record.calls(i)
        n_geo = sum(n in GEOMETRIC for n, _ in calls)
        assert [n in GEOMETRIC for n, _ in calls] == [True] * n_geo + [False] * (len(calls) - n_geo), "geometry first"
        if max_geometric is not None and n_geo > max_geometric:
            continue
        for _, kwargs in calls:
            assert not any(isinstance(v, torch.Tensor) for v in kwargs.values())
        ref, safe = oracle_geometry(x[i], calls[:n_geo])
        if n_geo == 1:
            ref = reference(*calls[0], x[i])
        assert_matches(fused_geo[i], ref, safe, f"sample {i} geometry {calls[:n_geo]}", float_tol=1e-4)
        img = fused_geo[i]
        for name, kwargs in calls[n_geo:]:
            ours = getattr(F, name)(img, **kwargs, backend="torch")
            assert_matches(ours, reference(name, kwargs, img), torch.ones(1, dtype=torch.bool), f"sample {i} {name} {kwargs}")
            img = ours
        assert (img.double() - y[i].double()).abs().max() <= (0 if y.dtype == torch.uint8 else 1e-6), f"sample {i} {calls}"
        checked += 1
    return checked


def oracle_op(name: str, kwargs: dict, img: torch.Tensor) -> torch.Tensor:
    if name in GEOMETRIC:
        return oracle_geometry(img, [(name, kwargs)])[0]
    return getattr(oracle, name)(img, *kwargs.values())


def torchvision_op(name: str, kwargs: dict, img: torch.Tensor) -> torch.Tensor:
    return getattr(TF, name)(img, **kwargs)


# a found policy: AutoAugment's ops and two ops of the wider search space that the oracle and torchvision have
FOUND = [
    [("Rotate", 0.8, 0.6), ("Hue", 0.7, 0.5)], [("ShearX", 0.9, 0.3), ("Posterize", 0.6, 0.5)],
    [("Gamma", 0.9, 0.8), ("Equalize", 0.5, None)], [("TranslateY", 0.7, 0.4), ("Solarize", 0.8, 0.7)],
    [("Color", 0.6, 0.9), ("Contrast", 0.9, 0.2)],
]  # fmt: skip

POLICIES = [
    pytest.param(lambda: RandAugment(num_ops=3, magnitude=9, seed=1), id="randaugment"),
    pytest.param(lambda: RandAugment(num_ops=2, magnitude=27, fill=[10, 200, 90], seed=7), id="randaugment-fill"),
    pytest.param(lambda: TrivialAugmentWide(seed=2), id="trivialaugmentwide"),
    pytest.param(lambda: AutoAugment("imagenet", seed=3), id="autoaugment-imagenet"),
    pytest.param(lambda: AutoAugment("cifar10", seed=4), id="autoaugment-cifar10"),
    pytest.param(lambda: AutoAugment("svhn", interpolation="bilinear", seed=5), id="autoaugment-svhn-bilinear"),
    pytest.param(lambda: MarkovPolicy.from_autoaugment(length=(1, 3), seed=6), id="markov"),
    pytest.param(lambda: SubPolicies(FOUND, seed=8), id="subpolicies"),
]
DTYPES = [pytest.param(torch.uint8, id="uint8"), pytest.param(torch.float32, id="float32")]


def _fill_for(policy, dtype):
    if policy.fill is not None and dtype != torch.uint8:
        policy.fill = [v / 255.0 for v in policy.fill]  # fill lives in the image's value range
    return policy


@pytest.mark.parametrize("make", POLICIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_record_replays_against_the_oracle(make, dtype):
    policy = _fill_for(make(), dtype)
    x = images(16, dtype)
    y, record = policy(x, indices=torch.arange(100, 116), epoch=2, return_record=True, backend="torch")
    assert y.shape == x.shape and y.dtype == x.dtype
    assert replay_in_lockstep(x, y, record, oracle_op) == 16
    assert sum(not torch.equal(y[i], x[i]) for i in range(16)) >= 8  # the policy did something to most samples


@pytest.mark.skipif(TF is None, reason="torchvision is not installed")
@pytest.mark.parametrize("make", POLICIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_record_replays_with_torchvision(make, dtype):
    """Samples with at most one geometric op (torchvision would resample twice; the oracle test covers composition)."""
    policy = _fill_for(make(), dtype)
    x = images(16, dtype, seed=1)
    y, record = policy(x, indices=torch.arange(16), epoch=5, return_record=True, backend="torch")
    assert replay_in_lockstep(x, y, record, torchvision_op, max_geometric=1) >= 8


@pytest.mark.parametrize("c", [1, 3])
def test_numba_backend_matches_the_reference(c):
    x = images(16, torch.uint8, c=c, h=17, w=19)
    for policy in (RandAugment(num_ops=2), TrivialAugmentWide(), AutoAugment("cifar10")):
        ref = policy(x, indices=torch.arange(16), backend="torch")
        assert torch.equal(policy(x, indices=torch.arange(16), backend="numba"), ref)
    xf = images(16, torch.float32, c=c, h=17, w=19)
    ref = RandAugment()(xf, backend="torch")
    assert (RandAugment()(xf, backend="numba") - ref).abs().max() <= 1e-5


# --------------------------------------------------------------------------------- draw statistics
N = 20000
Z = 4.5  # binomial bounds: |observed - p| <= Z * sd (fixed seeds: deterministic; a correct sampler passes with margin)


def draws(policy, seed: int = 11, h: int = 32, w: int = 32):
    ctx = Context(Canvas(N, 3, h, w, torch.device("cpu")), seed, 0, torch.arange(N), SLOTS_PER_TRANSFORM, True)
    return policy.draw(ctx)


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_uniform(values: torch.Tensor, n: int, what: str) -> None:
    counts = torch.bincount(values.flatten(), minlength=n).double()
    assert counts.numel() == n, f"{what}: values out of range"
    expected = values.numel() / n
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < chi2_critical(n - 1), f"{what}: chi-square {stat:.1f} for counts {counts.tolist()}"


def assert_rate(hits: torch.Tensor, p: float, what: str) -> None:
    n = hits.numel()
    rate = float(hits.double().mean())
    assert abs(rate - p) <= Z * math.sqrt(p * (1 - p) / n) + 1e-12, f"{what}: rate {rate:.4f} vs {p} over {n}"


# torchvision's magnitude bins, written here from its documentation of the op spaces
def _bins(name: str, n: int, h: int, w: int, wide: bool) -> torch.Tensor | None:
    lin = {
        "ShearX": 0.99 if wide else 0.3, "ShearY": 0.99 if wide else 0.3,
        "TranslateX": 32.0 if wide else 150.0 / 331.0 * w, "TranslateY": 32.0 if wide else 150.0 / 331.0 * h,
        "Rotate": 135.0 if wide else 30.0, "Brightness": 0.99 if wide else 0.9, "Color": 0.99 if wide else 0.9,
        "Contrast": 0.99 if wide else 0.9, "Sharpness": 0.99 if wide else 0.9,
    }  # fmt: skip
    if name in lin:
        return torch.linspace(0.0, lin[name], n)
    if name == "Posterize":
        return (8 - (torch.arange(n) / ((n - 1) / (6 if wide else 4)))).round().int()
    if name == "Solarize":
        return torch.linspace(1.0, 0.0, n)
    return None


SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}
RA_SPACE = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
            "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")  # fmt: skip
AA_SPACE = RA_SPACE[1:] + ("Invert",)


def check_signs_and_magnitudes(d, wide: bool, n_bins: int, h: int = 32, w: int = 32) -> None:
    names = d.space
    for k, name in enumerate(names):
        sel = (d.op == k) & d.applied
        if not bool(sel.any()):
            continue
        bins = _bins(name, n_bins, h, w, wide)
        mags = d.magnitude[sel]
        if bins is None:
            assert bool((mags == 0).all()), name
            continue
        expected = bins.double()[d.bin[sel]]
        assert torch.equal(mags.abs(), expected.abs()), name
        nonzero = expected != 0
        if name in SIGNED:
            assert_rate(mags[nonzero] < 0, 0.5, f"{name} sign")
        else:
            assert bool((mags == expected).all()), f"{name} is unsigned"


def test_randaugment_draws_uniform_ops_and_signs():
    d = draws(RandAugment(num_ops=2, magnitude=9))
    assert d.space == RA_SPACE and d.op.shape == (N, 2)
    for s in range(2):
        assert_uniform(d.op[:, s], 14, f"op slot {s}")
    assert bool((d.bin == 9).all()) and bool(d.applied.all())
    check_signs_and_magnitudes(d, wide=False, n_bins=31)
    # the two slots are independent: pairs are uniform over 14 x 14
    assert_uniform(d.op[:, 0] * 14 + d.op[:, 1], 196, "op pairs")


def test_trivialaugmentwide_draws_uniform_ops_and_bins():
    d = draws(TrivialAugmentWide(num_magnitude_bins=31))
    assert d.space == RA_SPACE and d.op.shape == (N, 1)
    assert_uniform(d.op, 14, "op")
    assert_uniform(d.bin, 31, "bin")
    check_signs_and_magnitudes(d, wide=True, n_bins=31)


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_autoaugment_draws_subpolicies_and_probabilities(policy):
    d = draws(AutoAugment(policy))
    subs = subpolicies(policy)
    assert d.space == AA_SPACE and len(subs) == 25
    assert_uniform(d.subpolicy, 25, "sub-policy")
    for k, sub in enumerate(subs):
        rows = d.subpolicy == k
        for s, (name, p, bin_) in enumerate(sub):
            assert bool((d.op[rows, s] == AA_SPACE.index(name)).all())
            assert bool((d.bin[rows, s] == (bin_ or 0)).all())
            assert_rate(d.applied[rows, s], p, f"sub-policy {k} op {s} ({name})")
    check_signs_and_magnitudes(d, wide=False, n_bins=10)


def test_autoaugment_subpolicies_match_torchvision():
    if TF is None:
        pytest.skip("torchvision is not installed")
    import torchvision.transforms.v2 as tv

    for policy in ("imagenet", "cifar10", "svhn"):
        ref = tv.AutoAugment(tv.AutoAugmentPolicy(policy))._policies
        assert [tuple(sub) for sub in ref] == subpolicies(policy)


def _expected_calls(name: str, m: float, h: int, w: int, bound: float, interp: str = "nearest", fill=None):
    """torchvision's op -> functional call rule (magnitude already signed)."""
    affine = {"angle": 0.0, "scale": 1.0, "interpolation": interp, "fill": fill}
    if name in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(m))
        shear = [deg, 0.0] if name == "ShearX" else [0.0, deg]
        return "affine", {**affine, "translate": [0.0, 0.0], "shear": shear, "center": [0.0, 0.0]}
    if name in ("TranslateX", "TranslateY"):
        t = [float(int(m)), 0.0] if name == "TranslateX" else [0.0, float(int(m))]
        return "affine", {**affine, "translate": t, "shear": [0.0, 0.0], "center": [w * 0.5, h * 0.5]}
    if name == "Rotate":
        return "rotate", {"angle": m, "interpolation": interp, "fill": fill}
    factor = {"Brightness": ("adjust_brightness", "brightness_factor"), "Color": ("adjust_saturation", "saturation_factor"),
              "Contrast": ("adjust_contrast", "contrast_factor"), "Sharpness": ("adjust_sharpness", "sharpness_factor")}  # fmt: skip
    if name in factor:
        fn, arg = factor[name]
        return fn, {arg: 1.0 + m}
    if name == "Posterize":
        return "posterize", {"bits": int(m)}
    if name == "Solarize":
        return "solarize", {"threshold": bound * m}
    if name == "Hue":  # SubPolicies' wider space (fastaug.policies.search_ops)
        return "adjust_hue", {"hue_factor": m}
    if name == "Gamma":
        return "adjust_gamma", {"gamma": 1.0 + m, "gain": 1.0}
    return {"AutoContrast": "autocontrast", "Equalize": "equalize", "Invert": "invert"}.get(name), {}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", POLICIES)
def test_record_lists_torchvisions_calls_for_the_draws(make, dtype):
    """Each sample's listing equals torchvision's op -> call rule applied to that sample's draws."""
    policy = _fill_for(make(), dtype)
    b, h, w = 64, 21, 26
    x = images(b, dtype, h=h, w=w)
    idx = torch.arange(b) * 7 + 3
    _, record = policy(x, indices=idx, epoch=1, return_record=True, backend="torch")
    ctx = Context(Canvas(b, 3, h, w, x.device), policy.seed, 1, idx, SLOTS_PER_TRANSFORM, dtype == torch.uint8)
    d = policy.draw(ctx)
    bound = 255.0 if dtype == torch.uint8 else 1.0
    for i in range(b):
        geo, color = [], []
        for s in range(d.op.shape[1]):
            if not bool(d.applied[i, s]):
                continue
            name = d.space[int(d.op[i, s])]
            fn, kw = _expected_calls(name, float(d.magnitude[i, s]), h, w, bound, policy.interpolation, policy.fill)
            if fn is not None:
                (geo if fn in GEOMETRIC else color).append((fn, kw))
        listed = record.calls(i)
        assert [n for n, _ in listed] == [n for n, _ in geo + color], i
        for (_, got), (_, want) in zip(listed, geo + color):
            assert got.keys() == want.keys()
            for k, v in want.items():
                if isinstance(v, float):
                    assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-6), (i, k)
                elif isinstance(v, list) and v and isinstance(v[0], float):
                    assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), (i, k)
                else:
                    assert got[k] == v, (i, k)


# -------------------------------------------------------------------------- composition, determinism
def test_policy_inside_compose_is_one_plan():
    from fastaug.compiler import compile_plan

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    aug = fastaug.Compose([fastaug.RandomResizedCrop(16), RandAugment(), fastaug.Normalize(mean, std)], seed=3)
    x = images(8, torch.uint8)
    y, record = aug(x, indices=torch.arange(8), return_record=True, backend="torch")
    assert y.shape == (8, 3, 16, 16) and y.dtype == torch.float32
    plan = compile_plan(record.op_calls, tuple(x.shape), x.dtype, x.device)
    # geometry (crop + the policy's ops) and both slots in one stage: each slot may sharpen, a SHARPNESS folded in there
    assert len(plan.stages) == 1 and plan.stages[0].geometry is not None
    assert [f.position for f in plan.stages[0].folds] == [0, 1] and plan.stages[0].program.shape[1] == 2
    for i in range(8):
        names = [n for n, _ in record.calls(i)]
        assert names[0] == "resized_crop" and names[-1] == "normalize"
    assert torch.equal(record.replay(x, backend="torch"), y)


def test_module_form_equals_compose_form():
    x = images(6, torch.uint8)
    for policy in (RandAugment(seed=4), TrivialAugmentWide(seed=4), AutoAugment(seed=4), SubPolicies(FOUND, seed=4)):
        pipe = fastaug.Compose([policy], seed=4)
        a = policy(x, indices=torch.arange(6), epoch=3, backend="torch")
        assert torch.equal(a, pipe(x, indices=torch.arange(6), epoch=3, backend="torch"))


def _markov(seed: int) -> MarkovPolicy:
    return MarkovPolicy.from_autoaugment(length=3, seed=seed)


def _found(seed: int) -> SubPolicies:
    return SubPolicies(FOUND, seed=seed)


@pytest.mark.parametrize("make", [RandAugment, TrivialAugmentWide, AutoAugment, _markov, _found])
def test_determinism_split_batches_and_epochs(make):
    x = images(10, torch.uint8)
    idx = torch.arange(50, 60)
    a = make(seed=9)(x, indices=idx, epoch=1, backend="torch")
    assert torch.equal(make(seed=9)(x, indices=idx, epoch=1, backend="torch"), a)
    parts = [make(seed=9)(x[s], indices=idx[s], epoch=1, backend="torch") for s in (slice(0, 3), slice(3, 10))]
    assert torch.equal(torch.cat(parts), a)
    assert not torch.equal(make(seed=9)(x, indices=idx, epoch=2, backend="torch"), a)
    assert not torch.equal(make(seed=10)(x, indices=idx, epoch=1, backend="torch"), a)


def test_num_ops_zero_is_identity_and_bad_arguments():
    x = images(3, torch.uint8)
    assert torch.equal(RandAugment(num_ops=0)(x, backend="torch"), x)
    with pytest.raises(ValueError, match="num_ops"):
        RandAugment(num_ops=-1)
    with pytest.raises(TypeError, match="num_ops"):
        RandAugment(num_ops=1.5)
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(magnitude=31)
    with pytest.raises(ValueError, match="num_magnitude_bins"):
        TrivialAugmentWide(num_magnitude_bins=1)
    with pytest.raises(ValueError, match="policy"):
        AutoAugment("mnist")
    with pytest.raises(ValueError, match="interpolation"):
        RandAugment(interpolation="bicubic")
    with pytest.raises(TypeError, match="fill"):
        RandAugment(fill="white")
    with pytest.raises(TypeError, match="seed"):
        AutoAugment(seed=1.0)
    with pytest.raises(ValueError, match="channels"):
        RandAugment()(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), backend="torch")


def test_policies_pickle_and_repr():
    import pickle

    p = AutoAugment("svhn", fill=[1, 2, 3], seed=5)
    x = images(4, torch.uint8)
    a = p(x, backend="torch")
    q = pickle.loads(pickle.dumps(p))
    assert torch.equal(q(x, backend="torch"), a)
    assert repr(q) == "AutoAugment(policy='svhn', interpolation='nearest', fill=[1, 2, 3], seed=5)"
    assert "Compose" in repr(fastaug.Compose([RandAugment()]))


# ---------------------------------------------------------------------------------------- host sync
SYNCS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu")


def _forbid_syncs(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("host sync in a policy call")

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, forbidden)


def test_policy_call_does_not_sync_on_a_device(monkeypatch):
    """The whole call (draws, compile, engine, reference kernels) on the meta device, where any read-back
    raises, with the read-back methods patched to raise as well. (On CPU the engine and the input checks
    deliberately read values back: there it costs nothing.)"""
    _forbid_syncs(monkeypatch)
    x = torch.empty(8, 3, 20, 24, dtype=torch.uint8, device="meta")
    idx = torch.arange(8, device="meta")
    for policy in (RandAugment(), TrivialAugmentWide(), AutoAugment("cifar10"), AutoAugment("svhn", fill=[1, 2, 3])):
        y = policy(x, indices=idx, epoch=1, backend="torch")
        assert y.shape == x.shape and y.device.type == "meta"


def test_policy_draw_and_compile_do_not_sync_on_cpu(monkeypatch):
    from fastaug.compiler import compile_plan

    x = images(8, torch.uint8)
    idx = torch.arange(8)
    pipes = [fastaug.Compose([p], seed=1) for p in (RandAugment(), TrivialAugmentWide(), AutoAugment("cifar10"))]
    # CPU draws are hashed in one compiled call (reading the indices is free there); the device form is checked here
    rng = fastaug.rng
    monkeypatch.setattr(rng, "_hash32", lambda s, e, i, slot, n: rng.hash32_torch(s, e, i.to(torch.int64), slot, n))
    monkeypatch.setattr(rng, "_hash32_table_uniforms",
                        lambda s, e, i, layout: (rng.hash32_table_torch(s, e, i, layout.table(i.shape[0], i.device)), None))
    _forbid_syncs(monkeypatch)
    for pipe in pipes:
        for _ in range(2):  # the second call draws from its bank (rng.bank)
            calls = pipe.draw(x, idx, 1)
            compile_plan(calls, tuple(x.shape), x.dtype, x.device)


@pytest.mark.gpu
def test_policy_cuda_graph_capture_and_replay():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = images(16, torch.uint8, h=64, w=64).cuda()
    idx = torch.arange(16, device="cuda")
    for policy in (RandAugment(), TrivialAugmentWide(), AutoAugment()):
        want = policy(x, indices=idx, epoch=1)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                policy(x, indices=idx, epoch=1)  # warm-up: kernels compiled, tables cached
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = policy(x, indices=idx, epoch=1)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, want)
        torch.cuda.synchronize()
        assert torch.equal(policy(x.cpu(), indices=idx.cpu(), epoch=1, backend="torch"), want.cpu())
