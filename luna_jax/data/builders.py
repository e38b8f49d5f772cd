"""tensorflow-datasets builders for the LRA tasks, writing ArrayRecord (no TensorFlow).

Each builder reads one official format from its manual directory (see `readers`), at
the paths its task's record names (`tasks`: release_files, archive):
    lra_listops            <manual>/listops-1000/basic_{train,val,test}.tsv
    lra_retrieval          <manual>/tsv_data/new_aan_pairs.{train,eval,test}.tsv
    lra_pathfinder/<R>_<difficulty>   <manual>/pathfinder<R>/<subset>/{metadata,imgs}
    lra_text               <manual>/aclImdb_v1.tar.gz, else downloaded
    lra_image              <manual>/cifar-10-binary.tar.gz, else downloaded
tfds' own imdb_reviews and cifar10 builders read their archives through TensorFlow, so
Text and Image have builders of their own that read the same official archives.
Only `build` imports this module: reading a prepared dataset needs no builder class.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from luna_jax.data import pathfinder, readers
from luna_jax.data.tasks import DATASET_VERSION, get_task

IMDB = get_task("text").archive
CIFAR = get_task("image").archive
IMDB_URL, CIFAR_URL = IMDB.url, CIFAR.url


def _manual(dl_manager) -> pathlib.Path:
  return pathlib.Path(dl_manager.manual_dir)


def _files(task_name: str) -> str:
  return ", ".join(get_task(task_name).release_files.values())


class _Builder(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {"1.0.0": "First luna-jax release."}

  def _features(self) -> dict:
    raise TypeError("each LRA builder defines _features")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        self._features()), supervised_keys=None)


class LraListops(_Builder):
  """ListOps (10 classes): expressions of MIN, MAX, MED and SM over digits."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (f"Place {_files('listops')} (from the LRA release, or "
                                  "written by the generator) here.")

  def _features(self):
    return {"source": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=10)}

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(_manual(dl_manager) / name)
            for split, name in get_task("listops").release_files.items()}

  def _generate_examples(self, path):
    for i, (source, label) in enumerate(readers.read_listops_tsv(path)):
      yield i, {"source": source, "label": label}


class LraRetrieval(_Builder):
  """Byte-level AAN document matching (2 classes): do two papers cite each other?"""

  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Place {_files('retrieval')} here."

  def _features(self):
    text = tfds.features.Text()
    return {"id1": text, "id2": text, "text1": text, "text2": text,
            "label": tfds.features.ClassLabel(num_classes=2)}

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(_manual(dl_manager) / name)
            for split, name in get_task("retrieval").release_files.items()}

  def _generate_examples(self, path):
    for i, (label, id1, id2, text1, text2) in enumerate(readers.read_aan_tsv(path)):
      yield i, {"id1": id1, "id2": id2, "text1": text1, "text2": text2, "label": label}


class PathfinderConfig(tfds.core.BuilderConfig):
  def __init__(self, *, resolution: int, difficulty: str, **kwargs):
    super().__init__(name=f"{resolution}_{difficulty}", **kwargs)
    self.resolution = resolution
    self.difficulty = difficulty


class LraPathfinder(_Builder):
  """Pathfinder (2 classes): are the two markers on one contour? Split in the canonical
  order (metadata files by batch number, then line order): 80/10/10 for the release,
  the recorded sizes for generated data (`readers.read_pathfinder_split_sizes`)."""

  BUILDER_CONFIGS = [
      PathfinderConfig(resolution=r, difficulty=d,
                       description=f"{r} x {r} images, {d} ({pathfinder.DIFFICULTIES[d][0]})")
      for r in pathfinder.RESOLUTIONS for d in pathfinder.DIFFICULTIES
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Place pathfinder<R>/<subset>/{metadata,imgs} (from the LRA "
                                  "release, or written by the generator) here.")

  def _features(self):
    r = self.builder_config.resolution
    return {"image": tfds.features.Tensor(shape=(r, r), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=2)}

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    folder = pathfinder.subset_dir(_manual(dl_manager), cfg.resolution, cfg.difficulty)
    entries = list(readers.read_pathfinder_metadata(folder))
    sizes = readers.read_pathfinder_split_sizes(folder, len(entries))
    splits, start = {}, 0
    for split in ("train", "validation", "test"):
      splits[split] = self._generate_examples(entries[start:start + sizes[split]])
      start += sizes[split]
    return splits

  def _generate_examples(self, entries):
    for path, label in entries:
      image = readers.read_png(path, self.builder_config.resolution)
      if image is not None:
        yield str(path), {"image": image, "label": label}


class _ArchiveBuilder(_Builder):
  """Reads one official archive; `archive_used` records which file (and URL) it read."""

  archive_used: dict | None = None

  def _official_archive(self, dl_manager, name: str, url: str) -> tuple[pathlib.Path, str]:
    """The manual dir's copy of the archive, else a download; and what to do if the
    file turns out to be incomplete."""
    local = _manual(dl_manager) / name if dl_manager.manual_dir else None
    if local is not None and local.is_file():
      self.archive_used = {"archive": str(local.absolute()), "url": None}
      return local, f"Download {url} again and put it at {local}."
    path = pathlib.Path(dl_manager.download(url))
    self.archive_used = {"archive": str(path.absolute()), "url": url}
    return path, (f"Delete {path} and prepare again to download it anew, or download {url} "
                  f"and put it at {local or name} (--source manual).")


class LraText(_ArchiveBuilder):
  """Byte-level IMDb reviews (2 classes), read from the official aclImdb_v1.tar.gz."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Place {IMDB.name} ({IMDB.url}) here."

  def _features(self):
    return {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}

  def _split_generators(self, dl_manager):
    archive, hint = self._official_archive(dl_manager, IMDB.name, IMDB.url)
    # One pass, before anything is written: an incomplete archive fails here. The keys
    # are the reviews' order in the archive, as when each split read it on its own.
    reviews = {"train": [], "test": []}
    for i, (split, text, label) in enumerate(readers.read_imdb_archive(archive, hint)):
      reviews[split].append((i, text, label))
    return {split: self._generate_examples(items) for split, items in reviews.items()}

  def _generate_examples(self, items):
    for i, text, label in items:
      yield i, {"text": text, "label": label}


class LraImage(_ArchiveBuilder):
  """Grayscale CIFAR-10 (10 classes): train = first 90% of the training batches,
  validation = the last 10%, test = the test batch, as in LRA."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Place {CIFAR.name} ({CIFAR.url}) here."

  def _features(self):
    return {"image": tfds.features.Tensor(shape=(32, 32), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10)}

  def _split_generators(self, dl_manager):
    data = readers.read_cifar_archive(*self._official_archive(dl_manager, CIFAR.name,
                                                              CIFAR.url))
    images, labels = data["train"]
    cut = int(0.9 * len(labels))
    return {"train": self._generate_examples(images[:cut], labels[:cut]),
            "validation": self._generate_examples(images[cut:], labels[cut:]),
            "test": self._generate_examples(*data["test"])}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
      yield i, {"image": image, "label": int(label)}
