"""Pathfinder generation speed: images per second, per worker count, as `prepare` writes them.

    python benchmarks/pathfinder_speed.py                 # 3,000 at 32 x 32, 400 at 128 x 128
    python benchmarks/pathfinder_speed.py --quick         # a few images (the test suite)

Each measurement is `pathfinder.write_release` into a fresh temporary folder (PNG
encoding and the workers' start-up included), best of --repeats. Writes
pathfinder_speed_<machine>.json / .md to --out (default benchmarks/results/). To compare
two commits, run this from each checkout on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

from luna_jax.data import pathfinder
from luna_jax.data.parallel import default_workers

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def images_per_second(resolution: int, difficulty: str, num_images: int, workers: int,
                      repeats: int) -> float:
  best = 0.0
  for _ in range(repeats):
    with tempfile.TemporaryDirectory() as folder:
      start = time.perf_counter()
      pathfinder.write_release(folder, resolution, difficulty, num_images=num_images, seed=0,
                               workers=workers)
      best = max(best, num_images / (time.perf_counter() - start))
  return best


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--difficulty", default="hard")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args()
  sizes = {32: 40, 128: 4} if args.quick else {32: 3000, 128: 400}
  worker_counts = sorted({1, min(2, default_workers()), default_workers()})
  records = []
  for resolution, num_images in sizes.items():
    for workers in worker_counts:
      rate = images_per_second(resolution, args.difficulty, num_images, workers,
                               1 if args.quick else args.repeats)
      records.append({"resolution": resolution, "difficulty": args.difficulty,
                      "num_images": num_images, "workers": workers,
                      "images_per_second": rate, "per_worker": rate / workers})
      print(f"{resolution} x {resolution} {args.difficulty}, {num_images} images, "
            f"{workers} workers: {rate:.1f} images/s", flush=True)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  # Named by the CPU, not the accelerator (common.device_name): generation runs on the cores.
  name = f"pathfinder_speed_cpu-{os.cpu_count()}core{'_quick' if args.quick else ''}"
  (out / f"{name}.json").write_text(json.dumps({"records": records}, indent=1) + "\n")
  lines = ["| resolution | workers | images/s | per worker |", "|---|---|---|---|"]
  lines += [f"| {r['resolution']} | {r['workers']} | {r['images_per_second']:.1f} | "
            f"{r['per_worker']:.1f} |" for r in records]
  (out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
