"""train_and_evaluate: the data-parallel training loop, independent of the mechanism.

One "data" mesh axis over every device of every process; the state is created already
replicated by a jitted init; the train step is compiled once with explicit shardings and
a donated state; step t + 1 is dispatched before step t's metrics are read.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from luna_jax import data
from luna_jax.training import config as config_lib
from luna_jax.training.checkpoint import Checkpointer
from luna_jax.training.metrics import MetricWriter, Progress
from luna_jax.training.optim import learning_rate_schedule, make_optimizer
from luna_jax.training.steps import create_state, make_eval_step, make_train_step


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the last good checkpoint is left in place."""


def ensure_data(config, task) -> None:
  """Generates ListOps on first use; any other missing task stops with the command."""
  data.ensure_prepared(
      task, config.data_dir,
      generate=config.generate_listops_examples if task.name == "listops" else 0,
      num_eval_examples=config.generate_eval_examples or None, progress=config.progress_bar,
      lead=jax.process_index() == 0, barrier=lambda: _sync("listops_generated"))


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


class Trainer:
  """Holds the compiled steps, shardings and data for one configuration."""

  def __init__(self, config, workdir):
    self.config = config
    self.workdir = pathlib.Path(workdir).expanduser().absolute()
    config_lib.validate(config, jax.device_count(), jax.process_count())
    self.task = data.get_task(config.task, config.difficulty)
    self.data_dir = pathlib.Path(config.data_dir).expanduser()
    self.input_cfg = data.InputConfig(config.max_len, config.add_cls, config.add_eos)
    self.model = config_lib.build_model(config)
    self.tx = make_optimizer(config.optimizer, config.num_train_steps)
    self.schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)

    self.mesh = Mesh(np.asarray(jax.devices()), ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P("data"))
    shape = (1, 2, config.max_len) if self.task.pair else (1, config.max_len)
    example = jnp.zeros(shape, jnp.int32)
    init = lambda: create_state(self.model, self.tx, config.seed, example)  # noqa: E731
    self.abstract_state = jax.eval_shape(init)
    self.state_sharding = jax.tree.map(lambda _: self.replicated, self.abstract_state)
    self._init = jax.jit(init, out_shardings=self.state_sharding)
    self.train_step = jax.jit(
        make_train_step(self.model, self.tx, config.optimizer.grad_accum_steps),
        in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, self.replicated), donate_argnums=0)
    self.eval_step = jax.jit(
        make_eval_step(self.model, self.task.num_classes),
        in_shardings=(self.state_sharding.params, self.batch_sharding),
        out_shardings=self.replicated)

  def init_state(self):
    return self._init()

  def dataset(self, split: str, **kw):
    return data.make_dataset(
        self.task, split, self.data_dir, self.input_cfg, global_batch=self.config.batch_size,
        seed=self.config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), **kw)

  def to_global(self, batch: dict) -> dict:
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in batch.items()}

  def evaluate(self, params, split: str, max_batches: int = 0) -> dict:
    """Accuracy, loss and the majority-class rate over a split (or its first batches)."""
    totals = None
    for i, batch in enumerate(self.dataset(split, num_epochs=1, shuffle=False)):
      if max_batches and i >= max_batches:
        break
      sums = self.eval_step(params, self.to_global(batch))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = max(float(totals["count"]), 1.0)
    return {"accuracy": float(totals["correct"]) / count,
            "loss": float(totals["loss_sum"]) / count,
            "majority_rate": float(np.max(totals["label_counts"])) / count,
            "examples": float(totals["count"])}


