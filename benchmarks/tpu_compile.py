"""Every shipped config compiled for real TPU slices, without a TPU (libtpu's compiler).

Each entry runs the real entry point in its own process,
    python train.py --config CONFIG [--config.x=y ...] --compile_topology TOPOLOGY
and collects its compile_report.json (`luna_jax.training.aot`): per-chip memory against
HBM, FLOPs, compile time. Results go to OUT/tpu_compile_<slice>.{json,md}; an entry
already there is kept unless --force, so an interrupted sweep resumes.

    python benchmarks/tpu_compile.py                 # every entry (tens of minutes on 2 cores)
    python benchmarks/tpu_compile.py --only text     # entries whose label contains "text"
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LRA = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
MIXERS = ("luna", "transformer", "linformer", "lightconv", "dynamicconv")


def entries() -> list[tuple[str, str, str, list[str]]]:
  """(slice, label, config, overrides) of every compile docs/tpu.md's table reports."""
  out = []
  for task in LRA:  # every LRA task with Luna-16 (the configs' default) and the Transformer
    for mixer in ("luna", "transformer"):
      out.append(("v5e-8", f"{task} {mixer}", f"configs/lra_{task}.py",
                  [f"--config.model.name={mixer}"]))
  for mixer in MIXERS[2:]:  # Text with the other mixers
    out.append(("v5e-8", f"text {mixer}", "configs/lra_text.py",
                [f"--config.model.name={mixer}"]))
  for variant in ("luna", "transformer"):
    # The WMT'14 data need not be here: the vocabulary size is all the programs need.
    out.append(("v5e-8", f"wmt14 {variant}", f"configs/wmt14_en_de.py:{variant}",
                ["--config.translation_dir=/nonexistent"]))
  out.append(("v5e-8", "listops luna self-pre-trained", "configs/lra_listops.py",
              ["--config.pretrain.objective=mlm", "--config.pretrain.num_train_steps=5000"]))
  for mixer in ("luna", "transformer"):
    out.append(("v4-8", f"text {mixer}", "configs/lra_text.py",
                [f"--config.model.name={mixer}"]))
  out.append(("v5e-16", "text luna", "configs/lra_text.py", ["--config.model.name=luna"]))
  return out


def compile_one(slice_: str, config: str, overrides: list[str], timeout: int) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    command = [sys.executable, "train.py", "--config", config, *overrides,
               "--compile_topology", slice_, "--workdir", workdir]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    wall = time.perf_counter() - start
    report_path = pathlib.Path(workdir) / "compile_report.json"
    if not report_path.is_file():
      return {"error": (result.stderr.strip().splitlines() or ["no output"])[-1],
              "wall_s": wall}
    report = json.loads(report_path.read_text())
  report["wall_s"] = wall  # the whole command: start-up, tracing and every compile
  report["command"] = " ".join(["python", *command[1:-2]])
  return report


def _gib(n) -> str:
  return f"{n / 2**30:.2f}"


def markdown(slice_: str, records: dict) -> str:
  lines = [f"# Configs compiled for TPU {slice_} (libtpu's compiler on a 2-core CPU host)",
           "",
           "Per chip, from XLA's memory analysis of the compiled programs. peak = arguments "
           "+ outputs not donated + temporaries + code, the largest over the train step, "
           "eval step and (translation) generation. GFLOP: the train step's matrix "
           "products per chip, counted from its jaxpr. Wall: the whole `train.py "
           "--compile_topology` command on this machine.",
           "",
           "| config | per chip | state GiB | train temp GiB | peak GiB | of HBM | fits "
           "| attention | train GFLOP | compile s (train) | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for label, r in records.items():
    if "error" in r:
      lines.append(f"| {label} | error: {r['error']} |||||||||")
      continue
    train = next(p for p in r["programs"] if p["name"] == "train_step")
    lines.append(
        f"| {label} | {r['examples_per_chip']} ex, {r['dtype']}"
        f"{', remat' if r['remat'] else ''} | {_gib(r['state_bytes_per_chip'])} | "
        f"{_gib(train['temp_bytes'])} | {_gib(r['peak_bytes_per_chip'])} | "
        f"{r['peak_bytes_per_chip'] / r['hbm_bytes_per_chip']:.1%} | "
        f"{'yes' if r['fits'] else 'NO'} | {r['attention_path'].split(' (')[0]} | "
        f"{train['flops_per_chip'] / 1e9:.0f} | {train['compile_s']:.0f} | "
        f"{r['wall_s']:.0f} |")
  first = next((r for r in records.values() if "error" not in r), None)
  if first:
    lines += ["", f"{first['chips']} chips of {_gib(first['hbm_bytes_per_chip'])} GiB, "
              f"{first['hosts']} host(s); JAX {first['jax']}."]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="entries whose label contains this")
  parser.add_argument("--slice", default="", help="entries for this TPU slice only")
  parser.add_argument("--force", action="store_true", help="recompile entries already done")
  parser.add_argument("--timeout", type=int, default=1800, help="seconds per entry")
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  for slice_, label, config, overrides in entries():
    if args.only not in label or (args.slice and args.slice != slice_):
      continue
    path = out / f"tpu_compile_{slice_}.json"
    records = json.loads(path.read_text()) if path.is_file() else {}
    if label in records and "error" not in records[label] and not args.force:
      continue
    print(f"{slice_}: {label} ...", flush=True)
    records[label] = compile_one(slice_, config, overrides, args.timeout)
    r = records[label]
    print(f"  {'error: ' + r['error'] if 'error' in r else 'fits' if r['fits'] else 'NO FIT'}"
          f" in {r['wall_s']:.0f} s", flush=True)
    path.write_text(json.dumps(records, indent=2))
    path.with_suffix(".md").write_text(markdown(slice_, records))


if __name__ == "__main__":
  main()
