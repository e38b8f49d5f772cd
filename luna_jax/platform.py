"""The platform a program is traced for, which picks kernels and layouts: the default
backend, or the accelerator a compile-only run targets from a CPU host
(`luna_jax.training.aot`), whose tracing happens on the CPU backend."""

from __future__ import annotations

import contextlib
import threading

import jax

_target = threading.local()


def current_platform() -> str:
  """"cpu", "gpu" (CUDA), "rocm" or "tpu": the platform set by `compiling_for`, else
  jax.default_backend(), with a ROCm GPU told apart (it has no cuDNN)."""
  forced = getattr(_target, "platform", None)
  if forced is not None:
    return forced
  backend = jax.default_backend()
  if backend == "gpu" and "rocm" in str(jax.devices()[0].client.platform_version).lower():
    return "rocm"
  return backend


@contextlib.contextmanager
def compiling_for(platform: str):
  """Traces inside this block choose what they would choose on `platform`."""
  previous = getattr(_target, "platform", None)
  _target.platform = platform
  try:
    yield
  finally:
    _target.platform = previous
