"""train_and_evaluate: the data-parallel training loop, independent of the mechanism.

One "data" mesh axis over every device of every process (see `Run`); the state is created
already replicated by a jitted init; the train step is compiled once with explicit
shardings and a donated state; step t + 1 is dispatched before step t's metrics are read.
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from luna_jax import errors
from luna_jax.platform import current_platform
from luna_jax.training import config as config_lib
from luna_jax.training.workloads import workload_of
from luna_jax.training.checkpoint import Checkpointer
from luna_jax.training.init_from import load_pretrained
from luna_jax.training.metrics import MetricWriter, Progress
from luna_jax.training.optim import learning_rate_schedule, make_optimizer
from luna_jax.training.pretrain import pretrain_then_finetune
from luna_jax.training.run import Run
from luna_jax.training.steps import (create_state, make_eval_step, make_train_step,
                                     resolve_prng_impl)


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss became NaN or Inf; the last good checkpoint is left in place."""


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def every(step: int, n: int, last: int) -> bool:
  """Whether `step` is a multiple of n or the last step (logging, validation, saving)."""
  return step % n == 0 or step == last


class Trainer:
  """The optimiser, shardings and compiled steps of one run."""

  def __init__(self, run: Run):
    self.run = run
    config = run.config
    self.objective = run.objective()
    self.tx = make_optimizer(config.optimizer, config.num_train_steps)
    self.schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    self.replicated = NamedSharding(run.mesh, P())
    self.batch_sharding = NamedSharding(run.mesh, P("data"))
    self.rows_multiple = run.mesh.size  # a batch's rows divide among the devices
    self.prng_impl = resolve_prng_impl(config.prng_impl, current_platform())
    example = run.example_inputs()
    init = lambda: create_state(  # noqa: E731
        run.model, self.tx, config.seed, example, self.prng_impl)
    shapes = jax.eval_shape(init)
    self.state_sharding = jax.tree.map(lambda _: self.replicated, shapes)
    # Shapes, dtypes and shardings of the state: what checkpoints are restored into
    # (`.params`: the parameters').
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes,
        self.state_sharding)
    self._init = jax.jit(init, out_shardings=self.state_sharding)
    self.train_step = jax.jit(
        make_train_step(run.model, self.tx, self.objective,
                        config.optimizer.grad_accum_steps, self.prng_impl),
        in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, self.replicated), donate_argnums=0)
    self.eval_step = jax.jit(
        make_eval_step(run.model, self.objective, self.prng_impl),
        in_shardings=(self.state_sharding.params, self.batch_sharding, self.replicated),
        out_shardings=self.replicated)

  def init_state(self):
    return self._init()

  def to_global(self, batch: dict) -> dict:
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in batch.items()}

  def evaluate(self, params, split: str, max_batches: int = 0,
               validation: bool = False) -> dict:
    """The objective's metrics over a split (or its first batches): accuracy, loss and
    the majority-class rate for classification; token accuracy, loss and perplexity for
    language and translation models; and the workload's own (translation: BLEU)."""
    totals = None
    for i, batch in enumerate(self.run.dataset(split, num_epochs=1, shuffle=False)):
      if max_batches and i >= max_batches:
        break
      sums = self.eval_step(params, self.to_global(batch), jnp.asarray(i, jnp.int32))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    metrics = self.objective.summarize(jax.tree.map(np.asarray, jax.device_get(totals)))
    metrics.update(self.run.workload.extra_metrics(self, params, split, validation))
    return metrics

  def improved(self, metrics: dict, best: dict) -> bool:
    """Whether validation `metrics` beat the best record so far."""
    old = best[f"val_{self.objective.select}"]
    new = metrics[self.objective.select]
    if old is None:
      return True
    return new > old if self.objective.higher_is_better else new < old

  def initial_best(self) -> dict:
    """The best record before any validation (accuracy -1, loss None)."""
    key = f"val_{self.objective.select}"
    return {key: -1.0 if self.objective.higher_is_better else None, "step": None}