def train_and_evaluate(config, workdir, *,
                       step_callback: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Trains (resuming from the workdir's latest checkpoint), keeps the best checkpoint by
  validation accuracy, evaluates it on the test split and returns the summary.

  step_callback(step, metrics) is called at every log step (notebooks plot with it).
  """
  start_time = time.time()
  workdir = pathlib.Path(workdir).expanduser().absolute()
  task = data.get_task(config.task, config.difficulty)
  config_lib.validate(config, jax.device_count(), jax.process_count())
  ensure_data(config, task)
  trainer = Trainer(config, workdir)
  lead = jax.process_index() == 0
  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  _sync("workdir_ready")

  ckpt = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
  train_iter = iter(trainer.dataset("train"))
  best = {"val_accuracy": -1.0, "step": None}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore_latest(_with_shardings(trainer.abstract_state,
                                                       trainer.state_sharding))
    train_iter.set_state(meta["iterator"])
    best = meta["best"]
    print(f"Resumed from {ckpt.directory / 'latest'} at step {int(state.step)}.", flush=True)
  else:
    state = trainer.init_state()
  step = int(state.step)

  writer = MetricWriter(workdir, enabled=lead)
  progress = Progress(config.num_train_steps, step, enabled=config.progress_bar and lead)
  window, pending = [], None

  def read(pending_metrics, at_step):
    values = jax.device_get(pending_metrics)
    loss = float(values["loss_sum"]) / max(float(values["count"]), 1.0)
    if not math.isfinite(loss) or not math.isfinite(float(values["grad_norm"])):
      last = ckpt.latest_step()
      raise NonFiniteLossError(
          f"the training loss became {loss} at step {at_step}; stopping. The last good "
          f"checkpoint (step {last}) is kept in {ckpt.directory / 'latest'}. Lower "
          "optimizer.learning_rate, enable optimizer.grad_clip_norm or use float32.")
    values["loss"] = loss
    return values

  def save(at_step):
    ckpt.save_latest(at_step, state, {"iterator": train_iter.get_state(), "best": best})

  try:
    while step < config.num_train_steps:
      batch = trainer.to_global(next(train_iter))
      state, metrics = trainer.train_step(state, batch)
      step += 1
      if pending is not None:  # read step t - 1 while step t runs
        window.append(read(*pending))
      pending = (metrics, step)
      boundary = (step % config.log_every == 0 or step % config.eval_every == 0 or
                  step % config.checkpoint_every == 0 or step == config.num_train_steps)
      if not boundary:
        continue
      window.append(read(*pending))
      pending = None
      if step % config.log_every == 0 or step == config.num_train_steps:
        summed = {k: sum(float(w[k]) for w in window) for k in ("loss_sum", "correct", "count")}
        logged = {"loss": summed["loss_sum"] / max(summed["count"], 1),
                  "accuracy": summed["correct"] / max(summed["count"], 1),
                  "grad_norm": float(window[-1]["grad_norm"]),
                  "learning_rate": float(trainer.schedule(step - 1))}
        writer.write(step, "train", logged)
        progress.update(step, logged["loss"])
        if step_callback is not None:
          step_callback(step, logged)
        window = []
      if step % config.eval_every == 0 or step == config.num_train_steps:
        val = trainer.evaluate(state.params, "validation", config.max_eval_batches)
        writer.write(step, "validation", val)
        progress.message(f"step {step}: validation accuracy {val['accuracy']:.4f} "
                         f"(loss {val['loss']:.4f})")
        if val["accuracy"] > best["val_accuracy"]:
          best = {"val_accuracy": val["accuracy"], "step": step}
          ckpt.save_best(step, state.params, best)
      if step % config.checkpoint_every == 0 or step == config.num_train_steps:
        save(step)
  finally:
    progress.close()
    ckpt.wait()

  if best["step"] is not None:
    params, _ = ckpt.restore_best(_with_shardings(trainer.abstract_state.params,
                                                  trainer.state_sharding.params))
    used = f"the best checkpoint (step {best['step']}, validation accuracy " \
           f"{best['val_accuracy']:.4f})"
  else:
    params, used = state.params, f"the final state (step {step})"
  test = trainer.evaluate(params, "test")
  writer.write(step, "test", test)
  summary = {
      "task": config.task, "mechanism": config.model.name, "steps": step,
      "best_val_accuracy": best["val_accuracy"], "best_step": best["step"],
      "test_accuracy": test["accuracy"], "test_majority_rate": test["majority_rate"],
      "test_examples": test["examples"], "checkpoint_used": used,
      "wall_time_s": time.time() - start_time,
      # Official or generated data, and which: recorded by `prepare`.
      "data_provenance": (data.read_provenance(task, trainer.data_dir) or
                          data.describe_provenance(None)),
  }
  if lead:
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nTest accuracy {summary['test_accuracy']:.4f} with {used}; majority class "
          f"{summary['test_majority_rate']:.4f}; best validation accuracy "
          f"{summary['best_val_accuracy']:.4f}; wall time {summary['wall_time_s']:.0f} s.",
          flush=True)
  writer.close()
  ckpt.close()
  return summary


def _with_shardings(abstract, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)
