"""Small files in each official LRA format, written by the tests themselves."""

from __future__ import annotations

import io
import pathlib
import tarfile

import numpy as np
from PIL import Image

LISTOPS_ROWS = [("( ( ( [MAX 2 ) 9 ) ] )", 9), ("( ( ( ( [SM 4 ) 7 ) 5 ) ] )", 6),
                ("( ( ( [MIN 3 ) ( ( ( ( [MED 1 ) 8 ) 4 ) ] ) ) ] )", 3), ("7", 7)]


def write_listops(root: pathlib.Path, rows=LISTOPS_ROWS) -> pathlib.Path:
  folder = root / "listops-1000"
  folder.mkdir(parents=True, exist_ok=True)
  for name in ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv"):
    lines = ["Source\tTarget"] + [f"{s}\t{t}" for s, t in rows]
    (folder / name).write_text("\n".join(lines) + "\n")
  return root


AAN_ROWS = [(1.0, "P01-1", "P02-2", b"Neural nets.", b"We cite neural nets."),
            (0.0, "P03-3", "P04-4", b"Parsing \xc3\xa9t\xc3\xa9.", b"Unrelated."),
            (1.0, "P05-5", "P06-6", b"A" * 50, b"B" * 7)]


def write_aan(root: pathlib.Path, rows=AAN_ROWS) -> pathlib.Path:
  folder = root / "tsv_data"
  folder.mkdir(parents=True, exist_ok=True)
  for name in ("train", "eval", "test"):
    with open(folder / f"new_aan_pairs.{name}.tsv", "wb") as f:
      for label, id1, id2, t1, t2 in rows:
        f.write(b"\t".join([str(label).encode(), id1.encode(), id2.encode(), t1, t2]) + b"\n")
  return root


def write_pathfinder(root: pathlib.Path, resolution=32, subset="curv_contour_length_14",
                     num_images=10, empty_index=3, seed=0) -> list[tuple[np.ndarray, int]]:
  """num_images PNGs in two metadata batches; image `empty_index` is an empty file.
  Returns the (image, label) list in canonical order (None image for the empty one)."""
  rng = np.random.default_rng(seed)
  base = root / f"pathfinder{resolution}" / subset
  written = []
  for i in range(num_images):
    batch = i // 5
    (base / "imgs" / str(batch)).mkdir(parents=True, exist_ok=True)
    (base / "metadata").mkdir(parents=True, exist_ok=True)
    path = base / "imgs" / str(batch) / f"sample_{i}.png"
    label = i % 2
    if i == empty_index:
      path.write_bytes(b"")
      image = None
    else:
      image = rng.integers(0, 256, (resolution, resolution), dtype=np.uint8)
      Image.fromarray(image, mode="L").save(path)
    with open(base / "metadata" / f"{batch}.npy", "a") as f:
      f.write(f"imgs/{batch} sample_{i}.png {i} {label} 1.0 14 4 2 0.5 1 1\n")
    written.append((image, label))
  return written


def _tar_gz(path: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  with tarfile.open(path, "w:gz") as tar:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return path


IMDB_FILES = {
    "aclImdb/train/pos/0_9.txt": b"Great film.<br />Loved it.",
    "aclImdb/train/neg/1_2.txt": b"Awful.",
    "aclImdb/train/pos/2_8.txt": b"Caf\xc3\xa9 scene was fun.",
    "aclImdb/train/unsup/3_0.txt": b"no label",
    "aclImdb/test/neg/0_1.txt": b"Bad.",
    "aclImdb/test/pos/1_10.txt": b"Superb.",
    "aclImdb/README": b"readme",
}


def write_imdb_archive(manual_dir: pathlib.Path) -> pathlib.Path:
  return _tar_gz(manual_dir / "aclImdb_v1.tar.gz", IMDB_FILES)


def write_cifar_archive(manual_dir: pathlib.Path, per_batch=4, test=6, seed=0):
  """A cifar-10-binary.tar.gz with `per_batch` records in each of the 5 training batches.
  Returns (archive path, train rgb (N, 32, 32, 3), train labels, test rgb, test labels)."""
  rng = np.random.default_rng(seed)

  def batch(n):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    rgb = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = rgb.transpose(0, 3, 1, 2).reshape(n, -1)
    return np.concatenate([labels[:, None], planes], axis=1).tobytes(), rgb, labels

  files, train_rgb, train_labels = {}, [], []
  for i in range(1, 6):
    data, rgb, labels = batch(per_batch)
    files[f"cifar-10-batches-bin/data_batch_{i}.bin"] = data
    train_rgb.append(rgb)
    train_labels.append(labels)
  data, test_rgb, test_labels = batch(test)
  files["cifar-10-batches-bin/test_batch.bin"] = data
  path = _tar_gz(manual_dir / "cifar-10-binary.tar.gz", files)
  return path, np.concatenate(train_rgb), np.concatenate(train_labels), test_rgb, test_labels
