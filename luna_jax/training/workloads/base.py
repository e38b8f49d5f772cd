"""A kind of run (a workload): the record of what it reads, the model it trains, what it
optimises and how it reports, as fairseq's tasks are (`register_task`).

The loop, the run's setup, evaluation and compile-only runs ask the workload of
`config.task` and know no kind of run by name. Adding one is a `Workload` subclass in a
module of its own and one `register_workload(...)` line: its config keys and checks, its
data source (`luna_jax.data.source`), its model and objective, and what it adds to
metrics and the summary. `tests/test_custom_workload.py` defines one in the test file.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable

import jax.numpy as jnp
import ml_collections

from luna_jax import errors
from luna_jax.data.source import DataSource, Feed


@dataclasses.dataclass(frozen=True)
class Devices:
  """What a run is checked against: the mesh's devices and processes."""

  count: int
  processes: int = 1


class Workload(abc.ABC):
  """A kind of run. Subclasses set the class attributes, implement the abstract methods
  and override what else differs.

  Attributes:
    name: the workload's name (recorded in the summary).
    objectives: the config.objective values it trains with; the first is what "" means.
    uses_rows: its batches are config.batch_size rows of config.max_len tokens (the
      checks of those keys apply).
  """

  name: str = ""
  objectives: tuple[str, ...] = ()
  uses_rows: bool = True

  @abc.abstractmethod
  def task_names(self) -> tuple[str, ...]:
    """The config.task values this workload runs."""

  def add_config(self, config: ml_collections.ConfigDict) -> None:
    """Adds this workload's keys (and blocks) to the shared defaults (none here)."""
    del config

  def check(self, config, devices: Devices) -> None:
    """Its own config checks (`errors.require`), after the shared ones (none here)."""
    del config, devices

  def prepare_vocabulary(self, config, sync: Callable[[str], None]) -> None:
    """Before the run is set up: makes what the source's vocabulary is read from, where
    that must be generated first (translation trains its SentencePiece model on the
    generated text). `sync(name)`: a barrier of every process, after the first wrote."""
    del config, sync

  def prepare_data(self, run, sync: Callable[[str], None]) -> None:
    """After the config is checked: makes the run's missing data on first use where it
    can, or stops with the command that prepares it."""
    del run, sync

  @abc.abstractmethod
  def source(self, config, compile_only: bool = False) -> DataSource:
    """The run's data source; compile_only: a compile-only run, whose data need not be
    here (what the programs need, such as the vocabulary size, comes from the config)."""

  @abc.abstractmethod
  def build_model(self, config, source: DataSource):
    """The Flax module the run trains, sized from the source (its vocabulary)."""

  @abc.abstractmethod
  def objective(self, config, source: DataSource):
    """What the run optimises (`objectives`): metric sums of a batch, its summary."""

  def example_inputs(self, config, source: DataSource) -> tuple:
    """The model's inputs for one example (what its parameters are made from)."""
    return (jnp.zeros((1, config.max_len), jnp.int32),)

  def feed(self, config, devices: Devices) -> Feed:
    """How the run reads its batches (its processes fill in their index)."""
    return Feed(global_batch=config.batch_size,
                rows_multiple=devices.count * config.optimizer.grad_accum_steps,
                seed=config.seed)

  def extra_metrics(self, trainer, params, split: str, validation: bool) -> dict:
    """Metrics beyond the objective's sums over batches (translation: BLEU)."""
    del trainer, params, split, validation
    return {}

  def extra_programs(self, trainer, batch: dict) -> list:
    """[(name, jitted function, abstract arguments)] a run compiles beyond its train and
    eval steps (translation: generation), for compile-only runs."""
    del trainer, batch
    return []

  def summary_extras(self, run, test: dict) -> dict:
    """Entries this workload adds to the run's summary."""
    del run, test
    return {}

  def summary_line(self, summary: dict, objective) -> str:
    """The summary's closing line (the objective's)."""
    return objective.summary_line(summary)


def check_rows(config, devices: Devices) -> None:
  """The checks of a run whose batches are batch_size rows of max_len tokens."""
  accum = config.optimizer.grad_accum_steps
  errors.require(config.batch_size % (devices.count * accum) == 0,
                 f"batch_size={config.batch_size} must be divisible by the number of "
                 f"devices ({devices.count}) times optimizer.grad_accum_steps ({accum}).")
  errors.require(config.batch_size % devices.processes == 0,
                 f"batch_size={config.batch_size} must be divisible by the number of "
                 f"processes ({devices.processes}).")
  errors.require(config.max_len > int(config.add_cls) + int(config.add_eos),
                 f"max_len={config.max_len} leaves no room for tokens.")


_WORKLOADS: dict[str, Workload] = {}


def register_workload(workload: Workload) -> Workload:
  """Makes `workload` run its tasks (config.task); a task another workload runs is an
  error."""
  taken = {t: w.name for w in _WORKLOADS.values() if w.name != workload.name
           for t in w.task_names()}
  clash = sorted(set(workload.task_names()) & set(taken))
  if clash:
    raise ValueError(f"task {clash[0]!r} is already run by the workload {taken[clash[0]]!r}.")
  _WORKLOADS[workload.name] = workload
  return workload


def unregister_workload(name: str) -> None:
  _WORKLOADS.pop(name, None)


def workloads() -> tuple[Workload, ...]:
  return tuple(_WORKLOADS.values())


def task_names() -> tuple[str, ...]:
  """Every config.task value some workload runs."""
  return tuple(t for w in _WORKLOADS.values() for t in w.task_names())


def workload_of(config) -> Workload:
  """The workload that runs config.task (ConfigError naming every task otherwise)."""
  for workload in _WORKLOADS.values():
    if config.task in workload.task_names():
      return workload
  raise errors.ConfigError(f"invalid config: unknown task {config.task!r}; choose one of: "
                           f"{', '.join(task_names())}.")


def objective_name(config, workload: Workload) -> str:
  """config.objective, or the workload's own when it is ""."""
  return config.objective or workload.objectives[0]