def train_and_evaluate(config, workdir, *,
                       step_callback: Optional[Callable[[int, dict], None]] = None,
                       extra_summary: Optional[dict] = None) -> dict:
  """Trains (resuming from the workdir's latest checkpoint), keeps the best checkpoint by
  the objective's validation metric (accuracy; language models: loss), evaluates it on
  the test split and returns the summary (also written to WORKDIR/summary.json). With
  config.pretrain.objective set, pre-trains first (`pretrain`).

  step_callback(step, metrics) is called at every log step (notebooks plot with it);
  extra_summary is merged into the summary.
  """
  if config.pretrain.objective:
    config_lib.validate(config, jax.device_count(), jax.process_count())
    return pretrain_then_finetune(config, workdir, train_and_evaluate,
                                  step_callback=step_callback)
  start_time = time.time()
  workload_of(config).prepare_vocabulary(config, _sync)
  run = Run.create(config, workdir)
  run.workload.prepare_data(run, _sync)
  trainer = Trainer(run)
  if run.lead:
    run.workdir.mkdir(parents=True, exist_ok=True)
    run.config_path.write_text(run.config.to_json_best_effort(indent=2))
  _sync("workdir_ready")
  # Both closed however the run ends (a NaN stop, an interruption, an error).
  with run.checkpointer() as ckpt, MetricWriter(run.workdir, enabled=run.lead) as writer:
    state, step, best = _train(trainer, ckpt, writer, step_callback)
    summary = _test(trainer, ckpt, writer, state, step, best=best, start_time=start_time)
  summary.update(extra_summary or {})
  if run.lead:
    run.summary_path.write_text(json.dumps(summary, indent=2))
    print(f"\n{run.workload.summary_line(summary, trainer.objective)}", flush=True)
  return summary


def _train(trainer: Trainer, ckpt: Checkpointer, writer: MetricWriter, step_callback):
  """Runs the steps left after the latest checkpoint: (final state, step, best record)."""
  run, config = trainer.run, trainer.run.config
  last = config.num_train_steps
  train_iter = iter(run.dataset("train"))
  best = trainer.initial_best()
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore_latest(trainer.abstract_state)
    train_iter.set_state(meta["iterator"])
    best = meta["best"]
    print(f"Resumed from {ckpt.latest_dir} at step {int(state.step)}.", flush=True)
  else:
    state = trainer.init_state()
    if config.init_from:
      params, source = load_pretrained(config.init_from, state.params)
      state = state.replace(params=jax.device_put(params, trainer.state_sharding.params))
      print(f"Started from the pre-trained {source}.", flush=True)
  step = int(state.step)
  progress = Progress(last, step, enabled=config.progress_bar and run.lead)
  window, pending = [], None

  def read(pending_metrics, at_step):
    values = jax.device_get(pending_metrics)
    loss = float(values["loss_sum"]) / max(float(values["count"]), 1.0)
    if not math.isfinite(loss) or not math.isfinite(float(values["grad_norm"])):
      raise NonFiniteLossError(
          f"the training loss became {loss} at step {at_step}; stopping. The last good "
          f"checkpoint (step {ckpt.latest_step()}) is kept in {ckpt.latest_dir}. Lower "
          "optimizer.learning_rate, enable optimizer.grad_clip_norm or use float32.")
    values["loss"] = loss
    return values

  try:
    while step < last:
      batch = trainer.to_global(next(train_iter))
      state, metrics = trainer.train_step(state, batch)
      step += 1
      if pending is not None:  # read step t - 1 while step t runs
        window.append(read(*pending))
      pending = (metrics, step)
      log, validate, save = (every(step, n, last) for n in (
          config.log_every, config.eval_every, config.checkpoint_every))
      if not (log or validate or save):
        continue
      window.append(read(*pending))
      pending = None
      if log:
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
      if validate:
        val = trainer.evaluate(state.params, "validation", config.max_eval_batches,
                               validation=True)
        writer.write(step, "validation", val)
        bleu = f", BLEU {val['bleu']:.2f}" if "bleu" in val else ""
        progress.message(f"step {step}: validation accuracy {val['accuracy']:.4f} "
                         f"(loss {val['loss']:.4f}{bleu})")
        if trainer.improved(val, best):
          best = {f"val_{trainer.objective.select}": val[trainer.objective.select],
                  "step": step}
          ckpt.save_best(step, state.params, best)
      if save:
        ckpt.save_latest(step, state, {"iterator": train_iter.get_state(), "best": best})
  finally:
    progress.close()
    ckpt.wait()
  return state, step, best


def _test(trainer: Trainer, ckpt: Checkpointer, writer: MetricWriter, state, step: int, *,
          best: dict, start_time: float) -> dict:
  """The test split with the best checkpoint (else the final state): the run's summary."""
  run, config = trainer.run, trainer.run.config
  select = trainer.objective.select
  if best["step"] is not None:
    params, _ = ckpt.restore_best(trainer.abstract_state.params)
    used = f"the best checkpoint (step {best['step']}, validation {select} " \
           f"{best[f'val_{select}']:.4f})"
  else:
    params, used = state.params, f"the final state (step {step})"
  test = trainer.evaluate(params, "test")
  writer.write(step, "test", test)
  return {
      "task": config.task, "workload": run.workload.name, "mechanism": config.model.name,
      "objective": config.objective, "steps": step,
      f"best_val_{select}": best[f"val_{select}"], "best_step": best["step"],
      **{f"test_{k}": v for k, v in test.items()}, "checkpoint_used": used,
      **run.workload.summary_extras(run, test),
      "wall_time_s": time.time() - start_time,
      # Official or generated data, and which (recorded when it was prepared).
      "data_provenance": run.source.provenance(),
  }
