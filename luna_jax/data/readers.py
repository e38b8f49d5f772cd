"""Readers of the official data formats, with errors that name the file and the line.

    ListOps     listops-1000/basic_{train,val,test}.tsv   "Source<TAB>Target" header
    Retrieval   tsv_data/new_aan_pairs.{train,eval,test}.tsv   label id1 id2 text1 text2
    Pathfinder  pathfinder<R>/<subset>/metadata/<batch>.npy (plain text) + imgs/<batch>/*.png
    IMDb        aclImdb_v1.tar.gz: aclImdb/{train,test}/{pos,neg}/*.txt
    CIFAR-10    cifar-10-binary.tar.gz: cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import re
import tarfile
import zlib
from typing import Iterator, Union

import numpy as np

from luna_jax import errors
from luna_jax.data import vocab

PathLike = Union[str, pathlib.Path]
log = logging.getLogger(__name__)


class DataFormatError(errors.DataError):
  """A data file is missing or malformed; the message names the file and the record."""


def require_file(path: pathlib.Path, what: str, hint: str) -> pathlib.Path:
  if not path.is_file():
    raise DataFormatError(f"missing {what}: {path} does not exist. {hint}")
  return path


def _label(value: str, num_classes: int, where: str) -> int:
  must = f"a label must be a whole number 0..{num_classes - 1}"
  try:
    number = float(value)
  except ValueError:
    raise DataFormatError(f"{where}: label {value!r} is not a number; {must}") from None
  if not math.isfinite(number):
    raise DataFormatError(f"{where}: label {value!r} is not a finite number; {must}")
  if number != int(number) or not 0 <= number < num_classes:
    raise DataFormatError(f"{where}: label {value!r} is out of range; {must}")
  return int(number)


_LISTOPS_KNOWN = frozenset(vocab.LISTOPS_TOKENS)


def _check_listops_tokens(source: str, where: str) -> None:
  """Every token must be one of the 15 of the vocabulary ("]" is read as "X")."""
  words = source.replace("(", " ").replace(")", " ").split()
  if _LISTOPS_KNOWN.issuperset(w.replace("]", "X") for w in words):
    return
  bad = next(w for w in words if w.replace("]", "X") not in _LISTOPS_KNOWN)
  raise DataFormatError(f"{where}: unknown ListOps token {bad!r}; a Source holds only the "
                        "operators [MIN [MAX [MED [SM, the digits 0-9, ']' and parentheses")


def read_listops_tsv(path: PathLike) -> Iterator[tuple[str, int]]:
  """Yields (source expression, label 0..9)."""
  path = pathlib.Path(path)
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\n").split("\t")
    if header != ["Source", "Target"]:
      raise DataFormatError(f"{path}:1: expected the header 'Source<TAB>Target', got {header}")
    for line_no, line in enumerate(f, start=2):
      fields = line.rstrip("\n").split("\t")
      if len(fields) != 2 or not fields[0].strip():
        raise DataFormatError(f"{path}:{line_no}: expected 2 tab-separated fields "
                              f"(Source, Target), got {len(fields)}")
      _check_listops_tokens(fields[0], f"{path}:{line_no}")
      yield fields[0], _label(fields[1], 10, f"{path}:{line_no}")


def read_aan_tsv(path: PathLike) -> Iterator[tuple[int, str, str, bytes, bytes]]:
  """Yields (label 0/1, id1, id2, text1, text2) from a new_aan_pairs file (no header)."""
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    for line_no, line in enumerate(f, start=1):
      fields = line.rstrip(b"\r\n").split(b"\t")
      if len(fields) != 5:
        raise DataFormatError(f"{path}:{line_no}: expected 5 tab-separated fields "
                              f"(label, id1, id2, text1, text2), got {len(fields)}")
      label = _label(fields[0].decode("ascii", "replace"), 2, f"{path}:{line_no}")
      yield label, fields[1].decode("utf-8", "replace"), fields[2].decode("utf-8", "replace"), \
          fields[3], fields[4]


def _batch_key(path: pathlib.Path):
  return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


PATHFINDER_SPLITS_FILE = "luna_jax_splits.json"


def write_pathfinder_split_sizes(folder: PathLike, sizes: dict[str, int]) -> None:
  """Records the split sizes of a generated subset folder (the release has none)."""
  (pathlib.Path(folder) / PATHFINDER_SPLITS_FILE).write_text(json.dumps(sizes) + "\n")


def read_pathfinder_split_sizes(folder: PathLike, total: int) -> dict[str, int]:
  """Split sizes of a subset of `total` images, in metadata order: those a generated
  folder records, else LRA's 80/10/10 of the release."""
  path = pathlib.Path(folder) / PATHFINDER_SPLITS_FILE
  if path.is_file():
    try:
      sizes = {k: int(json.loads(path.read_text())[k]) for k in ("train", "validation", "test")}
    except (ValueError, KeyError, TypeError) as e:
      raise DataFormatError(f"{path}: expected {{\"train\": N, \"validation\": N, "
                            f"\"test\": N}} ({e}); regenerate the data with prepare "
                            "--overwrite.") from None
    if sum(sizes.values()) != total:
      raise DataFormatError(f"{path} gives {sum(sizes.values())} images in all but the "
                            f"metadata lists {total}; regenerate with prepare --overwrite.")
    return sizes
  train, validation = int(0.8 * total), int(0.1 * total)
  return {"train": train, "validation": validation, "test": total - train - validation}


