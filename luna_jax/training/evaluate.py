"""Evaluation of a saved workdir: the config comes from the workdir itself."""

from __future__ import annotations

import json
import pathlib
from typing import Optional

import ml_collections

from luna_jax.training.checkpoint import Checkpointer
from luna_jax.training.loop import Trainer, _with_shardings


def load_config(workdir) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir).expanduser() / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: is {workdir} a train.py workdir?")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def evaluate_workdir(workdir, checkpoint: str = "best", split: str = "test",
                     data_dir: Optional[str] = None) -> dict:
  """Accuracy of the best, latest or a given step's checkpoint on a split."""
  workdir = pathlib.Path(workdir).expanduser().absolute()
  config = load_config(workdir)
  if data_dir is not None:
    config.data_dir = data_dir
  trainer = Trainer(config, workdir)
  ckpt = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
  abstract_params = _with_shardings(trainer.abstract_state.params, trainer.state_sharding.params)
  if checkpoint == "best":
    if ckpt.best_step() is None:
      raise FileNotFoundError(f"no best checkpoint in {ckpt.directory / 'best'} (no "
                              "validation pass has run); use --checkpoint latest.")
    params, _ = ckpt.restore_best(abstract_params)
    step = ckpt.best_step()
  else:
    step = ckpt.latest_step() if checkpoint == "latest" else int(checkpoint)
    available = list(ckpt.latest.all_steps())
    if step is None or step not in available:
      raise FileNotFoundError(f"no checkpoint {checkpoint!r} in {ckpt.directory / 'latest'}; "
                              f"available steps: {available}.")
    state, _ = ckpt.restore_latest(
        _with_shardings(trainer.abstract_state, trainer.state_sharding), step)
    params = state.params
  result = trainer.evaluate(params, split)
  ckpt.close()
  return {"workdir": str(workdir), "checkpoint": checkpoint, "step": step, "split": split,
          **result}
