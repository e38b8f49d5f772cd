"""One run's setup, resolved once from (config, workdir) and shared by training and
evaluation: the validated config, its workload and data source, the expanded paths, the
device mesh and the model. `train_and_evaluate` and `evaluate_workdir` both start from
`Run.create`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from luna_jax import errors
from luna_jax.data.source import DataSource
from luna_jax.training import config as config_lib
from luna_jax.training.checkpoint import Checkpointer
from luna_jax.training.workloads import Devices, Workload, objective_name, workload_of

CONFIG_FILE = "config.json"  # the run's config, written by training and read by evaluation
SUMMARY_FILE = "summary.json"  # the final summary of train_and_evaluate
CHECKPOINTS_DIR = "checkpoints"
CHANGES_KEY = "changes_on_resume"  # config.json's list of config changes made on resume


def workdir_path(workdir) -> pathlib.Path:
  """The workdir as an absolute path, ~ expanded."""
  return pathlib.Path(workdir).expanduser().absolute()


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config.json a train.py run wrote into its workdir. Keys added to the defaults
  since it was written take their current default (an older translation workdir is
  evaluated with today's search, fairseq's, unless translation.search is overridden)."""
  path = workdir_path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise errors.WorkdirError(f"{path} not found: is {workdir} a train.py workdir?")
  saved = json.loads(path.read_text())
  saved.pop(CHANGES_KEY, None)  # the record of changes on resume, not a setting
  return ml_collections.ConfigDict(with_defaults(saved, config_lib.base_config().to_dict()))


def with_defaults(saved: dict, defaults: dict) -> dict:
  """`saved` with every key of `defaults` it lacks (nested dicts merged)."""
  out = dict(saved)
  for key, value in defaults.items():
    if key not in out:
      out[key] = value
    elif isinstance(value, dict) and isinstance(out[key], dict):
      out[key] = with_defaults(out[key], value)
  return out


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything a run derives from its config, once (build it with `Run.create`).

  Attributes:
    config: the validated config, its objective resolved (leave it unchanged: the rest
      is derived from it).
    workdir: the absolute workdir (config.json, metrics, checkpoints, summary.json).
    workload: the kind of run config.task is (`workloads`).
    source: the workload's data source (`luna_jax.data.source`).
    mesh: one "data" axis over every device of every process (or over the devices of a
      TPU slice that is not here, for a compile-only run: `luna_jax.training.aot`).
    model: the model the config describes (the workload's).
  """

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  workload: Workload
  source: DataSource
  mesh: Mesh
  model: object

  @classmethod
  def create(cls, config, workdir, devices=None, compile_only: bool = False) -> Run:
    """Validates the config (before anything compiles) and resolves the run.

    devices: the mesh's devices (default: jax.devices(), every process's); compile_only:
    a compile-only run, whose data need not be here (`Workload.source`)."""
    devices = jax.devices() if devices is None else list(devices)
    processes = len({d.process_index for d in devices})
    source = config_lib.validate(config, len(devices), processes, compile_only)
    workload = workload_of(config)
    if not config.objective:  # recorded in config.json and the summary as it ran
      config = config.copy_and_resolve_references()
      config.objective = objective_name(config, workload)
    return cls(config=config, workdir=workdir_path(workdir), workload=workload,
               source=source, mesh=Mesh(np.asarray(devices), ("data",)),
               model=workload.build_model(config, source))

  @property
  def lead(self) -> bool:
    """Whether this process writes the workdir's files (process 0)."""
    return jax.process_index() == 0

  @property
  def devices(self) -> Devices:
    return Devices(self.mesh.size, len({d.process_index for d in self.mesh.devices.flat}))

  @property
  def config_path(self) -> pathlib.Path:
    return self.workdir / CONFIG_FILE

  @property
  def summary_path(self) -> pathlib.Path:
    return self.workdir / SUMMARY_FILE

  @property
  def checkpoint_dir(self) -> pathlib.Path:
    return self.workdir / CHECKPOINTS_DIR

  def checkpointer(self) -> Checkpointer:
    """The workdir's checkpoints (close it, or use it in a `with` block)."""
    return Checkpointer(self.checkpoint_dir, self.config.keep_checkpoints)

  def objective(self):
    """What the run optimises (`objectives`)."""
    return self.workload.objective(self.config, self.source)

  def example_inputs(self) -> tuple:
    """The model's inputs for one example (what its parameters are made from)."""
    return self.workload.example_inputs(self.config, self.source)

  def feed(self):
    """How this process reads the run's batches (`luna_jax.data.source.Feed`)."""
    feed = self.workload.feed(self.config, self.devices)
    return dataclasses.replace(feed, process_index=jax.process_index(),
                               process_count=jax.process_count())

  def batch_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (global shape, dtype)} of the largest training or evaluation batch."""
    return self.source.batch_spec(self.feed())

  def dataset(self, split: str, num_epochs=None, shuffle=None):
    """This process's batches of a split (the source's `batches`)."""
    return self.source.batches(split, self.feed(), num_epochs=num_epochs, shuffle=shuffle)
