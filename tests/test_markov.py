"""MarkovPolicy: fitting (rows are distributions, magnitudes as weighted normals), sampling against the fitted
chain (chi-square), JSON round trips and bad input. Record replay against the oracle / torchvision and split-batch
determinism run with the other policies in ``test_policies.py``."""

from __future__ import annotations

import json

import pytest
import torch
from scipy import stats

import fastaug
from fastaug.functional import Canvas
from fastaug.policies.markov import STATES, MarkovPolicy
from fastaug.transforms import Context

N = len(STATES)


def _draw(policy: MarkovPolicy, b: int, epoch: int = 0):
    ctx = Context(Canvas(b, 3, 32, 32, torch.device("cpu")), 0, epoch, torch.arange(b), 64, True)
    return policy.draw(ctx)


def test_every_row_is_a_distribution_and_the_zero_row_takes_the_initial():
    policy = MarkovPolicy.from_autoaugment()
    assert torch.allclose(policy.transition.sum(1), torch.ones(N, dtype=torch.float64))
    assert torch.allclose(policy.initial.sum(), torch.tensor(1.0, dtype=torch.float64))
    # Rotate appears only second here: its row has no weight and falls back to the initial distribution
    fitted = MarkovPolicy.fit([[("Color", 1.0, 0.5), ("Rotate", 0.5, 0.5)], [("Equalize", 0.8, None), ("Color", 1.0, 0.2)]])
    assert torch.equal(fitted.transition[STATES.index("Rotate")], fitted.initial)
    i = {s: k for k, s in enumerate(STATES)}
    assert fitted.initial[i["Color"]] == pytest.approx(0.5) and fitted.initial[i["Equalize"]] == pytest.approx(0.4)
    assert fitted.initial[i["Identity"]] == pytest.approx(0.1)
    # Color (p 1) -> Rotate (p .5): half to Rotate, half to Identity
    assert fitted.transition[i["Color"], i["Rotate"]] == pytest.approx(0.5)
    assert fitted.transition[i["Color"], i["Identity"]] == pytest.approx(0.5)
    smoothed = MarkovPolicy.fit([[("Color", 1.0, 0.5), ("Rotate", 0.5, 0.5)]], smoothing=0.1)
    assert bool((smoothed.transition > 0).all())


def test_magnitudes_are_weighted_normals_with_a_standard_deviation():
    policy = MarkovPolicy.fit([[("Rotate", 1.0, 0.2)], [("Rotate", 0.5, 0.8)], [("Rotate", 0.5, 0.8)]])
    mean = (1.0 * 0.2 + 0.5 * 0.8 + 0.5 * 0.8) / 2.0
    var = (1.0 * (0.2 - mean) ** 2 + 2 * 0.5 * (0.8 - mean) ** 2) / 2.0
    got = policy.magnitudes["Rotate"]
    assert got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(var**0.5)  # not the variance
    assert got["probability"] == pytest.approx(2.0 / 3.0)


