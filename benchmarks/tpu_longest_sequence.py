"""The longest sequence each mixer trains at on one TPU v5e chip (16 GiB), found by
compile-time memory with libtpu's compiler (no TPU needed).

The Text model of configs/lra_text.py (4 layers, d 256, FFN 1024), batch 1, one training
step (AdamW, dropout on) compiled for `v5e-1`; a length fits when the step's peak per
chip (arguments + outputs not donated + temporaries + code, `luna_jax.training.aot`) is
within the chip's HBM. For each setting, a binary search over the powers of two from 4K
to 1M tokens (memory grows with the length, so the fitting lengths are a prefix). Each
compile runs in its own process, so that a compiler failure is recorded, not fatal.

    python benchmarks/tpu_longest_sequence.py            # writes OUT/tpu_longest_sequence.*
    python benchmarks/tpu_longest_sequence.py --only luna

Results are kept per point in the JSON file, so an interrupted search resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LENGTHS = [2**k for k in range(12, 21)]  # 4K .. 1M
# label -> config overrides (on configs/lra_text.py, batch 1)
SETTINGS = {  # in the order searched: the goal first, then each mixer, then the rest
    "luna-16 remat bf16": {"model.remat": True, "model.dtype": "bfloat16"},
    "luna-16": {},
    "transformer chunked": {"model.name": "transformer"},
    "transformer explicit": {"model.name": "transformer",
                             "model.transformer.implementation": "xla"},
    "linformer-16": {"model.name": "linformer"},
    "lightconv": {"model.name": "lightconv"},
    "dynamicconv": {"model.name": "dynamicconv"},
    "causal luna-16 (clm) remat bf16": {"objective": "clm", "model.causal": True,
                                        "model.remat": True, "model.dtype": "bfloat16"},
    "transformer chunked remat": {"model.name": "transformer", "model.remat": True},
    "transformer explicit remat": {"model.name": "transformer", "model.remat": True,
                                   "model.transformer.implementation": "xla"},
    "luna-16 remat": {"model.remat": True},
    "causal luna-16 (clm)": {"objective": "clm", "model.causal": True},
}


def point(overrides: dict, length: int) -> dict:
  """One compile, in this process: the train step's figures for `length` tokens."""
  from configs import lra_text
  from luna_jax.training import aot, topology

  config = aot.with_changes(lra_text.get_config(), {
      **overrides, "max_len": length, "batch_size": 1})
  chip = topology.parse("v5e-1")
  _, trainer, (train,), seconds = aot.measure(config, chip, train_only=True)
  return {"length": length, "peak_bytes": train.peak_bytes, "temp_bytes": train.temp_bytes,
          "argument_bytes": train.argument_bytes, "fits": train.peak_bytes <= chip.hbm_bytes,
          "compile_s": train.compile_s, "flops": train.flops_per_chip,
          "attention_path": aot.attention_path(config)}


def _point_in_subprocess(overrides: dict, length: int, timeout: int) -> dict:
  command = [sys.executable, __file__, "--point", json.dumps(overrides), str(length)]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  try:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
  except subprocess.TimeoutExpired:
    return {"length": length, "fits": False, "error": f"compile over {timeout} s"}
  lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
  if result.returncode or not lines:
    tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
    # A compiler that runs out of memory to place the program: it does not fit.
    return {"length": length, "fits": False, "error": tail[:300]}
  return json.loads(lines[-1])


def search(label: str, points: dict, timeout: int) -> None:
  """Fills points (length -> record) until the longest fitting power of two is known."""
  overrides = SETTINGS[label]
  lo, hi = -1, len(LENGTHS)  # LENGTHS[lo] fits (or none), LENGTHS[hi] does not (or none)
  for i, n in enumerate(LENGTHS):  # what is known already
    if str(n) in points:
      if points[str(n)]["fits"]:
        lo = max(lo, i)
      else:
        hi = min(hi, i)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    n = LENGTHS[mid]
    record = _point_in_subprocess(overrides, n, timeout)
    points[str(n)] = record
    peak = record.get("peak_bytes")
    print(f"  {label} at {n}: {'fits' if record['fits'] else 'does not fit'}"
          f"{f', peak {peak / 2**30:.2f} GiB' if peak else ''}"
          f"{', ' + record['error'] if 'error' in record else ''}", flush=True)
    if record["fits"]:
      lo = mid
    else:
      hi = mid
    yield


