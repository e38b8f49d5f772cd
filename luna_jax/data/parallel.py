"""Ordered parallel map for the data generators: results in input order, so the output
depends only on the inputs (the seed and the example index), never on the number of
workers or their scheduling.

Workers are spawned, not forked: a generator may run inside train.py after JAX has
started its threads, which a fork would copy in an unusable state.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
  """The cores this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: Optional[int] = None,
                chunksize: int = 16) -> Iterator[R]:
  """fn over items, in order; fn must be a module-level function (it is pickled).
  workers: processes (None: `default_workers()`); 1 runs in this process."""
  workers = default_workers() if workers is None else workers
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}.")
  if workers == 1:
    yield from map(fn, items)
    return
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    yield from pool.map(fn, items, chunksize=chunksize)
