"""Timing and memory helpers shared by the benchmarks.

Method: compile first (ahead of time, so compilation is never timed), one warm-up call,
then the median of several calls, each ended by block_until_ready. Memory is XLA's
compiled memory analysis of the step (deterministic), plus the process's peak RSS.
"""

from __future__ import annotations

import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp


def device_name() -> str:
  """A file-name-safe name of the device, e.g. 'cpu-2core' or 'nvidia-h100'."""
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    import os
    return f"cpu-{os.cpu_count()}core"
  return dev.device_kind.lower().replace(" ", "-")


def describe_device() -> str:
  dev = jax.devices()[0]
  return (f"{dev.platform}: {dev.device_kind} x{jax.device_count()}, {platform.processor() or platform.machine()}, "
          f"JAX {jax.__version__}")


def compile_step(fn, *args):
  """The compiled executable, its temporary bytes and its FLOP count (XLA's estimate)."""
  compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  temp = int(getattr(memory, "temp_size_in_bytes", 0)) if memory is not None else 0
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = float((cost or {}).get("flops", 0.0))
  return compiled, temp, flops


def median_ms(compiled, *args, repeats: int, slow_s: float = 20.0) -> float:
  """Median wall time of `repeats` calls after a warm-up; a configuration whose warm-up
  call takes longer than slow_s seconds is timed twice only (reported in the results)."""
  start = time.perf_counter()
  jax.block_until_ready(compiled(*args))  # warm-up
  if time.perf_counter() - start > slow_s:
    repeats = min(repeats, 2)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
  """The machine's measured dense matrix-product rate in GFLOP/s."""
  a = jnp.ones((n, n), dtype)
  compiled, _, _ = compile_step(lambda x, y: x @ y, a, a)
  return 2 * n**3 / (median_ms(compiled, a, a, repeats=repeats) / 1e3) / 1e9


def peak_rss_bytes() -> int:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def available_bytes() -> int:
  import psutil
  return int(psutil.virtual_memory().available)
