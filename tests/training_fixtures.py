"""Tiny configs and fixture datasets for the end-to-end training tests."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from luna_jax import data
from luna_jax.training import base_config
from tests import lra_fixtures as fx


def prepare_fixture_data(root: pathlib.Path) -> pathlib.Path:
  """Every task's fixture files, prepared into one tfds data dir."""
  data_dir = root / "tfds"
  if (data_dir / ".ready").exists():
    return data_dir
  release = root / "release"
  rows = fx.LISTOPS_ROWS * 4
  fx.write_listops(release, rows)
  fx.write_aan(release, fx.AAN_ROWS * 3)
  fx.write_pathfinder(release, 32, num_images=20)
  fx.write_pathfinder(release, 128, num_images=10, empty_index=-1)
  manual = root / "manual"
  fx.write_imdb_archive(manual)
  fx.write_cifar_archive(manual)
  for task in ("listops", "retrieval", "pathfinder32", "pathx"):
    data.prepare(task, data_dir, release_dir=release, progress=False)
  for task in ("text", "image"):
    data.prepare(task, data_dir, source="manual", manual_dir=manual, progress=False)
  (data_dir / ".ready").touch()
  return data_dir


def tiny_config(task: str, data_dir, mechanism: str = "luna", steps: int = 4):
  c = base_config()
  c.task = task
  c.data_dir = str(data_dir)
  c.max_len = 48
  c.generate_examples = 0
  m = c.model
  m.name = mechanism
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 1, 16, 2, 16, 16
  m.luna.proj_len = 4
  m.lightconv.kernel_sizes = m.dynamicconv.kernel_sizes = (3, 5)
  c.optimizer.warmup_steps = 2
  c.optimizer.learning_rate = 1e-3
  c.batch_size = 4
  c.num_train_steps = steps
  c.log_every = 1
  c.eval_every = 2
  c.checkpoint_every = 2
  c.progress_bar = False
  return c


def latest_params(workdir, step=None):
  """The parameters of a latest-state checkpoint, read back as host arrays."""
  latest = pathlib.Path(workdir) / "checkpoints" / "latest"
  step = step or max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
  path = latest / str(step) / "state"
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata
  tree = tree.tree if hasattr(tree, "tree") else tree
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # any saving topology
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  restored = checkpointer.restore(path, target)
  return [np.asarray(a) for a in jax.tree.leaves(restored["params"])]


class Killed(Exception):
  """Stands for the process being killed mid-run."""


def train_killed_then_resumed(config, workdir, kill_after: int, after_kill=None) -> dict:
  """Trains into workdir, stops the run after step `kill_after`, calls after_kill() (to
  look at what the killed run left), then reruns it (resuming from the latest
  checkpoint); returns the second run's summary."""
  from luna_jax.training import train_and_evaluate

  def kill(step, metrics):
    if step == kill_after:
      raise Killed()

  try:
    train_and_evaluate(config, workdir, step_callback=kill)
  except Killed:
    pass
  else:
    raise AssertionError(f"the run ended before step {kill_after}")
  if after_kill is not None:
    after_kill()
  return train_and_evaluate(config, workdir)
