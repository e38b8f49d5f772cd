"""The LRA tasks (ListOps, Text, Retrieval, Image, Pathfinder, Path-X): classification of
each task's label, or masked / causal language modelling of its inputs (self-pre-training,
`pretrain`). Its keys: data_dir, difficulty and the sizes of generated tasks.
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp

from luna_jax import data, errors
from luna_jax.data.pipeline import InputConfig, TaskSource
from luna_jax.models.classifier import LraClassifier
from luna_jax.training import model_config
from luna_jax.training.objectives import Classification, LanguageModelling
from luna_jax.training.workloads.base import (Devices, Workload, check_rows, objective_name,
                                              register_workload)


class Lra(Workload):
  """An LRA task's classifier (objective classify) or language model (mlm, clm)."""

  name = "lra"
  objectives = ("classify", "mlm", "clm")

  def task_names(self) -> tuple[str, ...]:
    return data.task_names()  # read when asked: a registered task joins at once

  def add_config(self, c) -> None:
    c.difficulty = "hard"  # Pathfinder subset: easy | intermediate | hard (LRA: hard)
    c.data_dir = "~/lra_data"  # prepared datasets (python -m luna_jax.data prepare TASK ...)
    # Generated tasks (ListOps, Pathfinder, Path-X) missing from data_dir are generated on
    # first use, on every core: -1 the official training size (ListOps 96,000, Pathfinder
    # 160,000), n > 0 that many, 0 never (stop with the prepare command instead).
    c.generate_examples = -1
    c.generate_eval_examples = 0  # ... and the validation and test size each; 0: the
    #                               official proportion (ListOps 2,000 per 96,000,
    #                               Pathfinder 1/8)

  def check(self, config, devices: Devices) -> None:
    check_rows(config, devices)
    classify = objective_name(config, self) == "classify"
    if classify and config.model.causal:
      errors.require(config.model.pooling == "mean", "a causal classifier's CLS token sees "
                     "only itself: set model.pooling=mean.")

  def prepare_data(self, run, sync) -> None:
    ensure_task_data(run.config, run.source.task, lead=run.lead,
                     barrier=lambda: sync("data_generated"))

  def source(self, config, compile_only: bool = False) -> TaskSource:
    del compile_only  # the task's record is all the programs need
    return TaskSource(_task(config), pathlib.Path(config.data_dir).expanduser(),
                      InputConfig(config.max_len, config.add_cls, config.add_eos))

  def build_model(self, config, source: TaskSource):
    if objective_name(config, self) != "classify":
      return model_config.language_model(config, source.vocab)
    m, task = config.model, source.task
    return LraClassifier(
        vocab_size=task.vocab.size, max_len=config.max_len, num_classes=task.num_classes,
        d_model=m.d_model, classifier_hidden=m.classifier_hidden, dropout=m.dropout,
        pooling=m.pooling, pair_combination=m.pair_combination, init_style=m.init_style,
        encoder=model_config.encoder_settings(config), dtype=model_config.DTYPES[m.dtype])

  def objective(self, config, source: TaskSource):
    name = objective_name(config, self)
    if name == "classify":
      return Classification(source.task.num_classes)
    return LanguageModelling.of(name, source.vocab, config.mlm)

  def example_inputs(self, config, source: TaskSource) -> tuple:
    """Pairs (retrieval) are (1, 2, max_len) for the classifier; a language model reads
    them as single documents."""
    pairs = source.task.pair and objective_name(config, self) == "classify"
    shape = (1, 2, config.max_len) if pairs else (1, config.max_len)
    return (jnp.zeros(shape, jnp.int32),)


def ensure_task_data(config, task: data.Task, *, lead: bool = True, barrier=None) -> None:
  """Generates a generated task (ListOps, Pathfinder) missing from config.data_dir, as
  config.generate_examples says (by the lead process; `barrier` then waits for it); any
  other missing task stops with the prepare command."""
  generate = config.generate_examples
  if generate < 0:
    generate = task.generator.official_sizes["train"] if task.generator else 0
  data.ensure_prepared(
      task, config.data_dir, generate=generate,
      num_eval_examples=config.generate_eval_examples or None, progress=config.progress_bar,
      lead=lead, barrier=barrier)


def _task(config) -> data.Task:
  return data.get_task(config.task, config.difficulty)


register_workload(Lra())
