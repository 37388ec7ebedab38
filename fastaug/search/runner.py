"""Where a search's child trainings run: in this process, in local worker processes, or as Ray tasks.

A job is a dict (the policy transform or None, the training seed and settings); :func:`run_job` turns it into
``{"history", "reward", "seconds"}`` on one torch thread, so its result does not depend on where it ran. The data
reach each worker once (a pool initializer, or one Ray object), not once per job. Runners yield results as they
finish, with the job's position.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

_DATA: dict = {}


def run_job(job: dict, data: dict) -> dict:
    """Train one child for ``job`` on ``data`` (images, labels, train and validation indices)."""
    from fastaug.search.child import train_child
    from fastaug.search.reward import reward

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        device = job["device"] or ("cuda" if torch.cuda.is_available() else "cpu")  # None: the worker's own GPU if any
        history = train_child(data["images"], data["labels"], data["train"], data["validation"], job["policy"],
                              epochs=job["epochs"], batch_size=job["batch_size"], seed=job["seed"], model=job["model"],
                              device=device)  # fmt: skip
        return {"history": history, "reward": reward(history, job["last_n"]), "seconds": time.perf_counter() - t0}
    finally:
        torch.set_num_threads(threads)


def _init_worker(data: dict) -> None:
    _DATA.update(data)


def _run_in_worker(job: dict) -> dict:
    return run_job(job, _DATA)


class LocalRunner:
    """``workers`` processes (spawned: no forked torch thread pools), or this process when ``workers`` is 1."""

    def __init__(self, data: dict, workers: int = 1):
        self.data, self.workers = data, workers
        self._pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(data,))

    def run(self, jobs: list[dict]) -> Iterator[tuple[int, dict]]:
        if self._pool is None:
            for i, job in enumerate(jobs):
                yield i, run_job(job, self.data)
            return
        pending = {self._pool.submit(_run_in_worker, job): i for i, job in enumerate(jobs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=pending.get):
                yield pending.pop(f), f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class RayRunner:
    """Each job a Ray task (``num_cpus=1``, ``num_gpus`` per task; None: 1 where the cluster has GPUs, else 0); the
    driver keeps the optimiser. ``address``: a cluster's address, or "local" to start (or reuse) a Ray instance on this
    machine with ``workers`` CPUs."""

    def __init__(self, data: dict, address: str, workers: int = 1, num_gpus: float | None = None):
        try:
            import ray
        except ImportError as e:
            raise ValueError("ray_address needs Ray: pip install 'fastaug[distributed]'") from e
        self.ray = ray
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        if num_gpus is None:
            num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self._data = ray.put(data)
        self._task = ray.remote(num_cpus=1, num_gpus=num_gpus)(run_job)

    def run(self, jobs: list[dict]) -> Iterator[tuple[int, dict]]:
        refs = {self._task.remote(job, self._data): i for i, job in enumerate(jobs)}
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1)
            for ref in done:
                yield refs.pop(ref), self.ray.get(ref)

    def close(self) -> None:
        pass  # the Ray instance belongs to the user (or outlives the search for the next one)
