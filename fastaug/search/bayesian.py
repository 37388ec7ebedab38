"""Bayesian (or random) search for augmentation sub-policies, with child trainings as the reward.

The space: ``n_subpolicies`` sub-policies of 2 ops; each op a ``Categorical`` over the search ops
(:mod:`fastaug.policies.search_ops`: AutoAugment's ops and every catalogue op with a magnitude, RGB-only ops left out
for gray images), a magnitude ``Real(0, 1)`` mapped to the op's range and a probability ``Real(0, 1)``. The
optimiser is scikit-optimize's ``Optimizer(space, base_estimator="RF", acq_func="EI")`` (``method="random"``: every
point drawn at random, as its initial points are), asked for ``workers`` points per round and told the negative mean reward of
each (``opt_samples`` child trainings, with the training seeds shared between policies: common random numbers).

Every finished training is appended to the notebook; a search restarted with the same notebook replays the logged
rounds (the same asks and tells: the optimiser's random state ends where it was) and runs only what is missing, so a
fixed seed gives the same sequence of asked points whether or not the run was interrupted.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fastaug.policies.search_ops import BY_NAME, SPACE_VERSION, space_names
from fastaug.policies.sub_policies import SubPolicies
from fastaug.progress import Progress
from fastaug.search.child import ModelFactory, default_model
from fastaug.search.datasets import as_images, split
from fastaug.search.notebook import Notebook
from fastaug.search.runner import LocalRunner, RayRunner
from fastaug.transforms import Transform

METHODS = ("bayesian", "random")
OPS_PER_SUBPOLICY = 2


@dataclass
class Trial:
    """One evaluated policy: its trainings' rewards (by sample number; None until run), their mean, seconds of training."""

    trial: int
    round: int
    point: list
    policy: list
    rewards: list[float | None] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def reward(self) -> float:
        done = [r for r in self.rewards if r is not None]
        return float(np.mean(done)) if done else math.nan

    @property
    def complete(self) -> bool:
        return bool(self.rewards) and all(r is not None for r in self.rewards)


def _int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def _plain(point) -> list:
    """A point with numpy scalars as Python values (JSON, and exact comparison with a logged point)."""
    return [v.item() if hasattr(v, "item") else v for v in point]


def sample_seed(seed: int, sample: int) -> int:
    """The training seed of sample ``sample`` of every trial (common random numbers across policies)."""
    return int(np.random.SeedSequence([seed, sample]).generate_state(1)[0] & 0x7FFFFFFF)


