"""grain pipelines: shuffled, resumable global batches of random-access examples
(`batched`), and an LRA task's prepared tfds dataset as a run's data source
(`TaskSource`): tokens, CLS/EOS, padding.

An LRA task's batches are dicts of NumPy arrays for this process's share of the global
batch:
    inputs  int32 (b, L), or (b, 2, L) for pairs (retrieval); 0 is padding
    label   int32 (b,)
    weight  float32 (b,): 1 for real examples, 0 for fillers of the last eval batch

The order of examples is a function of (seed, epoch) alone: every process walks the same
globally shuffled index stream and keeps its own rows of each global batch, so a run on
several hosts sees the same global batches as a run on one. The iterator's state (a small
dict) can be saved and restored to continue at the same position. Examples are read
from the prepared dataset (`prepared.data_source`), never through the build code.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional

import grain
import numpy as np

from luna_jax.data.prepared import data_source, describe_provenance, read_provenance
from luna_jax.data.source import BatchSpec, Feed
from luna_jax.data.tasks import Task, get_task


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """How examples become model inputs.

  Attributes:
    max_len: tokens per example (per document for pairs), CLS and EOS included.
    add_cls / add_eos: prepend the CLS token / append the EOS token (Luna's LRA setting).
  """

  max_len: int
  add_cls: bool = True
  add_eos: bool = True


def to_tokens(ids: np.ndarray, task: Optional[Task], cfg: InputConfig, *,
              cls_id: Optional[int] = None, eos_id: Optional[int] = None) -> np.ndarray:
  """Truncates to fit, adds CLS/EOS (the task's, unless given), pads with 0 to
  cfg.max_len."""
  room = cfg.max_len - cfg.add_cls - cfg.add_eos
  if room <= 0:
    raise ValueError(f"max_len={cfg.max_len} leaves no room for tokens after CLS/EOS.")
  parts = [np.asarray(ids[:room], np.int32)]
  if cfg.add_cls:
    parts.insert(0, np.array([task.vocab.cls_id if cls_id is None else cls_id], np.int32))
  if cfg.add_eos:
    parts.append(np.array([task.vocab.eos_id if eos_id is None else eos_id], np.int32))
  tokens = np.concatenate(parts)
  return np.pad(tokens, (0, cfg.max_len - len(tokens)))


class _LocalRows:
  """One global batch of example indices (-1 = filler) -> load(this process's rows)."""

  def __init__(self, load, global_batch: int, process_index: int, process_count: int):
    self.load, self.global_batch = load, global_batch
    self.local = global_batch // process_count
    self.start = process_index * self.local

  def __call__(self, indices: np.ndarray) -> dict:
    indices = np.asarray(indices, np.int64)
    indices = np.pad(indices, (0, self.global_batch - len(indices)), constant_values=-1)
    return self.load(indices[self.start:self.start + self.local])


def batched(num_examples: int, load, *, global_batch: int, seed: int = 0,
            shuffle: bool = False, num_epochs: Optional[int] = None, process_index: int = 0,
            process_count: int = 1) -> grain.IterDataset:
  """A grain dataset of this process's batches of `num_examples` random-access examples:
  global batches of indices, shuffled per epoch from `seed` alone, each process's rows
  made by load(indices (b,), -1 for fillers) -> dict (see the module docstring)."""
  if global_batch % process_count:
    raise ValueError(f"global batch {global_batch} does not divide among {process_count} "
                     "processes.")
  ds = grain.MapDataset.range(num_examples)
  if shuffle:
    ds = ds.seed(seed).shuffle()  # reshuffled in every epoch of the repeat below
  ds = ds.repeat(num_epochs)
  ds = ds.batch(global_batch, drop_remainder=num_epochs is None)
  return ds.map(_LocalRows(load, global_batch, process_index, process_count)).to_iter_dataset()


class _TaskRows:
  """An LRA task's examples at `rows` (-1 = a filler: example 0 with weight 0)."""

  def __init__(self, source, task: Task, cfg: InputConfig):
    self.source, self.task, self.cfg = source, task, cfg

  def __call__(self, rows: np.ndarray) -> dict:
    inputs, labels = [], []
    for index in rows:
      example = self.source[int(max(index, 0))]
      encoded = self.task.encode(example)
      if self.task.pair:
        inputs.append(np.stack([to_tokens(e, self.task, self.cfg) for e in encoded]))
      else:
        inputs.append(to_tokens(encoded, self.task, self.cfg))
      labels.append(int(example["label"]))
    return {"inputs": np.stack(inputs), "label": np.asarray(labels, np.int32),
            "weight": (rows >= 0).astype(np.float32)}


def make_dataset(
    task: Task | str,
    split: str,
    data_dir,
    cfg: InputConfig,
    *,
    global_batch: int,
    seed: int = 0,
    shuffle: Optional[bool] = None,
    num_epochs: Optional[int] = None,
    process_index: int = 0,
    process_count: int = 1,
    source=None,
) -> grain.IterDataset:
  """A grain dataset of an LRA task's batches (see the module docstring).

  Args:
    split: "train", "validation" or "test".
    global_batch: examples per step over all processes; must divide by process_count.
    shuffle: reshuffle the examples each epoch (default: only for train).
    num_epochs: None repeats forever (training); 1 for one evaluation pass, whose last
      batch is filled up with weight-0 examples so that every batch has the same shape.
    source: a random-access source of the split's examples to read instead of the
      prepared tfds split (tfds's mock data in the tests).
  """
  task = get_task(task) if isinstance(task, str) else task
  source = data_source(task, split, data_dir) if source is None else source
  return batched(len(source), _TaskRows(source, task, cfg), global_batch=global_batch,
                 seed=seed, shuffle=split == "train" if shuffle is None else shuffle,
                 num_epochs=num_epochs, process_index=process_index,
                 process_count=process_count)


@dataclasses.dataclass(frozen=True)
class TaskSource:
  """An LRA task's prepared dataset as a run's data source (`source.DataSource`)."""

  task: Task
  data_dir: pathlib.Path
  input_cfg: InputConfig

  @property
  def vocab(self):
    return self.task.vocab

  def batches(self, split: str, feed: Feed, *, num_epochs=None, shuffle=None):
    return make_dataset(self.task, split, self.data_dir, self.input_cfg,
                        global_batch=feed.global_batch, seed=feed.seed, shuffle=shuffle,
                        num_epochs=num_epochs, process_index=feed.process_index,
                        process_count=feed.process_count)

  def batch_spec(self, feed: Feed) -> BatchSpec:
    b, n = feed.global_batch, self.input_cfg.max_len
    return {"inputs": ((b, 2, n) if self.task.pair else (b, n), np.int32),
            "label": ((b,), np.int32), "weight": ((b,), np.float32)}

  def provenance(self) -> dict:
    """Official or generated data, and which: recorded by `prepare`."""
    return read_provenance(self.task, self.data_dir) or describe_provenance(None)
