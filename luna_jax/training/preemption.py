"""Stopping at a signal without losing steps: SIGTERM (a preemptible VM's notice, a
scheduler's stop) and SIGINT (Ctrl-C, Colab's "interrupt") ask the training loop to save
a checkpoint at the next step boundary and stop; a second signal stops at once.

One process: Python handlers set a flag, read by the loop after each step. Several
processes: every one must stop at the same step, so SIGTERM goes through JAX's preemption
service (started by `jax.distributed.initialize`), which agrees on the step:
`multihost_utils.reached_preemption_sync_point`. There, no Python handler is installed
(it would hide SIGTERM from that service) and Ctrl-C keeps its default behaviour.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Optional

import jax

EXIT_INTERRUPTED = 75  # train.py's exit status after a signal and a saved checkpoint
#                        (EX_TEMPFAIL: rerun the same command to resume)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
  """Training stopped at a signal, after saving its checkpoint (`step`)."""

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


def _multi_process_service() -> bool:
  """Whether JAX's preemption service runs (several processes, jax.distributed started
  with jax_enable_preemption_service, the default)."""
  if jax.process_count() == 1:
    return False
  try:  # (the state multihost_utils.reached_preemption_sync_point reads)
    from jax._src import distributed

    state = distributed.global_state
    return state.client is not None and state.preemption_sync_manager is not None
  except (ImportError, AttributeError):  # another JAX's layout: no agreed stop
    return False


class StopSignals:
  """A context manager: while inside it, SIGTERM and SIGINT request a stop
  (`requested(step)`) instead of killing the process; the handlers before it come back
  at exit. Outside the main thread (where Python cannot handle signals) it does nothing."""

  def __init__(self):
    self.received: Optional[str] = None  # the first signal's name
    self._previous: dict = {}
    self._service = False

  def __enter__(self) -> StopSignals:
    self._service = _multi_process_service()
    if self._service or threading.current_thread() is not threading.main_thread():
      return self
    for sig in _SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    name = signal.Signals(signum).name
    if self.received is None:
      self.received = name
      print(f"\n{name} received: saving a checkpoint after this step, then stopping "
            f"(send {name} again to stop at once, without saving).", flush=True)
      return
    self.__exit__()  # the second signal: what it would have done without us
    if signum == signal.SIGINT:
      raise KeyboardInterrupt
    os.kill(os.getpid(), signum)

  def requested(self, step: int) -> bool:
    """Whether to save and stop after `step` (every process agrees: module docstring)."""
    if self._service:
      from jax.experimental import multihost_utils

      if multihost_utils.reached_preemption_sync_point(step):
        self.received = self.received or "SIGTERM"
        return True
      return False
    return self.received is not None