class BayesianSearch:
    """A policy search on ``images`` (an array [N,H,W] / [N,H,W,C] / [N,C,H,W], uint8 or float in [0, 1], or
    ``"digits"`` / ``"mnist_5k"``) with ``labels`` [N]. See the module docstring; the data are split once from
    ``seed`` into a held-out test split (20 %, never used by the search), ``train_set_size`` training samples and a
    validation split (the rest, at most 1,000). ``model``: a factory ``(channels, size, classes) -> nn.Module``
    (picklable when ``workers`` > 1); ``notebook``: the trial log's path (None: in memory only); ``workers``: trials
    per round, run in that many processes, or as Ray tasks on ``ray_address`` ("local" starts Ray here);
    ``num_gpus``: GPUs per Ray task (None: 1 where the cluster has GPUs); ``device``: where the child trains and
    fastaug augments (None: CUDA where the worker has it, else the CPU); ``ops``: the search ops to choose from
    (default: all for the images' channel count). Worker processes are spawned: a script calls :meth:`optimize` under
    ``if __name__ == "__main__":``."""

    def __init__(
        self,
        images,
        labels=None,
        *,
        n_subpolicies: int = 5,
        method: str = "bayesian",
        train_set_size: int = 2000,
        child_epochs: int = 10,
        child_batch_size: int = 64,
        opt_samples: int = 3,
        opt_last_n_epochs: int = 3,
        opt_initial_points: int = 10,
        model: ModelFactory | None = None,
        notebook=None,
        seed: int = 0,
        workers: int = 1,
        ray_address: str | None = None,
        num_gpus: float | None = None,
        device: str | None = None,
        ops: list[str] | None = None,
        interpolation: str = "bilinear",
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.n_subpolicies = _int(n_subpolicies, "n_subpolicies", 1)
        self.child_epochs = _int(child_epochs, "child_epochs", 1)
        self.child_batch_size = _int(child_batch_size, "child_batch_size", 1)
        self.opt_samples = _int(opt_samples, "opt_samples", 1)
        self.opt_last_n_epochs = _int(opt_last_n_epochs, "opt_last_n_epochs", 1)
        self.opt_initial_points = _int(opt_initial_points, "opt_initial_points", 1)
        self.workers = _int(workers, "workers", 1)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if model is not None and not callable(model):
            raise TypeError(f"model must be a callable (channels, size, classes) -> nn.Module, got {model!r}")
        if ray_address is not None and not isinstance(ray_address, str):
            raise TypeError(f"ray_address must be a string (a Ray address or 'local'), got {ray_address!r}")
        self.method, self.seed, self.model, self.ray_address = method, int(seed), model or default_model, ray_address
        if num_gpus is not None and (isinstance(num_gpus, bool) or not isinstance(num_gpus, numbers.Real) or num_gpus < 0):
            raise ValueError(f"num_gpus must be None or a number >= 0, got {num_gpus!r}")
        self.num_gpus, self.interpolation, self.device = num_gpus, interpolation, device
        self.images, self.labels = as_images(images, labels)
        self.data_name = images if isinstance(images, str) else "array"
        self.splits = split(self.images.shape[0], train_set_size, self.seed)
        self.train_set_size = int(train_set_size)
        names = space_names(self.images.shape[1])
        if ops is None:
            self.ops = list(names)
        else:
            if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or len(ops) < 2:
                raise ValueError(f"ops must be a list of at least 2 search op names, got {ops!r}")
            bad = [o for o in ops if o not in names]
            if bad:
                raise ValueError(f"ops: {bad} are not search ops for {self.images.shape[1]}-channel images (ops: {', '.join(names)})")
            self.ops = list(ops)
        SubPolicies([[(self.ops[0], 1.0, 0.0)]], interpolation=interpolation)  # interpolation checked here
        self.notebook_path = notebook
        self.trials: list[Trial] = []
        self.total_seconds = 0.0

    # -- the space ----------------------------------------------------------------------------------
    def dimensions(self) -> list:
        from skopt.space import Categorical, Real

        dims = []
        for i in range(self.n_subpolicies):
            for j in range(OPS_PER_SUBPOLICY):
                dims += [Categorical(self.ops, name=f"sub{i}_op{j}"), Real(0.0, 1.0, name=f"sub{i}_magnitude{j}"),
                         Real(0.0, 1.0, name=f"sub{i}_probability{j}")]  # fmt: skip
        return dims

    def policy_of(self, point) -> list:
        """The sub-policies of an asked point: [[(op, probability, magnitude or None), ...], ...]."""
        point = _plain(point)
        subs = []
        for i in range(self.n_subpolicies):
            sub = []
            for j in range(OPS_PER_SUBPOLICY):
                op, m, p = point[(i * OPS_PER_SUBPOLICY + j) * 3 : (i * OPS_PER_SUBPOLICY + j + 1) * 3]
                sub.append([op, float(p), float(m) if BY_NAME[op].magnitude else None])
            subs.append(sub)
        return subs

    def settings(self) -> dict:
        digest = hashlib.sha1(self.images.numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        return {
            "data": self.data_name, "data_sha1": digest.hexdigest(), "shape": list(self.images.shape),
            "n_subpolicies": self.n_subpolicies, "method": self.method, "train_set_size": self.train_set_size,
            "child_epochs": self.child_epochs, "child_batch_size": self.child_batch_size, "opt_samples": self.opt_samples,
            "opt_last_n_epochs": self.opt_last_n_epochs, "opt_initial_points": self.opt_initial_points, "seed": self.seed,
            "ops": self.ops, "space_version": SPACE_VERSION, "interpolation": self.interpolation,
            "model": f"{getattr(self.model, '__module__', '?')}.{getattr(self.model, '__qualname__', repr(self.model))}",
        }  # fmt: skip

    def _optimizer(self):
        from skopt import Optimizer

        # random search: every point an initial (random) point, so the surrogate is never fitted; scikit-optimize's own
        # "dummy" estimator fails on current scikit-learn. Both methods draw the same first opt_initial_points points.
        initial = self.opt_initial_points if self.method == "bayesian" else 2**31 - 1
        return Optimizer(self.dimensions(), base_estimator="RF", acq_func="EI", n_initial_points=initial, random_state=self.seed)

    def _data(self, validation: torch.Tensor | None = None) -> dict:
        return {"images": self.images, "labels": self.labels, "train": self.splits.train,
                "validation": self.splits.validation if validation is None else validation}  # fmt: skip

    def _job(self, policy, seed: int, epochs: int | None = None) -> dict:
        return {"policy": policy, "seed": seed, "epochs": epochs or self.child_epochs, "batch_size": self.child_batch_size,
                "model": self.model, "device": self.device, "last_n": self.opt_last_n_epochs}  # fmt: skip

    def _runner(self, data: dict):
        if self.ray_address is not None:
            return RayRunner(data, self.ray_address, self.workers, self.num_gpus)
        return LocalRunner(data, self.workers)

    # -- the search ---------------------------------------------------------------------------------
    def optimize(self, iterations: int, progress: bool = False) -> SubPolicies:
        """Evaluate policies until ``iterations`` have been (including those a notebook already holds) and return the
        best (highest mean reward; ties: the earliest) as a :class:`~fastaug.policies.SubPolicies` transform."""
        iterations = _int(iterations, "iterations", 1)
        notebook = Notebook(self.notebook_path, self.settings()) if self.notebook_path is not None else None
        logged: dict[tuple[int, int], dict] = {}
        for e in notebook.entries if notebook else []:
            logged[(e["trial"], e["sample"])] = e
        round_sizes = {e["round"]: e["round_size"] for e in logged.values()}  # a round of k points stays k points
        opt = self._optimizer()
        self.trials = []
        total = max(iterations, max((t + 1 for t, _ in logged), default=0))
        bar = Progress(total * self.opt_samples, "trainings/h", per=3600.0, start=len(logged)) if progress else None
        runner = None
        t0 = time.perf_counter()
        try:
            t, r, done = 0, 0, len(logged)
            while t < total:
                size = round_sizes.get(r, min(self.workers, total - t))
                points = [_plain(p) for p in opt.ask(n_points=size)]
                trials = [Trial(t + i, r, p, self.policy_of(p), [None] * self.opt_samples) for i, p in enumerate(points)]
                jobs, where = [], []
                for trial in trials:
                    policy = SubPolicies(trial.policy, interpolation=self.interpolation)
                    for s in range(self.opt_samples):
                        e = logged.get((trial.trial, s))
                        if e is not None:
                            if e["point"] != trial.point:
                                raise ValueError(f"notebook {self.notebook_path}: trial {trial.trial} was asked {e['point']}, "
                                                 f"this search asks {trial.point}: it was written by another search")  # fmt: skip
                            trial.rewards[s] = e["reward"]
                            trial.seconds += e["seconds"]
                        else:
                            jobs.append(self._job(policy, sample_seed(self.seed, s)))
                            where.append((trial, s))
                if jobs:
                    runner = runner or self._runner(self._data())
                    for k, result in runner.run(jobs):
                        trial, s = where[k]
                        trial.rewards[s] = result["reward"]
                        trial.seconds += result["seconds"]
                        if notebook is not None:
                            notebook.append({"trial": trial.trial, "sample": s, "round": r, "round_size": size,
                                             "point": trial.point, "policy": trial.policy, "reward": result["reward"],
                                             "history": result["history"], "seconds": result["seconds"]})  # fmt: skip
                        done += 1
                        if bar:
                            bar.update(done, f"best {self._best_text(trials)}")
                opt.tell([trial.point for trial in trials], [-trial.reward for trial in trials])
                self.trials += trials
                t, r = t + size, r + 1
        finally:
            if runner is not None:
                runner.close()
        if bar and done == len(logged):  # nothing left to run: the bar was never drawn
            bar.update(total * self.opt_samples, f"best {self._best_text([])}")
        self.total_seconds = time.perf_counter() - t0
        return self.best_policy()

    def _best_text(self, extra: list[Trial]) -> str:
        done = [tr for tr in self.trials + extra if tr.complete]
        return f"{max(tr.reward for tr in done):.4f}" if done else "-"

    def best(self) -> Trial:
        if not self.trials:
            raise ValueError("no trial yet: call optimize() first")
        return max(self.trials, key=lambda tr: (tr.reward, -tr.trial))

    def best_policy(self) -> SubPolicies:
        return SubPolicies(self.best().policy, interpolation=self.interpolation, seed=self.seed)

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, policies: dict, seeds=(0, 1, 2), epochs: int | None = None) -> dict[str, list[float]]:
        """Test accuracy on the held-out split of a child trained on the training split with each policy
        (``{name: a fastaug transform (a policy) or None}``), once per seed: the final epoch's accuracy, as measured."""
        data = self._data(validation=self.splits.test)
        jobs, where = [], []
        for name, policy in policies.items():
            if policy is not None and not isinstance(policy, Transform):
                raise TypeError(f"policies[{name!r}] must be a fastaug transform or None, got {type(policy).__name__}")
            for s in seeds:
                jobs.append(self._job(policy, int(s), epochs))
                where.append(name)
        out: dict[str, list[float]] = {name: [] for name in policies}
        runner = self._runner(data)
        try:
            results = dict(runner.run(jobs))
        finally:
            runner.close()
        for k, name in enumerate(where):
            out[name].append(results[k]["history"][-1]["val_accuracy"])
        return out
