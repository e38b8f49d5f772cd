"""Writing generated images in the LRA Pathfinder release's layout, on any number of cores.

    <root>/pathfinder<res>/<subset>/imgs/<batch>/sample_<i>.png
    <root>/pathfinder<res>/<subset>/metadata/<batch>.npy   (plain text)

Image k is drawn from its own generator seeded by (seed, k), so a release depends only
on the arguments, byte for byte, whatever the number of worker processes.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Callable

import numpy as np

from luna_jax.data import readers
from luna_jax.data.pathfinder.sampling import generate_sample
from luna_jax.data.pathfinder.settings import DIFFICULTIES, PathfinderSettings, settings_for


def subset_dir(root: str | os.PathLike, resolution: int, difficulty: str) -> pathlib.Path:
  """<root>/pathfinder<res>/<subset>, the release's folder of one difficulty."""
  return pathlib.Path(root) / f"pathfinder{resolution}" / DIFFICULTIES[difficulty][0]


def _metadata_line(settings: PathfinderSettings, batch: int, index: int, label: int,
                   margin: float) -> str:
  """One line of the release's (plain-text) metadata file."""
  fields = [f"imgs/{batch}", f"sample_{index}.png", index, label,
            repr(float(settings.continuity)), settings.contour_length,
            settings.distractor_length, f"{settings.paddle_length:g}",
            f"{settings.paddle_thickness:g}", f"{margin:g}", 1]
  return " ".join(str(f) for f in fields)


def _png_of(job: tuple) -> tuple[bytes, float]:
  """(PNG bytes, margin) of image k: job = (resolution, difficulty, seed, k, label)."""
  import io

  from PIL import Image

  resolution, difficulty, seed, k, label = job
  sample = generate_sample(np.random.default_rng([seed, k]),
                           settings_for(resolution, difficulty), label)
  buffer = io.BytesIO()
  Image.fromarray(sample.image).save(buffer, format="PNG")
  return buffer.getvalue(), sample.paddle_margin


def write_release(root: str | os.PathLike, resolution: int, difficulty: str, *,
                  num_images: int, seed: int, images_per_batch: int = 1000,
                  progress: Callable[[int], None] | None = None,
                  workers: int | None = 1) -> pathlib.Path:
  """Writes `num_images` images in the official LRA Pathfinder layout.

  Image k goes to batch k // images_per_batch as sample k % images_per_batch. Labels
  are exactly balanced (k % 2, shuffled with `seed`), and image k is drawn from its
  own generator seeded by (seed, k), so the output depends only on the arguments: images
  are drawn by `workers` processes (None: every core) and written in order, byte for
  byte the same for any number of workers. Images and metadata already in the subset
  folder (an earlier run) are removed first, so the folder holds exactly this run.

  Returns:
    The subset directory <root>/pathfinder<res>/<subset>.
  """
  from luna_jax.data.parallel import ordered_map

  settings = settings_for(resolution, difficulty)
  if num_images < 0:
    raise ValueError(f"num_images must be >= 0, got {num_images}.")
  if images_per_batch < 1:
    raise ValueError(f"images_per_batch must be >= 1, got {images_per_batch}.")
  subset = subset_dir(root, resolution, difficulty)
  for stale in ("imgs", "metadata"):
    shutil.rmtree(subset / stale, ignore_errors=True)
  (subset / "metadata").mkdir(parents=True, exist_ok=True)
  labels = np.random.default_rng(seed).permutation(np.arange(num_images) % 2)
  jobs = ((resolution, difficulty, seed, k, int(labels[k])) for k in range(num_images))
  images = ordered_map(_png_of, jobs, workers, chunksize=32)
  for batch_start in range(0, num_images, images_per_batch):
    batch = batch_start // images_per_batch
    batch_dir = subset / "imgs" / str(batch)
    batch_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(batch_start, min(batch_start + images_per_batch, num_images)):
      index, label = k - batch_start, int(labels[k])
      png, margin = next(images)
      (batch_dir / f"sample_{index}.png").write_bytes(png)
      lines.append(_metadata_line(settings, batch, index, label, margin))
      if progress is not None:
        progress(k + 1)
    (subset / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
  return subset


def write_splits(root: str | os.PathLike, sizes: dict[str, int], seed: int,
                 progress: Callable[[int], None] | None = None, workers: int | None = 1, *,
                 resolution: int, difficulty: str) -> pathlib.Path:
  """`write_release` of sum(sizes) images, recording the split sizes (train,
  validation, test, in metadata order) that the builder reads back."""
  subset = write_release(root, resolution, difficulty, num_images=sum(sizes.values()),
                         seed=seed, progress=progress, workers=workers)
  readers.write_pathfinder_split_sizes(subset, sizes)
  return subset