def longest(points: dict) -> int:
  fitting = [int(n) for n, r in points.items() if r["fits"]]
  return max(fitting) if fitting else 0


def markdown(results: dict) -> str:
  lines = ["# The longest sequence per TPU v5e chip (16 GiB)", "",
           "The Text model of `configs/lra_text.py` (4 layers, d 256, 4 heads, FFN 1024; "
           "Luna l = 16, Linformer k = 16, convolution kernels 3-31), batch 1, one "
           "training step with AdamW and dropout, compiled for one v5e chip by libtpu's "
           "compiler; fits = the compiled step's peak memory is within 16 GiB. Binary "
           "search over powers of two from 4K to 1M tokens "
           "(`python benchmarks/tpu_longest_sequence.py`).", "",
           "| setting | longest that fits | its peak GiB | next length | its peak GiB |",
           "|---|---|---|---|---|"]
  for label, points in results.items():
    best = longest(points)
    over = min((int(n) for n, r in points.items() if not r["fits"] and int(n) > best),
               default=None)
    lines.append(f"| {label} | {_tokens(best) if best else 'none (< 4K)'} | "
                 f"{_peak(points.get(str(best)))} | {_tokens(over) if over else '-'} | "
                 f"{_peak(points.get(str(over)))} |")
  return "\n".join(lines) + "\n"


def _peak(record) -> str:
  if not record:
    return ""
  if record.get("peak_bytes"):
    return f"{record['peak_bytes'] / 2**30:.2f}"
  error = record.get("error", "")
  needed = re.search(r"HLO temporaries \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", error)
  if needed:  # the compiler refused it: its own count
    return f"temporaries alone {needed.group(1)} (compiler: > {needed.group(2)} usable)"
  return error[:80].replace("|", "/")


def _tokens(n: int) -> str:
  return f"{n // 2**20}M" if n >= 2**20 else f"{n // 1024}K"


def plot(results: dict, path: pathlib.Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  colors = plt.cm.tab20.colors
  for i, (label, points) in enumerate(results.items()):
    xs = sorted(int(n) for n, r in points.items() if r.get("peak_bytes"))
    if xs:
      ax.plot(xs, [points[str(n)]["peak_bytes"] / 2**30 for n in xs], marker="o", label=label,
              color=colors[(2 * i) % 20 + (i >= 10)], ls="--" if "remat" in label else "-")
  ax.axhline(16, color="k", ls="--", lw=1, label="v5e HBM (16 GiB)")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("tokens (batch 1)")
  ax.set_ylabel("compiled training step's peak GiB per chip")
  ax.set_title("Text model, one v5e chip: memory of a training step")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="settings whose label contains this")
  parser.add_argument("--timeout", type=int, default=400, help="seconds per compile")
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
  parser.add_argument("--point", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.point:
    print(json.dumps(point(json.loads(args.point[0]), int(args.point[1]))))
    return
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  path = out / "tpu_longest_sequence.json"
  results = json.loads(path.read_text()) if path.is_file() else {}
  for label in SETTINGS:
    if args.only and args.only not in label:
      continue
    points = results.setdefault(label, {})
    for _ in search(label, points, args.timeout):
      path.write_text(json.dumps(results, indent=2))
      path.with_suffix(".md").write_text(markdown(results))
    print(f"{label}: longest {_tokens(longest(points)) if longest(points) else 'none'}",
          flush=True)
  path.write_text(json.dumps(results, indent=2))
  path.with_suffix(".md").write_text(markdown(results))
  plot(results, path.with_suffix(".png"))


if __name__ == "__main__":
  main()