def _chi2(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    keep = probs > 0
    assert int(counts[~keep].sum()) == 0  # never a state of probability 0
    exp = probs[keep] * counts.sum()
    res = stats.chisquare(counts[keep].double().numpy(), exp.numpy())
    return float(res.statistic), float(res.pvalue)


def test_sampled_chains_follow_the_initial_and_the_transitions():
    policy = MarkovPolicy.from_autoaugment(length=2)
    d = _draw(policy, 20000)
    first = torch.bincount(d.op[:, 0], minlength=N)
    stat0, p0 = _chi2(first, policy.initial)
    prev = int(torch.argmax(first))
    second = torch.bincount(d.op[d.op[:, 0] == prev, 1], minlength=N)
    stat1, p1 = _chi2(second, policy.transition[prev])
    print(f"chi-square: initial {stat0:.2f} (p {p0:.3f}), row of {STATES[prev]} {stat1:.2f} (p {p1:.3f})")
    assert p0 > 1e-3 and p1 > 1e-3, (stat0, p0, stat1, p1)
    # the same test rejects the chain sampled from another matrix (it can fail)
    other = 0.5 * torch.roll(policy.transition[prev], 1) + 0.5 / N
    assert _chi2(second, other)[1] < 1e-6


def test_sampled_magnitudes_match_the_fit():
    policy = MarkovPolicy.fit([[("Rotate", 1.0, 0.4)], [("Rotate", 1.0, 0.6)]], length=1)  # mean 0.5, std 0.1
    d = _draw(policy, 20000)
    m = d.magnitude.abs()[:, 0] / 30.0  # Rotate's range: 0..30 degrees, a random sign
    assert bool(d.applied.all())
    assert float(m.mean()) == pytest.approx(0.5, abs=0.005) and float(m.std()) == pytest.approx(0.1, abs=0.005)
    assert 0.4 < float((d.magnitude < 0).double().mean()) < 0.6


def test_lengths_per_sample():
    """Every op applied with probability 1 (no Identity): a sample's applied slots are a prefix of uniform length."""
    policy = MarkovPolicy.fit([[("Rotate", 1.0, 0.5), ("Color", 1.0, 0.5)], [("Color", 1.0, 0.3), ("Rotate", 1.0, 0.1)]],
                              length=(1, 3))  # fmt: skip
    d = _draw(policy, 6000)
    assert d.op.shape == (6000, 3) and not bool((d.op == 0).any())
    n = d.applied.sum(1)
    assert torch.equal(d.applied, torch.arange(3).unsqueeze(0) < n.unsqueeze(1))  # a prefix
    counts = torch.bincount(n, minlength=4)[1:]
    assert int(counts.min()) > 1800 and stats.chisquare(counts.numpy()).pvalue > 1e-3  # uniform over 1, 2, 3


def test_a_row_that_rounds_short_never_picks_a_state_of_probability_0():
    n = len(STATES)
    row = torch.zeros(n, dtype=torch.float64)
    row[1] = 1.0 - 5e-7  # sums to 1 within the tolerance (1e-6); the last states have probability 0
    base = MarkovPolicy.from_autoaugment().to_dict()
    policy = MarkovPolicy(STATES, row.tolist(), [row.tolist()] * n, base["magnitudes"], length=2)
    cdf0 = policy._cdfs[0]
    assert cdf0[0] == 0.0 and all(v == float("inf") for v in cdf0[1:])  # u above 1 - 5e-7 still picks state 1
    d = _draw(policy, 5000)
    assert bool((d.op == 1).all())


def test_json_round_trip_is_exact(tmp_path):
    policy = MarkovPolicy.from_autoaugment(("cifar10",), smoothing=0.01, length=(2, 4), interpolation="bilinear", fill=[1, 2, 3], seed=5)
    path = policy.to_json(tmp_path / "policy.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "fastaug.MarkovPolicy" and doc["version"] == 2 and doc["states"] == list(STATES)
    again = MarkovPolicy.from_json(path)
    assert torch.equal(again.transition, policy.transition) and torch.equal(again.initial, policy.initial)
    assert again.magnitudes == policy.magnitudes and again.length == policy.length and again.fill == policy.fill
    x = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    assert torch.equal(again(x, epoch=3), policy(x, epoch=3))
    assert not list(tmp_path.glob(".policy.json.*"))  # the temporary file was renamed
    with pytest.raises(OSError):
        policy.to_json(tmp_path / "missing-folder" / "p.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]


def test_markov_policy_runs_inside_compose_with_normalize():
    x = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    pipe = fastaug.Compose([MarkovPolicy.from_autoaugment(length=3), fastaug.Normalize([0.5] * 3, [0.25] * 3)])
    assert torch.equal(pipe(x, epoch=1), pipe(x, epoch=1, backend="torch"))


@pytest.mark.parametrize(
    "policies, match",
    [
        ([], "non-empty list"),
        ([[]], r"policies\[0\] must be a non-empty"),
        ([[("Warp", 0.5, 0.5)]], "unknown op 'Warp'"),
        ([[("Identity", 0.5, None)]], "unknown op 'Identity'"),
        ([[("Rotate", 1.5, 0.5)]], "probability must be in"),
        ([[("Rotate", 0.5, 2.0)]], "magnitude must be None or in"),
        ([[("Rotate", 0.5)]], r"must be \(op, probability, magnitude\)"),
    ],
)
def test_bad_policies_raise_naming_the_argument(policies, match):
    with pytest.raises(ValueError, match=match):
        MarkovPolicy.fit(policies)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="length"):
        MarkovPolicy.from_autoaugment(length=0)
    with pytest.raises(ValueError, match="length"):
        MarkovPolicy.from_autoaugment(length=(3, 2))
    with pytest.raises(ValueError, match="smoothing"):
        MarkovPolicy.from_autoaugment(smoothing=-1)
    with pytest.raises(ValueError, match="policies must name"):
        MarkovPolicy.from_autoaugment("mnist")
    good = MarkovPolicy.from_autoaugment().to_dict()
    with pytest.raises(ValueError, match="transition"):
        MarkovPolicy(good["states"], good["initial"], [[0.0] * N] * N, good["magnitudes"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**good, "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        MarkovPolicy.from_json(bad)
    bad.write_text(json.dumps({k: v for k, v in good.items() if k != "transition"}))
    with pytest.raises(ValueError, match="without transition"):
        MarkovPolicy.from_json(bad)
    with pytest.raises(ValueError, match="magnitudes must map every op"):
        MarkovPolicy(good["states"], good["initial"], good["transition"], {"Rotate": good["magnitudes"]["Rotate"]})
    for field, value in (("mean", float("nan")), ("std", -0.1), ("std", float("inf")), ("mean", "0.5")):
        mags = {op: dict(m) for op, m in good["magnitudes"].items()}
        mags["Rotate"][field] = value
        with pytest.raises(ValueError, match=r"magnitudes\['Rotate'\] needs a finite mean"):
            MarkovPolicy(good["states"], good["initial"], good["transition"], mags)
    bad.write_text(json.dumps({**good, "length": 3}))  # an int length, as the constructor takes
    assert MarkovPolicy.from_json(bad).length == (3, 3)
    with pytest.raises(ValueError, match="Rotate needs a magnitude"):
        MarkovPolicy.fit([[("Rotate", 0.5, None)]])
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a fastaug.MarkovPolicy"):
        MarkovPolicy.from_json(bad)


def test_cli_fit_and_show(tmp_path, capsys):
    from fastaug.cli import main

    out = tmp_path / "policy.json"
    main(["markov", "fit", "--from", "autoaugment", "--policies", "cifar10", "--length", "1", "3", "--out", str(out)])
    policy = MarkovPolicy.from_json(out)
    assert policy.length == (1, 3)
    assert torch.equal(policy.transition, MarkovPolicy.from_autoaugment(("cifar10",)).transition)
    subs = tmp_path / "found.json"
    subs.write_text(json.dumps([[["Rotate", 0.8, 0.5], ["Color", 0.4, 0.9]], [["Equalize", 1.0, None], ["Rotate", 0.5, 0.2]]]))
    main(["markov", "fit", "--from", str(subs), "--out", str(tmp_path / "found-policy.json")])
    assert MarkovPolicy.from_json(tmp_path / "found-policy.json").magnitudes["Rotate"]["occurrences"] == 2
    pytest.importorskip("matplotlib")
    main(["markov", "show", str(out), "--png", str(tmp_path / "policy.png")])
    printed = capsys.readouterr().out
    assert "| Rotate |" in printed and (tmp_path / "policy.png").stat().st_size > 10_000


def test_cli_errors_are_one_line(tmp_path):
    from fastaug.cli import main

    with pytest.raises(SystemExit, match="fastaug markov fit: length must be"):
        main(["markov", "fit", "--length", "0", "--out", str(tmp_path / "p.json")])
    bad = tmp_path / "found.json"
    bad.write_text(json.dumps([[["Warp", 0.5, 0.5]]]))
    with pytest.raises(SystemExit, match="unknown op 'Warp'"):
        main(["markov", "fit", "--from", str(bad), "--out", str(tmp_path / "p.json")])
    with pytest.raises(SystemExit, match="fastaug markov show: "):
        main(["markov", "show", str(tmp_path / "missing.json")])
