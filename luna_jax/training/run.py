"""One run's setup, resolved once from (config, workdir) and shared by training and
evaluation: the validated config, the task, the expanded paths, the device mesh and the
model. `train_and_evaluate` and `evaluate_workdir` both start from `Run.create`.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from luna_jax import data
from luna_jax.training import config as config_lib
from luna_jax.training.checkpoint import Checkpointer

CONFIG_FILE = "config.json"  # the run's config, written by training and read by evaluation
SUMMARY_FILE = "summary.json"  # the final summary of train_and_evaluate


def workdir_path(workdir) -> pathlib.Path:
  """The workdir as an absolute path, ~ expanded."""
  return pathlib.Path(workdir).expanduser().absolute()


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything a run derives from its config, once (build it with `Run.create`).

  Attributes:
    config: the validated config (leave it unchanged: the rest is derived from it).
    workdir: the absolute workdir (config.json, metrics, checkpoints, summary.json).
    task: the task record of config.task and config.difficulty.
    data_dir: config.data_dir with ~ expanded.
    input_cfg: the tokenisation settings of the pipeline (length, CLS, EOS).
    mesh: one "data" axis over every device of every process (or over the devices of a
      TPU slice that is not here, for a compile-only run: `luna_jax.training.aot`).
    model: the model the config describes (classifier, language or translation model).
  """

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  task: data.Task
  data_dir: pathlib.Path
  input_cfg: data.InputConfig
  mesh: Mesh
  model: object

  @classmethod
  def create(cls, config, workdir, devices=None, task: data.Task | None = None) -> Run:
    """Validates the config (before anything compiles) and resolves the run.

    devices: the mesh's devices (default: jax.devices(), every process's); task: the
    task record to use instead of reading it from the config's data (a compile-only run
    of a translation config whose data is not prepared here)."""
    devices = jax.devices() if devices is None else list(devices)
    processes = len({d.process_index for d in devices})
    task = config_lib.validate(config, len(devices), processes, task=task)
    # A corpus row carries its document's EOS itself (`data.corpus.CorpusRows`).
    add_eos = config.add_eos and task.name != "corpus"
    return cls(config=config, workdir=workdir_path(workdir), task=task,
               data_dir=pathlib.Path(config.data_dir).expanduser(),
               input_cfg=data.InputConfig(config.max_len, config.add_cls, add_eos),
               mesh=Mesh(np.asarray(devices), ("data",)),
               model=config_lib.build_model(config, task))

  @property
  def lead(self) -> bool:
    """Whether this process writes the workdir's files (process 0)."""
    return jax.process_index() == 0

  @property
  def config_path(self) -> pathlib.Path:
    return self.workdir / CONFIG_FILE

  @property
  def summary_path(self) -> pathlib.Path:
    return self.workdir / SUMMARY_FILE

  @property
  def checkpoint_dir(self) -> pathlib.Path:
    return self.workdir / "checkpoints"

  def checkpointer(self) -> Checkpointer:
    """The workdir's checkpoints (close it, or use it in a `with` block)."""
    return Checkpointer(self.checkpoint_dir, self.config.keep_checkpoints)

  def example_inputs(self) -> tuple:
    """The model's inputs for one example (what its parameters are made from): tokens
    (1, 2, max_len) for classifying pairs, else (1, max_len) (language models read pairs
    as single documents); (source, target) of 8 tokens each for translation."""
    if self.config.objective == "seq2seq":
      return (jnp.ones((1, 8), jnp.int32),) * 2
    pairs = self.task.pair and self.config.objective == "classify"
    shape = (1, 2, self.config.max_len) if pairs else (1, self.config.max_len)
    return (jnp.zeros(shape, jnp.int32),)

  def batch_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (global shape, dtype)} of a training or evaluation batch, as `dataset`
    makes them; translation: the bucket of the longest pairs (each bucket's length
    compiles once, and the longest holds the most tokens per row)."""
    c = self.config
    if self.task.name == "translation":
      from luna_jax.data.translation import bucket_lengths, rows_per_batch

      t = c.translation
      length = bucket_lengths(max(t.max_source_len, t.max_target_len))[-1]
      rows = rows_per_batch(length, t.max_tokens, self.mesh.size * c.optimizer.grad_accum_steps)
      return {"source": ((rows, length), np.int32), "target": ((rows, length), np.int32),
              "weight": ((rows,), np.float32), "index": ((rows,), np.int32)}
    b = c.batch_size
    inputs = (b, 2, c.max_len) if self.task.pair else (b, c.max_len)
    spec = {"inputs": (inputs, np.int32), "label": ((b,), np.int32),
            "weight": ((b,), np.float32)}
    if c.pack_documents:
      spec["segments"] = ((b, c.max_len), np.int32)
    return spec

  def dataset(self, split: str, **kw):
    """This process's batches of a split (see `luna_jax.data.make_dataset`; translation:
    `luna_jax.data.translation.TokenBatches`)."""
    if self.task.name == "translation":
      return self._token_batches(split, **kw)
    if self.task.name == "corpus" and "source" not in kw:
      from luna_jax.data.corpus import CorpusRows

      kw["source"] = CorpusRows(self.config.corpus_dir, split,
                                self.config.max_len - int(self.config.add_cls),
                                pack=self.config.pack_documents)
    return data.make_dataset(
        self.task, split, self.data_dir, self.input_cfg, global_batch=self.config.batch_size,
        seed=self.config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), **kw)

  def translation_pairs(self, split: str):
    from luna_jax.data.translation import TranslationPairs

    t = self.config.translation
    return TranslationPairs(self.config.translation_dir, split, t.max_source_len,
                            t.max_target_len, t.too_long)

  def _token_batches(self, split: str, num_epochs=None, shuffle=None):
    from luna_jax.data.translation import TokenBatches

    config = self.config
    return TokenBatches(
        self.translation_pairs(split), max_tokens=config.translation.max_tokens,
        rows_multiple=self.mesh.size * config.optimizer.grad_accum_steps,
        seed=config.seed, shuffle=split == "train" if shuffle is None else shuffle,
        num_epochs=num_epochs, process_index=jax.process_index(),
        process_count=jax.process_count())
