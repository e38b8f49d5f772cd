"""Prepares a task's data as a tfds dataset (ArrayRecord) in a data directory.

    python -m luna_jax.data prepare listops --data_dir ~/lra            # generated, no download
    python -m luna_jax.data prepare pathfinder32 --data_dir ~/lra --num_examples 20000
    python -m luna_jax.data prepare retrieval --data_dir ~/lra --release_dir ~/lra_release
    python -m luna_jax.data prepare text --data_dir ~/lra --source download

The build path: `builders` (the tfds builders) and the generators, driven by the task's
record (`tasks`); reading the result needs none of it (`prepared`, `pipeline`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import pathlib
import shutil
import sys
from typing import Optional

import tensorflow_datasets as tfds

from luna_jax import errors
from luna_jax.data import builders  # noqa: F401  (registers the tfds builders)
from luna_jax.data import readers
from luna_jax.data.prepared import (PROVENANCE_FILE, describe_provenance, is_prepared,
                                    read_provenance)
from luna_jax.data.tasks import Task, generated_sizes, get_task

LRA_RELEASE_HINT = ("The LRA release (lra_release.gz, about 8 GB) is linked from "
                    "https://github.com/google-research/long-range-arena; unpack it and pass "
                    "its lra_release folder as --release_dir.")


def builder_for(task: Task, data_dir) -> tfds.core.DatasetBuilder:
  return tfds.builder(task.builder, data_dir=str(data_dir), file_format="array_record")


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _provenance(task: Task, builder, source: str, src: pathlib.Path, seed: int,
                num_examples: Optional[int]) -> dict:
  out = {"task": task.name, "builder": task.builder, "version": str(builder.version),
         "source": source}
  if source == "generate":
    out.update(generator=task.generator.module, seed=seed, num_examples=num_examples,
               generated_dir=str(src.absolute()))
  elif source == "release":
    out["release_dir"] = str(src.absolute())
  else:  # the builder says which archive it read: the manual copy or a download
    used = builder.archive_used
    archive = pathlib.Path(used["archive"])
    out.update(archive=str(archive), url=used["url"], size_bytes=archive.stat().st_size,
               sha256=_sha256(archive))
  if task.difficulty is not None:
    out["difficulty"] = task.difficulty
  out["splits"] = {name: info.num_examples for name, info in builder.info.splits.items()}
  out["prepared_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
  return out


def _remove_partial(builder, data_dir: pathlib.Path) -> None:
  """Removes what a failed or killed build left behind: an incomplete dataset folder,
  tfds' incomplete.* folders of this version and the empty folders above them."""
  folder = pathlib.Path(builder.data_dir)
  if folder.is_dir() and not (folder / "dataset_info.json").is_file():
    shutil.rmtree(folder)
  for stale in folder.parent.glob(f"incomplete.*_{folder.name}"):
    shutil.rmtree(stale, ignore_errors=True)
  root, parent = data_dir.resolve(), folder.resolve().parent
  while (parent != root and parent.is_relative_to(root) and parent.is_dir() and
         not any(parent.iterdir())):
    parent.rmdir()
    parent = parent.parent


def _progress_bar(total: int, desc: str, enabled: bool):
  """A callable progress(n) drawing a tqdm bar; a no-op when disabled."""
  if not enabled:
    return None, lambda: None
  from tqdm import tqdm

  bar = tqdm(total=total, desc=desc, unit="ex")

  def update(n):
    bar.update(n - bar.n)

  return update, bar.close


def _check_release(task: Task, release_dir: pathlib.Path) -> None:
  """Fails early, naming the exact file the builder will need."""
  hint = LRA_RELEASE_HINT
  if task.generator is not None:
    hint += f" Or generate {task.generator.title} with --source generate."
  for name in task.release_files.values():
    path = release_dir / name
    if not (path.is_dir() if name.endswith("/") else path.is_file()):
      raise readers.DataFormatError(f"missing {task.release_what}: {path} does not exist. "
                                    f"{hint}")


