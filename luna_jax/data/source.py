"""The contract of a run's data source: one per kind of data (an LRA task's prepared
dataset, a tokenised corpus, a folder of parallel text), built once by the run's workload.

A source has
    vocab                 the id layout its tokens use (`vocab.Vocab`): what the model embeds
    batches(split, feed, *, num_epochs=None, shuffle=None)
                          this process's batches of a split: an iterator of dicts of NumPy
                          arrays with get_state() / set_state(), so that a resumed run goes
                          on at the same batch. Each source yields its own keys (an LRA task
                          "inputs" and "label", a corpus "inputs" and maybe "segments",
                          parallel text "source", "target" and "index"), and every batch a
                          float32 "weight" (b,) that is 0 on the fillers of a last batch.
                          num_epochs=None repeats forever (training); shuffle defaults to
                          split == "train".
    batch_spec(feed)      {key: (global shape, dtype)} of the largest batch `batches`
                          makes: what a compile-only run lowers with
    provenance()          where the data came from, for the run's summary
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Protocol

import numpy as np

from luna_jax.data import vocab as vocab_lib

BatchSpec = dict[str, tuple[tuple[int, ...], type]]


@dataclasses.dataclass(frozen=True)
class Feed:
  """How a run reads its batches.

  Attributes:
    global_batch: examples per step over all processes (sources of fixed-length rows).
    rows_multiple: what every batch's rows divide by (devices times micro-batches; the
      token-batched parallel text sizes its batches with it).
    seed: the data order's seed.
    process_index, process_count: this process among the run's (each keeps its rows).
  """

  global_batch: int
  rows_multiple: int
  seed: int = 0
  process_index: int = 0
  process_count: int = 1


class Batches(Protocol):
  def __iter__(self) -> Iterator[dict[str, np.ndarray]]: ...
  def get_state(self) -> dict: ...
  def set_state(self, state: dict) -> None: ...


class DataSource(Protocol):
  vocab: vocab_lib.Vocab

  def batches(self, split: str, feed: Feed, *, num_epochs=None, shuffle=None) -> Batches: ...
  def batch_spec(self, feed: Feed) -> BatchSpec: ...
  def provenance(self) -> dict: ...
