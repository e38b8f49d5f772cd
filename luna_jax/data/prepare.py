"""Prepares a task's data as a tfds dataset (ArrayRecord) in a data directory.

    python -m luna_jax.data prepare listops --data_dir ~/lra            # generated, no download
    python -m luna_jax.data prepare pathfinder32 --data_dir ~/lra --num_examples 20000
    python -m luna_jax.data prepare retrieval --data_dir ~/lra --release_dir ~/lra_release
    python -m luna_jax.data prepare text --data_dir ~/lra                # downloads, or manual
"""

from __future__ import annotations

import pathlib
import shutil
from typing import Optional

import tensorflow_datasets as tfds

from luna_jax.data import builders, listops, pathfinder_gen, readers
from luna_jax.data.tasks import Task, get_task

MANUAL_ARCHIVES = {"text": ("aclImdb_v1.tar.gz", builders.IMDB_URL),
                   "image": ("cifar-10-binary.tar.gz", builders.CIFAR_URL)}


def builder_for(task: Task, data_dir) -> tfds.core.DatasetBuilder:
  return tfds.builder(task.builder, data_dir=str(data_dir), file_format="array_record")


def is_prepared(task: Task, data_dir) -> bool:
  builder = builder_for(task, data_dir)
  return pathlib.Path(builder.data_dir).joinpath("dataset_info.json").is_file()


def _progress_bar(total: int, desc: str, enabled: bool):
  """A callable progress(n) drawing a tqdm bar; a no-op when disabled."""
  if not enabled:
    return None, lambda: None
  from tqdm import tqdm

  bar = tqdm(total=total, desc=desc, unit="ex")

  def update(n):
    bar.update(n - bar.n)

  return update, bar.close


def _check_release(task: Task, release_dir: pathlib.Path, difficulty: str) -> None:
  """Fails early, naming the exact file the builder will need."""
  hint = builders.LRA_RELEASE_HINT
  if task.name == "listops":
    for name in listops.SPLIT_FILES.values():
      readers.require_file(release_dir / "listops-1000" / name, "ListOps file", hint +
                           " Or generate ListOps with --source generate.")
  elif task.name == "retrieval":
    for name in ("train", "eval", "test"):
      readers.require_file(release_dir / "tsv_data" / f"new_aan_pairs.{name}.tsv",
                           "AAN retrieval file", hint)
  else:
    res = int(task.name[len("pathfinder"):])
    folder = release_dir / f"pathfinder{res}" / pathfinder_gen.DIFFICULTIES[difficulty][0]
    if not (folder / "metadata").is_dir():
      raise readers.DataFormatError(f"missing Pathfinder folder {folder}/metadata. {hint} "
                                    "Or generate Pathfinder with --source generate.")


def prepare(
    task_name: str,
    data_dir,
    *,
    source: Optional[str] = None,
    release_dir=None,
    manual_dir=None,
    num_examples: Optional[int] = None,
    seed: int = 0,
    difficulty: str = "hard",
    overwrite: bool = False,
    progress: bool = True,
) -> pathlib.Path:
  """Builds the task's tfds dataset in data_dir and returns the dataset's folder.

  Args:
    task_name: a name from `tasks.TASK_NAMES`.
    data_dir: the tfds data directory (also holds generated sources under generated/).
    source: "generate" (ListOps, Pathfinder), "release" (a local LRA release folder),
      "manual" (the official archive in manual_dir) or "download" (Text, Image); None
      picks release if release_dir is given, else generate, else manual-then-download.
    num_examples: generated examples for the training split (validation and test get a
      tenth each, at least one); None = the official sizes.
    seed: seed of the generators.
    overwrite: rebuild even if the dataset is already prepared.
  """
  task = get_task(task_name, difficulty)
  data_dir = pathlib.Path(data_dir).expanduser()
  if source is None:
    source = ("release" if release_dir is not None else
              "generate" if "generate" in task.sources else "manual")
  if source not in task.sources and not (source == "download" and "manual" in task.sources):
    raise ValueError(f"task {task.name!r} cannot use --source {source}; it supports "
                     f"{', '.join(task.sources)}.")
  builder = builder_for(task, data_dir)
  if is_prepared(task, data_dir):
    if not overwrite:
      print(f"{task.name}: already prepared in {builder.data_dir} (pass --overwrite to rebuild)")
      return pathlib.Path(builder.data_dir)
    shutil.rmtree(builder.data_dir)

  if source == "generate":
    src = data_dir / "generated" / f"{task.builder.replace('/', '_')}_seed{seed}"
    if task.name == "listops":
      sizes = None if num_examples is None else {
          "train": num_examples, "val": max(1, num_examples // 10),
          "test": max(1, num_examples // 10)}
      total = sum((sizes or listops.SPLIT_SIZES).values())
      update, close = _progress_bar(total, "generating ListOps", progress)
      listops.write_release(src, sizes, seed, update)
    else:
      res = int(task.name[len("pathfinder"):])
      total = 200_000 if num_examples is None else num_examples + 2 * max(1, num_examples // 8)
      update, close = _progress_bar(total, f"generating Pathfinder {res}", progress)
      pathfinder_gen.write_release(src, res, difficulty, total, seed, progress=update)
    close()
  elif source == "release":
    if release_dir is None:
      raise ValueError(f"--source release needs --release_dir. {builders.LRA_RELEASE_HINT}")
    src = pathlib.Path(release_dir).expanduser()
    _check_release(task, src, difficulty)
  else:  # manual / download: the official archive in the manual dir, else the internet
    src = pathlib.Path(manual_dir).expanduser() if manual_dir else data_dir / "downloads" / "manual"
    archive, url = MANUAL_ARCHIVES[task.name]
    if source == "manual" and not (src / archive).is_file():
      raise readers.DataFormatError(
          f"missing {src / archive}. Download {url} and put it in {src} (or pass "
          f"--manual_dir), or use --source download on a machine with internet access.")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(src)))
  return pathlib.Path(builder.data_dir)
