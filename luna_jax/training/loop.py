"""train_and_evaluate: the data-parallel training loop, independent of the mechanism.

One "data" mesh axis over every device of every process (see `Run`); the state is created
already replicated by a jitted init; the train step is compiled once with explicit
shardings and a donated state; step t + 1 is dispatched before step t's metrics are read.
"""

from __future__ import annotations

import contextlib
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
from luna_jax.training import workdir as workdir_lib
from luna_jax.training.checkpoint import Checkpointer, saved_steps
from luna_jax.training.init_from import load_pretrained
from luna_jax.training.metrics import MetricWriter, Progress
from luna_jax.training.optim import learning_rate_schedule, make_optimizer
from luna_jax.training.preemption import Interrupted, StopSignals
from luna_jax.training.pretrain import pretrain_then_finetune
from luna_jax.training.run import CHANGES_KEY, Run, with_defaults, workdir_path
from luna_jax.training.workloads import workload_of
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

  The workdir is checked before anything else and locked while training
  (`luna_jax.training.workdir`); a resumed run refuses a changed config unless
  config.allow_config_change. SIGTERM or SIGINT saves a checkpoint after the current
  step and raises `preemption.Interrupted` (`preemption`).

  step_callback(step, metrics) is called at every log step (notebooks plot with it);
  extra_summary is merged into the summary.
  """
  if config.pretrain.objective:
    config_lib.validate(config, jax.device_count(), jax.process_count())
    return pretrain_then_finetune(config, workdir, train_and_evaluate,
                                  step_callback=step_callback)
  start_time = time.time()
  lead = jax.process_index() == 0
  if lead:  # before any data is generated
    workdir_lib.check_writable(workdir_path(workdir))
  lock = workdir_lib.WorkdirLock(workdir_path(workdir)) if lead else contextlib.nullcontext()
  with lock:
    workload_of(config).prepare_vocabulary(config, _sync)
    run = Run.create(config, workdir)
    earlier_changes, change = _config_changes(run)  # refused before anything is written
    run.workload.prepare_data(run, _sync)
    trainer = Trainer(run)
    # All closed however the run ends (a NaN stop, a signal, an error).
    with run.checkpointer() as ckpt, StopSignals() as stop:
      state, best, iterator_state = _restore_or_init(trainer, ckpt)
      step = int(state.step)
      changes = earlier_changes + ([dict(change, step=step)] if change else [])
      wall = workdir_lib.WallTime(run.workdir, resumed=step > 0, start_time=start_time)
      if run.lead:
        _record_start(run, changes, wall)
      _sync("workdir_ready")
      with MetricWriter(run.workdir, enabled=run.lead, resumed_at=step) as writer:
        if writer.dropped:
          print(f"Dropped {writer.dropped} metrics rows after step {step}, which is "
                "trained again.", flush=True)
        loop = _Loop(trainer, ckpt, writer, stop, wall)
        state, step, best = loop.train(state, best, iterator_state, step_callback)
        summary = _test(trainer, ckpt, writer, state, step, best=best)
    summary["wall_time_s"] = wall.total()
    summary["processes"] = wall.processes()
    if changes:
      summary[CHANGES_KEY] = changes
    summary.update(extra_summary or {})
    if run.lead:
      wall.update()
      workdir_lib.write_atomically(run.summary_path, json.dumps(summary, indent=2))
      print(f"\n{run.workload.summary_line(summary, trainer.objective)}", flush=True)
  return summary


def _record_start(run: Run, changes: list, wall: workdir_lib.WallTime) -> None:
  """What the workdir says once the state is restored (so a restore that fails leaves it
  as it was): the config with its changes on resume, and this process's wall time."""
  config = {**json.loads(run.config.to_json_best_effort()),
            **({CHANGES_KEY: changes} if changes else {})}
  workdir_lib.write_atomically(run.config_path, json.dumps(config, indent=2))
  wall.update()


def _config_changes(run: Run) -> tuple[list, Optional[dict]]:
  """(the changes recorded earlier, this resume's change or None): the saved config.json
  against this config, when there is a checkpoint to resume (`workdir.check_resume_config`
  raises for a change that is not allowed)."""
  steps = saved_steps(run.checkpoint_dir)
  if not steps or not run.config_path.is_file():
    return [], None
  try:
    saved = json.loads(run.config_path.read_text())
  except ValueError:
    raise errors.WorkdirError(f"{run.config_path} is not valid JSON, so this resume cannot "
                              "be checked against the checkpoint's config; restore it, or "
                              "use another --workdir.") from None
  earlier = saved.pop(CHANGES_KEY, [])
  defaults = json.loads(config_lib.base_config().to_json_best_effort())
  current = json.loads(run.config.to_json_best_effort())
  change = workdir_lib.check_resume_config(
      with_defaults(saved, defaults), current, step=steps[-1],
      allow=run.config.allow_config_change)
  return earlier, change


