"""Run one function over many jobs in parallel, yielding results as they finish: worker processes
on this machine, or Ray tasks (a local Ray instance, or the cluster at an address)."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from . import BenchError

EXECUTORS = ("process", "ray")


def run_processes(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> Iterator[Any]:
    """fn(job) in `workers` fresh ("spawn") processes; results in completion order."""
    context = multiprocessing.get_context("spawn")  # no state inherited from this process
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            pool.shutdown(cancel_futures=True)


def run_ray(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int,
            address: str | None = None) -> Iterator[Any]:
    """fn(job) as Ray tasks of one CPU each. Without an address (and no RAY_ADDRESS), starts a
    local Ray instance with `workers` CPUs for the duration of the run."""
    try:
        import ray
    except ImportError:
        raise BenchError("ray is not installed; pip install 'ncodec[ray]'") from None
    started = not ray.is_initialized()
    if started:
        local = {"num_cpus": workers} if address is None else {}
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, **local)
    try:
        task = ray.remote(num_cpus=1)(fn)
        pending = [task.remote(job) for job in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                raise BenchError(str(getattr(err, "cause", None) or err)) from None
    finally:
        if started:
            ray.shutdown()


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int, executor: str = "process",
             ray_address: str | None = None) -> Iterator[Any]:
    if executor == "process":
        return run_processes(fn, jobs, workers)
    if executor == "ray":
        return run_ray(fn, jobs, workers, ray_address)
    raise BenchError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")
