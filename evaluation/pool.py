"""Evaluation runs in parallel processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_all(fn: Callable[[T], R], items: Iterable[T], jobs: int,
            done: Callable[[R], None] = lambda r: None) -> list[R]:
    """``fn`` over ``items``, ``jobs`` at a time, results in item order; ``done`` sees each
    result as it comes. Processes are spawned, not forked: the caller may hold threads (a
    Kafka client, chDB) whose locks a forked child would inherit held, and hang on."""
    todo = list(items)
    if jobs <= 1:
        out = []
        for item in todo:
            out.append(fn(item))
            done(out[-1])
        return out
    results: dict[int, R] = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(todo)}
        for f in as_completed(futures):
            results[futures[f]] = f.result()
            done(results[futures[f]])
    return [results[i] for i in range(len(todo))]