def _restore_or_init(trainer: Trainer, ckpt: Checkpointer):
  """(state, best record, the data iterator's position or None): the newest checkpoint
  that restores, else a new state (from config.init_from's weights if set)."""
  config = trainer.run.config
  if ckpt.latest_steps():
    state, meta = ckpt.restore_newest_intact(trainer.abstract_state)
    best = meta["best"]
    if not ckpt.drop_best_after(int(state.step)) or best["step"] is None:
      best = trainer.initial_best()  # its checkpoint came later than this one
    print(f"Resumed from {ckpt.latest_dir} at step {int(state.step)}.", flush=True)
    return state, best, meta["iterator"]
  state = trainer.init_state()
  if config.init_from:
    params, source = load_pretrained(config.init_from, state.params)
    state = state.replace(params=jax.device_put(params, trainer.state_sharding.params))
    print(f"Started from the pre-trained {source}.", flush=True)
  return state, trainer.initial_best(), None


class _Loop:
  """The training steps after the restored one, with their logging, validation, saves
  and stops (a signal, a failed save, a non-finite loss)."""

  def __init__(self, trainer: Trainer, ckpt: Checkpointer, writer: MetricWriter,
               stop: StopSignals, wall: workdir_lib.WallTime):
    self.trainer, self.ckpt, self.writer, self.stop, self.wall = (
        trainer, ckpt, writer, stop, wall)
    self.config = trainer.run.config
    self.last_save_time = time.time()

  def read(self, pending_metrics, at_step: int) -> dict:
    values = jax.device_get(pending_metrics)
    loss = float(values["loss_sum"]) / max(float(values["count"]), 1.0)
    if not math.isfinite(loss) or not math.isfinite(float(values["grad_norm"])):
      raise NonFiniteLossError(
          f"the training loss became {loss} at step {at_step}; stopping. The last good "
          f"checkpoint (step {self.ckpt.latest_step()}) is kept in {self.ckpt.latest_dir}. "
          "Lower optimizer.learning_rate, enable optimizer.grad_clip_norm or use float32.")
    values["loss"] = loss
    return values

  def time_to_save(self) -> bool:
    """checkpoint_every_minutes has passed (decided by process 0, for all)."""
    minutes = self.config.checkpoint_every_minutes
    if not minutes:
      return False
    due = time.time() - self.last_save_time >= 60 * minutes
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
    return due

  def save(self, state, step: int, train_iter, best: dict) -> None:
    self.ckpt.save_latest(step, state, {"iterator": train_iter.get_state(), "best": best})
    self.last_save_time = time.time()
    if self.trainer.run.lead:
      self.wall.update()

  def train(self, state, best: dict, iterator_state, step_callback):
    """Runs the steps up to num_train_steps, the data from `iterator_state` (None: the
    start): (final state, step, best record)."""
    trainer, ckpt, writer, config = self.trainer, self.ckpt, self.writer, self.config
    run, last = trainer.run, config.num_train_steps
    train_iter = iter(run.dataset("train"))
    if iterator_state is not None:
      train_iter.set_state(iterator_state)
    step = start = int(state.step)
    progress = Progress(last, step, enabled=config.progress_bar and run.lead)
    window, pending = [], None
    try:
      while step < last and not self.stop.received:
        batch = trainer.to_global(next(train_iter))
        state, metrics = trainer.train_step(state, batch)
        step += 1
        ckpt.check()  # a background save that failed stops the run here
        if pending is not None:  # read step t - 1 while step t runs
          window.append(self.read(*pending))
        pending = (metrics, step)
        log, validate, save = (every(step, n, last) for n in (
            config.log_every, config.eval_every, config.checkpoint_every))
        stopping = self.stop.requested(step)
        if not (log or validate or save or stopping):
          continue
        window.append(self.read(*pending))
        pending = None
        if log:
          summed = {k: sum(float(w[k]) for w in window)
                    for k in ("loss_sum", "correct", "count")}
          logged = {"loss": summed["loss_sum"] / max(summed["count"], 1),
                    "accuracy": summed["correct"] / max(summed["count"], 1),
                    "grad_norm": float(window[-1]["grad_norm"]),
                    "learning_rate": float(trainer.schedule(step - 1))}
          writer.write(step, "train", logged)
          progress.update(step, logged["loss"])
          if step_callback is not None:
            step_callback(step, logged)
          window = []
          save = save or self.time_to_save()
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
        if save or stopping:
          self.save(state, step, train_iter, best)
    finally:
      progress.close()
    if self.stop.received and step > start and ckpt.latest_step() != step:
      self.save(state, step, train_iter, best)  # the signal came after this step's check
    ckpt.wait()
    if self.stop.received:
      raise Interrupted(
          f"Stopped by {self.stop.received} at step {step}; the checkpoint of step "
          f"{ckpt.latest_step()} is saved in {ckpt.latest_dir}. Rerun the same command to "
          f"resume from it.", step)
    return state, step, best


def _test(trainer: Trainer, ckpt: Checkpointer, writer: MetricWriter, state, step: int, *,
          best: dict) -> dict:
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
      # Official or generated data, and which (recorded when it was prepared).
      "data_provenance": run.source.provenance(),
  }
