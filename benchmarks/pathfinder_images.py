"""How generated Pathfinder images look, next to the original generator's statistics.

    python benchmarks/pathfinder_images.py            # 1,000 32 x 32 and 100 128 x 128 hard images
    python benchmarks/pathfinder_images.py --quick    # a few images (the test suite)

Writes to --out (default benchmarks/results/):
  pathfinder_images.json / .md  per resolution: saturated pixels (>= 250) per image, the
                                share of pixels above 64, distractors placed per image,
                                generation time per image; beside the original's figures
  pathfinder_contact_sheet.png  16 images per resolution (32 x 32 and 128 x 128), labelled
The original's figures are those measured on Linsley et al.'s snakes2.py at LRA's 32 x 32
hard settings (shared/reference/lra.md): 2.7 saturated pixels per image, 12.4% above 64.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
from PIL import Image, ImageDraw

from luna_jax.data import pathfinder

ORIGINAL_32_HARD = {"saturated_per_image": 2.7, "fraction_above_64": 0.124}
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def measure(resolution: int, difficulty: str, num_images: int, seed: int):
  """Images (as write_release draws them) and their statistics."""
  settings = pathfinder.settings_for(resolution, difficulty)
  images, labels, distractors = [], [], []
  start = time.perf_counter()
  for k in range(num_images):
    sample = pathfinder.generate_sample(np.random.default_rng([seed, k]), settings, k % 2)
    images.append(sample.image)
    labels.append(sample.label)
    distractors.append(len(sample.contours) - 2)
  seconds = time.perf_counter() - start
  stack = np.stack(images)
  saturated = (stack >= 250).sum(axis=(1, 2))
  stats = {
      "resolution": resolution, "difficulty": difficulty, "num_images": num_images,
      "saturated_per_image": float(saturated.mean()),
      "saturated_per_image_p5_p95": [float(np.percentile(saturated, 5)),
                                     float(np.percentile(saturated, 95))],
      "fraction_above_64": float((stack > 64).mean()),
      "distractors_per_image": float(np.mean(distractors)),
      "distractors_asked": settings.num_distractor_snakes,
      "ms_per_image": 1000 * seconds / num_images,
  }
  return images, labels, stats


def contact_sheet(rows: list[tuple[int, list[np.ndarray], list[int]]], cell: int = 128,
                  columns: int = 8) -> Image.Image:
  """Each row group: images upscaled to `cell` pixels (nearest), label written below."""
  caption, gap = 14, 4
  height = sum(-(-len(images) // columns) * (cell + caption + gap) + 20
               for _, images, _ in rows)
  sheet = Image.new("L", (columns * (cell + gap) + gap, height), 96)
  draw = ImageDraw.Draw(sheet)
  y = 0
  for resolution, images, labels in rows:
    draw.text((gap, y + 4), f"{resolution} x {resolution}, hard (label 1: markers on one "
              "contour)", fill=255)
    y += 20
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
      col, row = i % columns, i // columns
      x0, y0 = gap + col * (cell + gap), y + row * (cell + caption + gap)
      sheet.paste(Image.fromarray(image).resize((cell, cell), Image.Resampling.NEAREST),
                  (x0, y0))
      draw.text((x0 + 2, y0 + cell + 1), f"label {label}", fill=255)
    y += -(-len(images) // columns) * (cell + caption + gap)
  return sheet


def _markdown(records: list[dict]) -> str:
  lines = ["| images | saturated (>= 250) per image | pixels > 64 | distractors placed | "
           "ms per image |", "|---|---|---|---|---|"]
  for r in records:
    lo, hi = r["saturated_per_image_p5_p95"]
    lines.append(f"| {r['resolution']} x {r['resolution']} {r['difficulty']} "
                 f"({r['num_images']}) | {r['saturated_per_image']:.2f} (5-95%: "
                 f"{lo:.0f}-{hi:.0f}) | {100 * r['fraction_above_64']:.1f}% | "
                 f"{r['distractors_per_image']:.2f} of {r['distractors_asked']} | "
                 f"{r['ms_per_image']:.1f} |")
  o = ORIGINAL_32_HARD
  lines.append(f"| original snakes2.py, 32 x 32 hard | {o['saturated_per_image']} | "
               f"{100 * o['fraction_above_64']:.1f}% | | |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="a few images, for the tests")
  parser.add_argument("--out", default=str(RESULTS))
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  counts = {32: 16, 128: 8} if args.quick else {32: 1000, 128: 100}
  records, rows = [], []
  for resolution, n in counts.items():
    images, labels, stats = measure(resolution, "hard", n, args.seed)
    records.append(stats)
    rows.append((resolution, images[:16], labels[:16]))
    print(json.dumps(stats), flush=True)
  suffix = "_quick" if args.quick else ""
  (out / f"pathfinder_images{suffix}.json").write_text(json.dumps(
      {"records": records, "original_32_hard": ORIGINAL_32_HARD}, indent=1) + "\n")
  (out / f"pathfinder_images{suffix}.md").write_text(_markdown(records))
  contact_sheet(rows).save(out / f"pathfinder_contact_sheet{suffix}.png")
  print(_markdown(records))


if __name__ == "__main__":
  main()
