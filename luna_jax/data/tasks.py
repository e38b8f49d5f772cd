"""The LRA tasks, one record each: dataset, classes, vocabulary, tokenisation, sources.

Adding a task is one `register_task(Task(...))` below, plus its tfds builder in
`builders`, which reads the files the record names. Reading a prepared task needs only
this module and `prepared`; `build` (and `builders`) use the rest of the record.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, Optional


from luna_jax import errors
from luna_jax.data import listops, pathfinder
from luna_jax.data import vocab as vocab_lib

# The version of every luna-jax tfds builder: prepared data lives in
# <data_dir>/<builder>/<DATASET_VERSION>.
DATASET_VERSION = "1.0.0"
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Archive:
  """An official archive: taken from the manual dir (--source manual) or downloaded."""

  name: str
  url: str


@dataclasses.dataclass(frozen=True)
class Generator:
  """How `prepare --source generate` writes a task's files in the release layout.

  Attributes:
    module: the generator, as recorded in provenance.json.
    title: the data's name in messages and the progress bar ("ListOps").
    write: (root, {split: examples}, seed, progress(n) or None, workers) -> None; writes
      under root what the builder reads from a release folder, with `workers` processes
      (None: every core), the same files for any number of them.
    official_sizes: {split: examples} of the official data.
  """

  module: str
  title: str
  write: Callable[..., object]
  official_sizes: Mapping[str, int]


def _same_splits() -> dict[str, str]:
  return {s: s for s in SPLITS}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
  """One LRA task.

  Attributes:
    name: the task's name on the command line.
    builder: the tfds builder name (with its config, for Pathfinder).
    num_classes: classes of the label.
    vocab: the task's vocabulary (see `vocab`).
    encode: example dict -> int32 token ids (a tuple of two for pairs).
    default_length: tokens per example (per document for pairs) before CLS/EOS.
    pair: examples are two documents (retrieval) encoded by one shared encoder.
    splits: our split name -> the builder's split (Text validates on its test split).
    release_files: what the builder reads from a release folder (--source release):
      split -> path in the folder, or "all" -> the one folder all splits come from (a
      trailing "/" marks a folder); empty when there is no release source.
    release_what: what those files are, for the message when one is missing.
    generator: how to generate the files; None when the task cannot be generated.
    archive: the official archive the builder reads (--source manual or download).
    difficulty: the Pathfinder subset (recorded in the provenance); None elsewhere.
    with_difficulty: difficulty -> this task's record for another difficulty.
  """

  name: str
  builder: str
  num_classes: int
  vocab: vocab_lib.Vocab
  encode: Callable[[dict], object]
  default_length: int
  pair: bool = False
  splits: Mapping[str, str] = dataclasses.field(default_factory=_same_splits)
  release_files: Mapping[str, str] = dataclasses.field(default_factory=dict)
  release_what: str = ""
  generator: Optional[Generator] = None
  archive: Optional[Archive] = None
  difficulty: Optional[str] = None
  with_difficulty: Optional[Callable[[str], "Task"]] = None

  @property
  def sources(self) -> tuple[str, ...]:
    """Ways `prepare` can obtain the data: generate, release, manual, download."""
    return (("generate",) * (self.generator is not None) +
            ("release",) * bool(self.release_files) +
            ("manual", "download") * (self.archive is not None))


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


_TASKS: dict[str, Task] = {}
ALIASES = {"pathx": "pathfinder128"}


def register_task(task: Task) -> Task:
  if task.name in _TASKS or task.name in ALIASES:
    raise ValueError(f"task {task.name!r} is already registered.")
  _TASKS[task.name] = task
  return task


def unregister_task(name: str) -> None:
  """Removes a registered task (tests register tasks of their own)."""
  del _TASKS[name]


def task_names() -> tuple[str, ...]:
  return tuple(_TASKS) + tuple(ALIASES)


def get_task(name: str, difficulty: str = "hard") -> Task:
  """The task called `name` (listops, text, retrieval, image, pathfinder32/64/128/256,
  pathx); Pathfinder takes a difficulty (easy, intermediate, hard; LRA uses hard)."""
  task = _TASKS.get(ALIASES.get(name, name))
  if task is None:
    raise errors.ConfigError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}.")
  if task.with_difficulty is not None and difficulty != task.difficulty:
    task = task.with_difficulty(difficulty)
  return task


def generated_sizes(task: Task, num_examples: Optional[int] = None,
                    num_eval_examples: Optional[int] = None) -> dict[str, int]:
  """Split sizes of a generated task: {"train", "validation", "test"} -> examples.

  num_examples: training examples (None: the official size). num_eval_examples:
  validation and test examples each (None: the official proportion to the training
  split, ListOps 2,000 per 96,000 and Pathfinder 1 per 8, rounded, at least 1).
  """
  if task.generator is None:
    raise errors.ConfigError(f"task {task.name!r} cannot be generated.")
  official = task.generator.official_sizes
  for name, value in (("num_examples", num_examples), ("num_eval_examples", num_eval_examples)):
    if value is not None and value < 1:
      raise errors.ConfigError(f"{name} must be at least 1, got {value}.")
  train = official["train"] if num_examples is None else int(num_examples)
  if num_eval_examples is None:
    num_eval_examples = max(1, round(train * official["validation"] / official["train"]))
  return {"train": train, "validation": int(num_eval_examples),
          "test": int(num_eval_examples)}


register_task(Task(
    name="listops", builder="lra_listops", num_classes=10, vocab=vocab_lib.LISTOPS_VOCAB,
    encode=_listops, default_length=2000,
    release_files=listops.RELEASE_FILES, release_what="ListOps file",
    generator=Generator(
        module="luna_jax.data.listops", title="ListOps", write=listops.write_splits,
        official_sizes={"train": listops.SPLIT_SIZES["train"],
                        "validation": listops.SPLIT_SIZES["val"],
                        "test": listops.SPLIT_SIZES["test"]})))

register_task(Task(
    name="text", builder="lra_text", num_classes=2, vocab=vocab_lib.BYTE_VOCAB,
    encode=_document, default_length=4000,
    splits={"train": "train", "validation": "test", "test": "test"},
    archive=Archive("aclImdb_v1.tar.gz",
                    "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz")))

register_task(Task(
    name="retrieval", builder="lra_retrieval", num_classes=2, vocab=vocab_lib.BYTE_VOCAB,
    encode=_documents, default_length=4000, pair=True,
    release_files={split: f"tsv_data/new_aan_pairs.{name}.tsv" for split, name in
                   (("train", "train"), ("validation", "eval"), ("test", "test"))},
    release_what="AAN retrieval file"))

register_task(Task(
    name="image", builder="lra_image", num_classes=10, vocab=vocab_lib.PIXEL_VOCAB,
    encode=_pixels, default_length=1024,
    archive=Archive("cifar-10-binary.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")))

# LRA's 200,000 Pathfinder images split 80/10/10.
_PATHFINDER_SIZES = {"train": 160_000, "validation": 20_000, "test": 20_000}


@functools.cache
def _pathfinder(resolution: int, difficulty: str) -> Task:
  if difficulty not in pathfinder.DIFFICULTIES:
    raise errors.ConfigError(f"unknown Pathfinder difficulty {difficulty!r}; choose one of "
                     f"{', '.join(pathfinder.DIFFICULTIES)}.")
  subset = pathfinder.subset_dir("", resolution, difficulty).as_posix()
  return Task(
      name=f"pathfinder{resolution}", builder=f"lra_pathfinder/{resolution}_{difficulty}",
      num_classes=2, vocab=vocab_lib.PIXEL_VOCAB, encode=_pixels,
      default_length=resolution * resolution,
      release_files={"all": f"{subset}/metadata/"}, release_what="Pathfinder folder",
      generator=Generator(
          module="luna_jax.data.pathfinder", title=f"Pathfinder {resolution}",
          write=functools.partial(pathfinder.write_splits, resolution=resolution,
                                  difficulty=difficulty),
          official_sizes=_PATHFINDER_SIZES),
      difficulty=difficulty, with_difficulty=functools.partial(_pathfinder, resolution))


for _resolution in pathfinder.RESOLUTIONS:
  register_task(_pathfinder(_resolution, "hard"))
del _resolution
