"""Orbax checkpoints: the latest states (with the data iterator's position) and the best
parameters by validation accuracy, in two folders of the workdir.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a
crash mid-save never replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import orbax.checkpoint as ocp

from luna_jax import errors


class Checkpointer:
  """`latest/` and `best/` under a directory; a context manager that closes both."""

  def __init__(self, directory: pathlib.Path, keep: int):
    directory = pathlib.Path(directory).absolute()
    self.directory = directory
    self.latest_dir, self.best_dir = directory / "latest", directory / "best"
    self.latest = ocp.CheckpointManager(
        self.latest_dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        self.best_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def latest_steps(self) -> list[int]:
    """The steps of the kept latest-state checkpoints, oldest first."""
    return sorted(self.latest.all_steps())

  def best_step(self) -> Optional[int]:
    return self.best.latest_step()

  def save_latest(self, step: int, state, meta: dict) -> None:
    self.latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def save_best(self, step: int, params, meta: dict) -> None:
    self.best.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)))

  def restore_latest(self, abstract_state, step: Optional[int] = None) -> tuple[Any, dict]:
    step = self.latest.latest_step() if step is None else step
    out = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def restore_best(self, abstract_params) -> tuple[Any, dict]:
    out = self.best.restore(self.best.latest_step(), args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore()))
    return out.params, out.meta

  def restore_params(self, checkpoint: str, abstract_state) -> tuple[Any, int]:
    """(parameters, step) of checkpoint "best", "latest" or a step number ("400");
    FileNotFoundError says which checkpoints there are. `abstract_state` is the train
    state's shapes and shardings (its `.params` those of the parameters)."""
    if checkpoint == "best":
      step = self.best_step()
      if step is None:
        raise errors.WorkdirError(f"no best checkpoint in {self.best_dir} (no validation pass "
                                "has run); use --checkpoint latest.")
      return self.restore_best(abstract_state.params)[0], step
    step = self.latest_step() if checkpoint == "latest" else int(checkpoint)
    available = self.latest_steps()
    if step is None or step not in available:
      raise errors.WorkdirError(f"no checkpoint {checkpoint!r} in {self.latest_dir}; available "
                              f"steps: {available}.")
    return self.restore_latest(abstract_state, step)[0].params, step

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()
