"""What the TPU compile time of the Luna Text train step is made of (libtpu's compiler, no
TPU): the step as it is, and with each of the two choices that made it slow undone.

  rows view    position-wise products on the (B * N, D) view, which XLA CPU wants
               (`common.rows_view`); on TPU a relayout at N = 4,002, not a multiple of 8
  threefry     dropout keys from Threefry-2x32, whose rounds the compiler generates inside
               every dropout's fusion, instead of the TPU's rbg generator

    python benchmarks/tpu_compile_time.py [--topology v5e-8] [--repeats 1]

Writes OUT/tpu_compile_time.{json,md}. Compile times depend on the host's load; the
results file names the host's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = {
    "as built": {},
    "threefry dropout keys": {"prng_impl": "threefry2x32"},
    "rows view": {"_rows_view": True},
    "rows view + threefry (before)": {"_rows_view": True, "prng_impl": "threefry2x32"},
}


def one(topology_name: str, changes: dict) -> dict:
  from configs import lra_text
  from luna_jax import common
  from luna_jax.training import aot, topology

  if changes.pop("_rows_view", False):
    common.rows_view = lambda: True
  config = aot.with_changes(lra_text.get_config(), changes)
  _, _, (train,), _ = aot.measure(config, topology.parse(topology_name), train_only=True)
  return {"compile_s": train.compile_s, "temp_bytes": train.temp_bytes,
          "peak_bytes": train.peak_bytes}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--topology", default="v5e-8")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
  parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(json.dumps(one(args.one[0], json.loads(args.one[1]))))
    return
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  results = {}
  for label, changes in VARIANTS.items():
    runs = []
    for _ in range(args.repeats):  # a fresh process each: no compilation cache
      out = subprocess.run([sys.executable, __file__, "--one", args.topology,
                            json.dumps(changes)], env=env, cwd=ROOT, capture_output=True,
                           text=True, check=True)
      runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    results[label] = {**runs[-1], "compile_s": statistics.median(r["compile_s"] for r in runs),
                      "compile_s_all": [r["compile_s"] for r in runs]}
    print(f"{label}: {results[label]['compile_s']:.0f} s", flush=True)
  lines = [f"# Compile time of the Luna-16 Text train step for TPU {args.topology}", "",
           f"libtpu's compiler on a {os.cpu_count()}-core CPU host, "
           f"`python benchmarks/tpu_compile_time.py --repeats {args.repeats}` (median).", "",
           "| step | compile s | temporaries MiB per chip |", "|---|---|---|"]
  for label, r in results.items():
    lines.append(f"| {label} | {r['compile_s']:.0f} | {r['temp_bytes'] / 2**20:.0f} |")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "tpu_compile_time.json").write_text(json.dumps(results, indent=2))
  (out / "tpu_compile_time.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
