"""The offline translation runs (`configs/wmt14_en_de.py:cpu`, the generated reordering
task) for every decoder mixer, Luna's ablation of l and of contextual P, and whether the
same command twice gives the same result.

    python benchmarks/translation_cpu.py                  # the mixers, Luna's ablation, a repeat
    python benchmarks/translation_cpu.py --runs luna transformer --repeat 0
    python benchmarks/translation_cpu.py --quick          # 20 steps, a smoke run
    python benchmarks/translation_cpu.py --runs luna-preln transformer-postln --steps 250
        --repeat 0                                        # LayerNorm placement
    python benchmarks/translation_cpu.py --runs luna-softmax-self luna-softmax-cross
        --steps 250 --repeat 0                            # which half of Luna's decoder

Each run trains in this process with `train_and_evaluate` into its own workdir, on one
generated dataset (made on first use in --data_dir). Recorded per run: test BLEU (the
workload's sacreBLEU, and the tokenised BLEU when present), copying the source's BLEU,
test perplexity, validation BLEU at every validation step, and the wall time including
compilation. With --repeat N, the first run is trained N more times into fresh workdirs,
and the record says whether every logged training loss, every validation metric and
every test hypothesis came out identical. The package versions go beside the results
(benchmarks/results/translation_cpu_<device>.json and .md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import pathlib
import platform
import sys
import tempfile
import time

from benchmarks import common

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# name -> config overrides on configs/wmt14_en_de.py:cpu (its Luna has l = 8, contextual P).
RUNS = {
    "luna": {},
    "transformer": {"model.name": "transformer"},
    "lightconv": {"model.name": "lightconv"},
    "dynamicconv": {"model.name": "dynamicconv"},
    "luna-16": {"model.luna.proj_len": 16},
    "luna-32": {"model.luna.proj_len": 32},
    "luna-8-noncontextual": {"model.luna.contextual_p": False},
    "luna-16-noncontextual": {"model.luna.proj_len": 16, "model.luna.contextual_p": False},
    "luna-32-noncontextual": {"model.luna.proj_len": 32, "model.luna.contextual_p": False},
    # LayerNorm placement: the cpu variant's Luna is post-LN (the authors'), its
    # Transformer pre-LN; each with the other placement.
    "luna-preln": {"model.layer_norm": "pre"},
    "transformer-postln": {"model.name": "transformer", "model.layer_norm": "post"},
    # Which half of Luna's decoder layer: softmax causal self-attention with Luna's
    # pack/unpack cross-attention, and causal Luna with softmax cross-attention.
    "luna-softmax-self": {"translation.decoder_self_mixer": "transformer"},
    "luna-softmax-cross": {"translation.decoder_cross_mixer": "transformer"},
}
DEFAULT_RUNS = ("luna", "transformer", "lightconv", "dynamicconv", "luna-16", "luna-32",
                "luna-8-noncontextual", "luna-16-noncontextual", "luna-32-noncontextual")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain",
            "sentencepiece", "sacrebleu")


def config_for(name: str, data_dir: str, quick: bool, steps: int = 0):
  from configs import wmt14_en_de
  from luna_jax.training.aot import with_changes

  config = wmt14_en_de.get_config("cpu")
  config.translation_dir, config.progress_bar = data_dir, False
  if quick:
    config.translation.generate, config.translation.generate_eval = 400, 20
    config.num_train_steps, config.eval_every, config.checkpoint_every = 20, 10, 10
    config.log_every, config.translation.val_bleu_sentences = 10, 10
  if steps:
    config.num_train_steps = steps
  return with_changes(config, RUNS[name])


def read_metrics(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def train(name: str, args, workdir: pathlib.Path) -> dict:
  from luna_jax.training import train_and_evaluate

  start = time.perf_counter()
  summary = train_and_evaluate(config_for(name, args.data_dir, args.quick, args.steps),
                               workdir)
  wall = time.perf_counter() - start
  metrics = read_metrics(workdir)
  translations = workdir / "test_translations.jsonl"
  return {
      "run": name, "overrides": RUNS[name], "wall_s": wall,
      "test_bleu": summary["test_bleu"], "copy_bleu": summary["copy_bleu"],
      "test_tokenized_bleu": summary.get("test_tokenized_bleu"),
      "test_perplexity": summary["test_perplexity"], "best_step": summary["best_step"],
      "validation_bleu": {m["step"]: m["bleu"] for m in metrics
                          if m["split"] == "validation" and "bleu" in m},
      "_metrics": [{k: v for k, v in m.items() if k != "time"} for m in metrics],
      "_hypotheses": translations.read_text() if translations.is_file() else None,
  }


def same(a: dict, b: dict) -> dict:
  """Which parts of two runs of one command came out identical."""
  return {"training_losses": [m for m in a["_metrics"] if m["split"] == "train"]
          == [m for m in b["_metrics"] if m["split"] == "train"],
          "validation": [m for m in a["_metrics"] if m["split"] == "validation"]
          == [m for m in b["_metrics"] if m["split"] == "validation"],
          "test_hypotheses": a["_hypotheses"] == b["_hypotheses"],
          "test_bleu": a["test_bleu"] == b["test_bleu"]}


def markdown(records: list[dict], repeats: list[dict], device: str) -> str:
  steps = sorted({int(s) for r in records for s in r["validation_bleu"]})
  lines = [f"Device: {device}. `configs/wmt14_en_de.py:cpu` (2 + 2 layers, width 64; "
           "beam search as the config sets it), one generated dataset.", "",
           "| run | test BLEU | tokenised BLEU | copy BLEU | test perplexity | validation "
           "BLEU at " + " / ".join(str(s) for s in steps) + " | wall time |",
           "|---|---|---|---|---|---|---|"]
  for r in records:
    val = " / ".join(f"{r['validation_bleu'].get(s, float('nan')):.2f}" for s in steps)
    tok = "" if r["test_tokenized_bleu"] is None else f"{r['test_tokenized_bleu']:.2f}"
    lines.append(f"| {r['run']} | {r['test_bleu']:.2f} | {tok} | {r['copy_bleu']:.2f} | "
                 f"{r['test_perplexity']:.3f} | {val} | {r['wall_s']:.0f} s |")
  for rep in repeats:
    lines.append(f"\nThe same command again ({rep['run']}, repeat {rep['repeat']}): "
                 + ", ".join(f"{k} {'identical' if v else 'DIFFERENT'}"
                             for k, v in rep["same"].items())
                 + f"; test BLEU {rep['test_bleu']:.2f}.")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", nargs="*", choices=list(RUNS), default=list(DEFAULT_RUNS))
  parser.add_argument("--steps", type=int, default=0,
                      help="train this many steps instead of the config's 1,000")
  parser.add_argument("--repeat", type=int, default=1,
                      help="train the first run this many more times and compare")
  parser.add_argument("--data_dir", default=None,
                      help="the generated task's folder (default: a temporary one)")
  parser.add_argument("--quick", action="store_true", help="20 steps on 400 pairs")
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args(argv)
  device = common.describe_device()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    args.data_dir = args.data_dir or str(tmp / "data")
    records, repeats = [], []
    for name in args.runs:
      records.append(train(name, args, tmp / name))
      print(f"{name}: test BLEU {records[-1]['test_bleu']:.2f}", flush=True)
    for k in range(1, args.repeat + 1):
      again = train(args.runs[0], args, tmp / f"{args.runs[0]}_repeat{k}")
      repeats.append({"run": args.runs[0], "repeat": k, "test_bleu": again["test_bleu"],
                      "same": same(records[0], again)})
      print(f"repeat {k}: {repeats[-1]['same']}", flush=True)
  versions = {"python": platform.python_version()}
  for package in PACKAGES:
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = (f"translation_cpu_{common.device_name()}" + ("_quick" if args.quick else "")
          + (f"_{'-'.join(args.runs)}_{args.steps}steps" if args.steps else ""))
  public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
  (out / f"{stem}.json").write_text(json.dumps(
      {"device": device, "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
       "versions": versions, "records": public, "repeats": repeats}, indent=1))
  (out / f"{stem}.md").write_text(markdown(records, repeats, device)
                                  + f"\nVersions: {json.dumps(versions)}\n")
  print(f"wrote {out / stem}.{{json,md}}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