def read_pathfinder_metadata(folder: PathLike) -> Iterator[tuple[pathlib.Path, int]]:
  """Yields (image path, label) in the canonical order: metadata files by batch number,
  then line order. The .npy metadata files are plain text, one image per line."""
  folder = pathlib.Path(folder)
  meta_dir = folder / "metadata"
  if not meta_dir.is_dir():
    raise DataFormatError(f"missing Pathfinder metadata folder {meta_dir}; expected the "
                          "LRA layout <subset>/metadata/<batch>.npy and <subset>/imgs/.")
  files = sorted(meta_dir.glob("*.npy"), key=_batch_key)
  if not files:
    raise DataFormatError(f"no metadata/*.npy files in {folder}")
  for meta in files:
    with open(meta, encoding="utf-8", errors="replace") as f:
      for line_no, line in enumerate(f, start=1):
        fields = line.split()
        if not fields:
          continue
        if len(fields) < 4:
          raise DataFormatError(f"{meta}:{line_no}: expected at least 4 space-separated "
                                f"fields (subdir filename index label ...), got {len(fields)}")
        yield folder / fields[0] / fields[1], _label(fields[3], 2, f"{meta}:{line_no}")


def read_png(path: pathlib.Path, size: int) -> np.ndarray | None:
  """An 8-bit grayscale (size, size) image; None (with a warning) for an empty file.
  Any other mode (RGB, 16-bit, palette) is refused rather than converted."""
  from PIL import Image  # only needed when building Pathfinder

  if not path.is_file():
    raise DataFormatError(f"missing image {path} (listed in its metadata file)")
  if path.stat().st_size == 0:
    log.warning("skipping empty image file %s (a known defect of the LRA release)", path)
    return None
  try:
    with Image.open(path) as img:
      mode = img.mode
      array = np.asarray(img, np.uint8) if mode == "L" else None
  except Exception as e:  # PIL raises several types for corrupt files
    raise DataFormatError(f"cannot decode image {path}: {e}") from None
  if array is None:
    raise DataFormatError(
        f"image {path} has PIL mode {mode!r}; LRA Pathfinder images are 8-bit grayscale "
        "(mode 'L'). Use the release's images unchanged, or regenerate the data with "
        "--source generate.")
  if array.shape != (size, size):
    raise DataFormatError(f"image {path} has shape {array.shape}, expected ({size}, {size})")
  return array


_IMDB_NAME = re.compile(r"aclImdb/(train|test)/(pos|neg)/[^/]+\.txt$")


