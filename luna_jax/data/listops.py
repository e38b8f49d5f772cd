"""ListOps: LRA's generator (data/listops.py), seeded, and the official TSV format.

Trees: below depth 10 a node is a digit with probability 0.75, otherwise one of MIN, MAX,
MED, SM (sum mod 10) over 2..10 children; length = 1 for a digit, 2 + the children's for
an operator (its token and "]"). Kept when 500 < length < 2000, de-duplicated; the first
96,000 trees go to train, the next 2,000 to val and 2,000 to test. Example i is drawn from
its own generator seeded by (seed, i), so examples are drawn in parallel and any number of
workers writes the same files. Written as
"Source<TAB>Target" with each node as a left-nested pair "( left right )".
"""

from __future__ import annotations

import csv
import pathlib
import random
from typing import Callable, Iterator, Optional, Union

import numpy as np

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
MAX_DEPTH = 10
MAX_ARGS = 10
VALUE_P = 0.25
MIN_LENGTH, MAX_LENGTH = 500, 2000  # exclusive bounds, as in LRA
SPLIT_SIZES = {"train": 96_000, "val": 2_000, "test": 2_000}
SPLIT_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
FOLDER = "listops-1000"
# Our split names -> the release's.
RELEASE_SPLITS = {"train": "train", "validation": "val", "test": "test"}
# Our split -> its file in a release folder.
RELEASE_FILES = {split: f"{FOLDER}/{SPLIT_FILES[name]}" for split, name in RELEASE_SPLITS.items()}

Tree = Union[int, tuple]  # a digit, or (operator, [children])


def generate_tree(rng: random.Random, depth: int = 1) -> tuple[Tree, int]:
  """One random tree and its length in tokens (LRA's generate_tree)."""
  r = rng.random() if depth < MAX_DEPTH else 1.0
  if r > VALUE_P:
    return rng.randint(0, 9), 1
  num_args = rng.randint(2, MAX_ARGS)
  op = rng.choice(OPERATORS)
  children, length = [], 2
  for _ in range(num_args):
    child, child_len = generate_tree(rng, depth + 1)
    children.append(child)
    length += child_len
  return (op, children), length


def evaluate(tree: Tree) -> int:
  if isinstance(tree, int):
    return tree
  op, children = tree
  values = [evaluate(c) for c in children]
  if op == "[MIN":
    return min(values)
  if op == "[MAX":
    return max(values)
  if op == "[MED":
    return int(np.median(values))
  return sum(values) % 10


def to_string(tree: Tree) -> str:
  """LRA's string form: "( ( ( [MAX 2 ) 9 ) ] )" for MAX(2, 9)."""
  if isinstance(tree, int):
    return str(tree)
  op, children = tree
  nested = op
  for child in children:
    nested = f"( {nested} {to_string(child)} )"
  return f"( {nested} ] )"


def _example(seed: int, index: int, attempt: int = 0) -> tuple[str, int, int]:
  """The first tree with 500 < length < 2000 drawn for example `index`, from attempt
  `attempt` on: (source, label, the attempt that gave it). Attempt a draws from its own
  generator, seeded by (seed, index, a)."""
  while True:
    rng = random.Random(f"listops:{seed}:{index}:{attempt}")
    tree, length = generate_tree(rng)
    if MIN_LENGTH < length < MAX_LENGTH:
      return to_string(tree), evaluate(tree), attempt
    attempt += 1


def _example_at(seed_and_index: tuple[int, int]) -> tuple[str, int, int]:
  return _example(*seed_and_index)


def generate(num_examples: int, seed: int, workers: Optional[int] = 1
             ) -> Iterator[tuple[str, int]]:
  """Distinct (source, label) pairs with 500 < length < 2000. Example i is a function
  of (seed, i) alone: drawn in parallel by `workers` processes (None: every core), then
  de-duplicated in index order (a repeat of an earlier example draws again from its next
  attempt), so any number of workers gives the same examples."""
  from luna_jax.data.parallel import ordered_map

  seen = set()
  items = ((seed, i) for i in range(num_examples))
  for index, (source, label, attempt) in enumerate(ordered_map(_example_at, items, workers,
                                                               chunksize=64)):
    while source in seen:
      source, label, attempt = _example(seed, index, attempt + 1)
    seen.add(source)
    yield source, label


def write_release(
    root: Union[str, pathlib.Path],
    split_sizes: Optional[dict[str, int]] = None,
    seed: int = 0,
    progress: Optional[Callable[[int], None]] = None,
    workers: Optional[int] = 1,
) -> pathlib.Path:
  """Writes <root>/listops-1000/basic_{train,val,test}.tsv as in the LRA release.

  Returns the listops-1000 folder. `progress(n)` is called after each example; workers:
  generating processes (None: every core; the files are the same for any number).
  """
  sizes = dict(SPLIT_SIZES if split_sizes is None else split_sizes)
  folder = pathlib.Path(root) / FOLDER
  folder.mkdir(parents=True, exist_ok=True)
  examples = generate(sum(sizes.values()), seed, workers)
  written = 0
  for split in ("train", "val", "test"):
    tmp = folder / (SPLIT_FILES[split] + ".tmp")
    with open(tmp, "w", newline="") as f:
      out = csv.writer(f, delimiter="\t", lineterminator="\n")
      out.writerow(["Source", "Target"])
      for _ in range(sizes[split]):
        source, label = next(examples)
        out.writerow([source, label])
        written += 1
        if progress:
          progress(written)
    tmp.replace(folder / SPLIT_FILES[split])  # a crash never leaves a half-written file
  return folder


def write_splits(root: Union[str, pathlib.Path], sizes: dict[str, int], seed: int,
                 progress: Optional[Callable[[int], None]] = None,
                 workers: Optional[int] = 1) -> pathlib.Path:
  """`write_release` with sizes by our split names (train, validation, test)."""
  return write_release(root, {RELEASE_SPLITS[k]: n for k, n in sizes.items()}, seed, progress,
                       workers)
