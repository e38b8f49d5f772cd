"""Evaluation of a saved workdir: the config comes from the workdir itself."""

from __future__ import annotations

from typing import Optional



from luna_jax.training.loop import Trainer
from luna_jax.training.run import Run, load_config


def load_run(workdir, data_dir: Optional[str] = None,
             translation_overrides: Optional[dict] = None) -> Run:
  """The run of a workdir, rebuilt from its own config (data_dir: read the data there;
  translation_overrides: generation settings such as beam_size)."""
  config = load_config(workdir)
  if data_dir is not None:
    config.data_dir = data_dir
  for key, value in (translation_overrides or {}).items():
    config.translation[key] = value
  return Run.create(config, workdir)


def load_run_and_params(workdir, checkpoint: str = "best", **kw):
  """(a Trainer of the workdir's run, the parameters of its best, latest or given step's
  checkpoint)."""
  trainer = Trainer(load_run(workdir, **kw))
  with trainer.run.checkpointer() as ckpt:
    params, _ = ckpt.restore_params(checkpoint, trainer.abstract_state)
  return trainer, params


def evaluate_workdir(workdir, checkpoint: str = "best", split: str = "test",
                     data_dir: Optional[str] = None) -> dict:
  """Accuracy of the best, latest or a given step's checkpoint on a split."""
  run = load_run(workdir, data_dir)
  trainer = Trainer(run)
  with run.checkpointer() as ckpt:
    params, step = ckpt.restore_params(checkpoint, trainer.abstract_state)
  result = trainer.evaluate(params, split)
  return {"workdir": str(run.workdir), "checkpoint": checkpoint, "step": step, "split": split,
          **result}
