"""Policy search on a packaged data set, measured: Bayesian vs random search at the same number of trials, the found
policies vs no augmentation vs RandAugment on the held-out test split over several seeds, and the wall time of the
same child trainings in 1 process, 2 worker processes and 2 Ray tasks at a time.

Usage: ``python -m benchmarks.bench_search [--data digits] [--iterations 40] [--seeds 0 1 2 3 4]``. Writes
``benchmarks/results/search-<data>-<date>/`` (each search's notebook, report and best policy) and
``benchmarks/results/search-<data>-<date>.json``. Resumes: the searches' notebooks are reused when rerun.
``--search-seeds 1 2`` instead runs only Bayesian and random searches with those seeds (best reward per trial count;
``search-<data>-<date>-seeds.json``).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import statistics
import time

import torch

from benchmarks.bench import RESULTS_DIR, cpu_isa, device_info, versions


def best_so_far(trials) -> list[float]:
    """The best mean reward after each trial."""
    return list(itertools.accumulate((tr.reward for tr in trials), max))


def _stats(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main(argv: list[str] | None = None) -> dict:
    import fastaug
    from fastaug.search import BayesianSearch
    from fastaug.search import report as R

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-set-size", type=int, default=500)
    p.add_argument("--child-epochs", type=int, default=12)
    p.add_argument("--eval-epochs", type=int, default=30, help="epochs of the retrained child for the test accuracies")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--timing-only", action="store_true", help="redo only the workers timing of today's results file")
    p.add_argument("--search-seeds", type=int, nargs="*", default=None, help="only Bayesian vs random with these seeds")
    a = p.parse_args(argv)
    if a.search_seeds:
        return compare_seeds(a)
    if a.timing_only:
        path = RESULTS_DIR / f"search-{a.data}-{datetime.date.today().isoformat()}.json"
        result = json.loads(path.read_text())
        from fastaug.policies import SubPolicies

        found = SubPolicies(result["bayesian"]["best_policy"], interpolation="bilinear")
        result["workers_timing"] = workers_timing(a, {"none": None, "found": found, "RandAugment(2, 9)": fastaug.RandAugment(
            2, 9, interpolation="bilinear")})  # fmt: skip
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
        return result
    date = datetime.date.today().isoformat()
    out = RESULTS_DIR / f"search-{a.data}-{date}"
    out.mkdir(parents=True, exist_ok=True)
    common = dict(train_set_size=a.train_set_size, child_epochs=a.child_epochs, opt_samples=3, n_subpolicies=5, seed=0)
    result: dict = {"date": date, "device": device_info(torch.device("cpu")), "cpu_isa": cpu_isa(), "versions": versions(),
                    "data": a.data, "settings": {**common, "iterations": a.iterations, "workers": a.workers}}  # fmt: skip
    searches = {}
    for method in ("bayesian", "random"):
        s = BayesianSearch(a.data, method=method, workers=a.workers, notebook=out / method / "notebook.jsonl", **common)
        t0 = time.perf_counter()
        best = s.optimize(a.iterations, progress=True)
        wall = time.perf_counter() - t0
        best.to_json(out / method / "best_policy.json")
        R.write(out / method, s)
        trainings = len(s.trials) * s.opt_samples
        train_seconds = sum(tr.seconds for tr in s.trials)
        curve = best_so_far(s.trials)
        result[method] = {"trials": len(s.trials), "best_trial": s.best().trial, "best_reward": s.best().reward,
                          "best_so_far": curve, "rewards": [tr.reward for tr in s.trials], "best_policy": s.best().policy,
                          "wall_seconds_this_run": wall, "training_seconds": train_seconds,
                          "trainings_per_hour_per_worker": 3600.0 * trainings / train_seconds}  # fmt: skip
        searches[method] = s
        print(f"{method}: best reward {s.best().reward:.4f} (trial {s.best().trial}); wall {wall:.0f} s this run", flush=True)
    s = searches["bayesian"]
    policies = {"none": None, "bayesian best": s.best_policy(), "random best": searches["random"].best_policy(),
                "RandAugment(2, 9)": fastaug.RandAugment(2, 9, interpolation="bilinear"),
                "MarkovPolicy fitted from bayesian best": fastaug.MarkovPolicy.fit(s.best_policy(), length=2,
                                                                                   interpolation="bilinear")}  # fmt: skip
    acc = s.evaluate(policies, seeds=a.seeds, epochs=a.eval_epochs)
    result["test_accuracy"] = {"epochs": a.eval_epochs, "seeds": a.seeds, "split": "held-out test (20 %)",
                               **{k: _stats(v) for k, v in acc.items()}}  # fmt: skip
    for k, v in acc.items():
        print(f"test accuracy {k:40s} {statistics.mean(v):.4f} +- {statistics.stdev(v):.4f}  {[round(x, 4) for x in v]}")
    result["workers_timing"] = workers_timing(a, {k: policies[k] for k in ("none", "bayesian best", "RandAugment(2, 9)")})
    path = RESULTS_DIR / f"search-{a.data}-{date}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return result


def workers_timing(a, policies: dict) -> dict:
    """Wall time of the same child trainings (``policies`` x 4 seeds, ``child_epochs``) in this process, in 2 local
    worker processes and as Ray tasks on a local 2-CPU Ray instance (pool / Ray start-up included)."""
    from fastaug.search import BayesianSearch

    common = dict(train_set_size=a.train_set_size, child_epochs=a.child_epochs)
    timing: dict = {"trainings": 4 * len(policies), "epochs": a.child_epochs}
    for name, kw in (("1 worker", dict(workers=1)), ("2 workers", dict(workers=2)), ("ray, 2 CPUs", dict(workers=2, ray_address="local"))):
        s = BayesianSearch(a.data, **common, **kw)
        t0 = time.perf_counter()
        s.evaluate(policies, seeds=(0, 1, 2, 3), epochs=a.child_epochs)
        timing[name] = time.perf_counter() - t0
        print(f"{name}: {timing[name]:.0f} s for {timing['trainings']} trainings", flush=True)
    timing["speedup 2 workers vs 1"] = timing["1 worker"] / timing["2 workers"]
    timing["speedup ray vs 1"] = timing["1 worker"] / timing["ray, 2 CPUs"]
    return timing


def compare_seeds(a) -> dict:
    """Bayesian and random search with each seed in ``a.search_seeds``: the best reward after each trial."""
    from fastaug.search import BayesianSearch

    date = datetime.date.today().isoformat()
    out = RESULTS_DIR / f"search-{a.data}-{date}"
    common = dict(train_set_size=a.train_set_size, child_epochs=a.child_epochs, opt_samples=3, n_subpolicies=5)
    result: dict = {"date": date, "device": device_info(torch.device("cpu")), "cpu_isa": cpu_isa(), "data": a.data,
                    "settings": {**common, "iterations": a.iterations, "workers": a.workers}, "runs": {}}  # fmt: skip
    for seed in a.search_seeds:
        for method in ("bayesian", "random"):
            s = BayesianSearch(a.data, method=method, workers=a.workers, seed=seed,
                               notebook=out / f"{method}-seed{seed}" / "notebook.jsonl", **common)  # fmt: skip
            s.optimize(a.iterations, progress=True)
            curve = best_so_far(s.trials)
            result["runs"][f"{method} seed {seed}"] = {"best_so_far": curve, "best_trial": s.best().trial,
                                                      "best_policy": s.best().policy}  # fmt: skip
            print(f"{method} seed {seed}: best {curve[-1]:.4f} (trial {s.best().trial}); after 10/20/40 trials "
                  f"{curve[9]:.4f} / {curve[min(19, len(curve) - 1)]:.4f} / {curve[-1]:.4f}", flush=True)  # fmt: skip
    path = RESULTS_DIR / f"search-{a.data}-{date}-seeds.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
