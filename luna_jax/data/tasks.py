"""The LRA tasks: which dataset, classes, vocabulary and tokenisation each one uses."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from luna_jax.data import vocab as vocab_lib


@dataclasses.dataclass(frozen=True)
class Task:
  """One LRA task.

  Attributes:
    name: the task's name on the command line.
    builder: the tfds builder name (with its config, for Pathfinder).
    num_classes: classes of the label.
    vocab: the task's vocabulary (see `vocab`).
    pair: examples are two documents (retrieval) encoded by one shared encoder.
    splits: our split name -> the builder's split (Text validates on its test split, as LRA).
    encode: example dict -> int32 token ids (a tuple of two for pairs).
    sources: ways `prepare` can obtain the data ("generate", "release", "manual").
    default_length: tokens per example (per document for pairs) before CLS/EOS.
  """

  name: str
  builder: str
  num_classes: int
  vocab: vocab_lib.Vocab
  pair: bool
  splits: dict
  encode: Callable[[dict], object]
  sources: tuple
  default_length: int


_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else value


def _listops(ex):
  return vocab_lib.encode_listops(_text(ex["source"]))


def _pixels(ex):
  return vocab_lib.encode_pixels(ex["image"])


def _document(ex):
  return vocab_lib.encode_bytes(ex["text"])


def _documents(ex):
  return vocab_lib.encode_bytes(ex["text1"]), vocab_lib.encode_bytes(ex["text2"])


PATHFINDER_RESOLUTIONS = (32, 64, 128, 256)
ALIASES = {"pathx": "pathfinder128"}


def get_task(name: str, difficulty: str = "hard") -> Task:
  """The task called `name` (listops, text, retrieval, image, pathfinder32/64/128/256,
  pathx); Pathfinder takes a difficulty (easy, intermediate, hard; LRA uses hard)."""
  name = ALIASES.get(name, name)
  if name == "listops":
    return Task(name, "lra_listops", 10, vocab_lib.LISTOPS_VOCAB, False, _SPLITS, _listops,
                ("generate", "release"), 2000)
  if name == "text":
    return Task(name, "lra_text", 2, vocab_lib.BYTE_VOCAB, False,
                {"train": "train", "validation": "test", "test": "test"}, _document,
                ("manual", "download"), 4000)
  if name == "retrieval":
    return Task(name, "lra_retrieval", 2, vocab_lib.BYTE_VOCAB, True, _SPLITS, _documents,
                ("release",), 4000)
  if name == "image":
    return Task(name, "lra_image", 10, vocab_lib.PIXEL_VOCAB, False, _SPLITS, _pixels,
                ("manual", "download"), 1024)
  if name.startswith("pathfinder") and name[len("pathfinder"):].isdigit():
    res = int(name[len("pathfinder"):])
    if res in PATHFINDER_RESOLUTIONS:
      from luna_jax.data.pathfinder_gen import DIFFICULTIES
      if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown Pathfinder difficulty {difficulty!r}; choose one of "
                         f"{', '.join(DIFFICULTIES)}.")
      return Task(name, f"lra_pathfinder/{res}_{difficulty}", 2, vocab_lib.PIXEL_VOCAB, False,
                  _SPLITS, _pixels, ("generate", "release"), res * res)
  raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}.")


TASK_NAMES = ("listops", "text", "retrieval", "image") + tuple(
    f"pathfinder{r}" for r in PATHFINDER_RESOLUTIONS) + ("pathx",)


def majority_rate(labels: np.ndarray, num_classes: int) -> float:
  """The accuracy of always predicting the most frequent class."""
  counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
  return float(counts.max() / max(1, counts.sum()))