def _tar_members(path: pathlib.Path, keep, hint: str) -> Iterator[tuple[str, bytes]]:
  """(member name, bytes) of each regular file whose name passes `keep`; an empty,
  truncated or corrupt archive raises DataFormatError naming it."""
  if path.is_file() and path.stat().st_size == 0:
    raise DataFormatError(f"{path} is empty (0 bytes): the archive is incomplete. {hint}")
  try:
    with tarfile.open(path, "r:*") as tar:
      for member in tar:
        if member.isfile() and keep(member.name):
          yield member.name, tar.extractfile(member).read()
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise DataFormatError(f"{path} is truncated or not a readable tar.gz archive ({e}). "
                          f"{hint}") from None


def read_imdb_archive(path: PathLike, hint: str = "") -> Iterator[tuple[str, bytes, int]]:
  """Yields (split, review bytes, label) from aclImdb_v1.tar.gz; neg = 0, pos = 1, as in
  tfds imdb_reviews. Unlabelled reviews (train/unsup) are skipped. An archive without
  train or test reviews raises DataFormatError (after the last review); `hint` says
  what to do and ends every error message."""
  path = pathlib.Path(path)
  counts = {"train": 0, "test": 0}
  for name, data in _tar_members(path, _IMDB_NAME.search, hint):
    match = _IMDB_NAME.search(name)
    counts[match.group(1)] += 1
    yield match.group(1), data, int(match.group(2) == "pos")
  for split, count in counts.items():
    if not count:
      raise DataFormatError(f"{path} has no {split} reviews (aclImdb/{split}/pos|neg/*.txt): "
                            f"the archive is incomplete or not aclImdb_v1.tar.gz. {hint}")


_CIFAR_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR_RECORD = 1 + 3 * 32 * 32


def rgb_to_grayscale(rgb_Nx32x32x3: np.ndarray) -> np.ndarray:
  """tf.image.rgb_to_grayscale on uint8 images, bit for bit: weights (0.2989, 0.5870,
  0.1140) on [0, 1] floats, then converted back to uint8 by scaling with 255.5 and
  truncating, as tf.image.convert_image_dtype does."""
  floats = rgb_Nx32x32x3.astype(np.float32) / np.float32(255.0)
  gray = floats @ np.array([0.2989, 0.5870, 0.1140], np.float32)
  return np.clip(gray * np.float32(255.5), 0, 255).astype(np.uint8)


def read_cifar_archive(path: PathLike,
                       hint: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{split: (grayscale images (N, 32, 32) uint8, labels (N,))} from the binary archive;
  `hint` says what to do and ends the messages about an incomplete archive."""
  path = pathlib.Path(path)
  wanted = {name for files in _CIFAR_FILES.values() for name in files}
  base = lambda name: name.rsplit("/", 1)[-1]  # noqa: E731
  found = {base(name): data for name, data in
           _tar_members(path, lambda name: base(name) in wanted, hint)}
  out = {}
  for split, files in _CIFAR_FILES.items():
    raw = []
    for name in files:
      if name not in found:
        raise DataFormatError(f"{path} has no cifar-10-batches-bin/{name}; is it "
                              f"cifar-10-binary.tar.gz (not the python version)? {hint}")
      if not found[name] or len(found[name]) % CIFAR_RECORD:
        raise DataFormatError(f"{path}: {name} has {len(found[name])} bytes, not a positive "
                              f"multiple of the {CIFAR_RECORD}-byte record. {hint}")
      raw.append(np.frombuffer(found[name], np.uint8).reshape(-1, CIFAR_RECORD))
    records = np.concatenate(raw)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) > 9:
      raise DataFormatError(f"{path}: label {labels.max()} out of range 0..9")
    rgb = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    out[split] = (rgb_to_grayscale(rgb), labels)
  return out


__all__ = ["DataFormatError", "read_listops_tsv", "read_aan_tsv", "read_pathfinder_metadata",
           "read_png", "read_imdb_archive", "read_cifar_archive", "rgb_to_grayscale"]