def prepare(
    task: Task | str,
    data_dir,
    *,
    source: Optional[str] = None,
    release_dir=None,
    manual_dir=None,
    num_examples: Optional[int] = None,
    num_eval_examples: Optional[int] = None,
    seed: int = 0,
    difficulty: str = "hard",
    overwrite: bool = False,
    progress: bool = True,
    workers: Optional[int] = None,
) -> pathlib.Path:
  """Builds the task's tfds dataset in data_dir and returns the dataset's folder.

  Bad data raises DataFormatError naming the file (and line) and leaves nothing
  prepared. A successful build records its origin in <folder>/provenance.json (see
  `read_provenance`) and prints it.

  Args:
    task: a name from `tasks.task_names()` (with `difficulty`), or a task record.
    data_dir: the tfds data directory (also holds generated sources under generated/).
    source: "generate" (ListOps, Pathfinder), "release" (a local LRA release folder),
      "manual" (the official archive in manual_dir) or "download" (Text, Image); None
      picks release if release_dir is given, else generate, else manual.
    num_examples, num_eval_examples: generated examples for the training split, and for
      validation and test each; see `generated_sizes`.
    seed: seed of the generators.
    overwrite: rebuild even if the dataset is already prepared.
    workers: generating processes (None: every core); generated data is the same for
      any number.
  """
  task = get_task(task, difficulty) if isinstance(task, str) else task
  data_dir = pathlib.Path(data_dir).expanduser()
  if source is None:
    source = ("release" if release_dir is not None else
              "generate" if task.generator is not None else "manual")
  if source not in task.sources:
    raise errors.ConfigError(f"task {task.name!r} cannot use --source {source}; it supports "
                     f"{', '.join(task.sources)}.")
  builder = builder_for(task, data_dir)
  folder, replaced = pathlib.Path(builder.data_dir), None
  if is_prepared(task, data_dir):
    if not overwrite:
      print(f"{task.name}: already prepared in {folder} (pass --overwrite to "
            f"rebuild)\n{task.name} data: {describe_provenance(read_provenance(task, data_dir))}")
      return folder
    # Kept aside until the new dataset is built, so that a failed rebuild loses nothing.
    replaced = folder.with_name(folder.name + ".replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    folder.rename(replaced)
  try:
    src = _source_files(task, data_dir, source=source, release_dir=release_dir,
                        manual_dir=manual_dir, num_examples=num_examples,
                        num_eval_examples=num_eval_examples, seed=seed, progress=progress,
                        workers=workers)
    out = _build(task, builder, data_dir, src, source=source, seed=seed,
                 num_examples=num_examples if source == "generate" else None)
  except BaseException:
    if replaced is not None:
      shutil.rmtree(folder, ignore_errors=True)
      replaced.rename(folder)
      print(f"{task.name}: the rebuild failed; the earlier dataset in {folder} is kept.",
            file=sys.stderr)
    raise
  if replaced is not None:
    shutil.rmtree(replaced)
  return out


def _source_files(task: Task, data_dir: pathlib.Path, *, source: str, release_dir,
                  manual_dir, num_examples: Optional[int], num_eval_examples: Optional[int],
                  seed: int, progress: bool, workers: Optional[int] = None) -> pathlib.Path:
  """The folder the builder reads (its manual dir): generated, a release, or archives."""
  if source == "generate":
    generator = task.generator
    src = data_dir / "generated" / f"{task.builder.replace('/', '_')}_seed{seed}"
    sizes = generated_sizes(task, num_examples, num_eval_examples)
    update, close = _progress_bar(sum(sizes.values()), f"generating {generator.title}",
                                  progress)
    generator.write(src, sizes, seed, update, workers)
    close()
  elif source == "release":
    if release_dir is None:
      raise errors.ConfigError(f"--source release needs --release_dir. {LRA_RELEASE_HINT}")
    src = pathlib.Path(release_dir).expanduser()
    _check_release(task, src)
  else:  # manual / download: the official archive in the manual dir, else the internet
    src = pathlib.Path(manual_dir).expanduser() if manual_dir else data_dir / "downloads" / "manual"
    archive = task.archive
    if source == "manual" and not (src / archive.name).is_file():
      raise readers.DataFormatError(
          f"missing {src / archive.name}. Download {archive.url} and put it in {src} (or "
          "pass --manual_dir), or use --source download on a machine with internet access.")
  return src


def _build(task: Task, builder, data_dir: pathlib.Path, src: pathlib.Path, *, source: str,
           seed: int, num_examples: Optional[int]) -> pathlib.Path:
  """Builds the dataset from the source files in src and records its provenance."""
  # Bad data raises inside the build; then nothing may look prepared, and a rerun after
  # fixing the file starts clean.
  _remove_partial(builder, data_dir)
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(src)))
  except BaseException:
    _remove_partial(builder, data_dir)
    raise
  provenance = _provenance(task, builder, source, src, seed, num_examples)
  out = pathlib.Path(builder.data_dir)
  (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
  print(f"{task.name} data: {describe_provenance(provenance)}")
  return out
