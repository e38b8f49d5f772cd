"""Masked-language-model perplexity against sequence length at a fixed budget: the
Linformer paper's claim (Wang et al. 2020, Fig. 3: with k fixed, perplexity stays level
as n grows) at a scale a CPU can run, next to the softmax Transformer and Luna.

    python benchmarks/mlm_perplexity.py                 # lengths 256, 512, 1024
    python benchmarks/mlm_perplexity.py --quick         # a smoke run (seconds)

Corpus: the Python standard library's own source files (present on every machine, so
the experiment runs offline), byte-level, one JSON line per file, prepared with
`prepare_corpus` (5% of the files held out for validation and 5% for test). Every run
trains the same small model (2 layers, width 128, 4 heads, FFN 512) for the same steps
on the same tokens per step (rows of n tokens, batch = tokens_per_step / n; one file per
row, long files cut into rows), with BERT masking, and reports the test perplexity of the
masked tokens with the best checkpoint by validation loss.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import sysconfig
import tempfile
import time

from benchmarks import common

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
MIXERS = {"transformer": {}, "luna-16": {"model.luna.proj_len": 16},
          "linformer-64": {"model.linformer.proj_len": 64}}


def write_stdlib_corpus(path: pathlib.Path, max_files: int) -> int:
  files = sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:max_files]
  with open(path, "w") as f:
    for file in files:
      f.write(json.dumps({"text": file.read_text(encoding="utf-8", errors="replace")}) + "\n")
  return len(files)


def config_for(mixer: str, n: int, corpus_dir: str, args):
  from luna_jax.training import base_config

  c = base_config()
  c.task, c.corpus_dir, c.objective = "corpus", corpus_dir, "mlm"
  c.max_len = n
  m = c.model
  m.name = mixer.split("-")[0]
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim = (args.num_layers, args.width, 4,
                                                    4 * args.width)
  m.dropout = m.attention_dropout = 0.0
  m.init_style = "bert"
  for key, value in MIXERS[mixer].items():
    block, name = key.split(".")[1:]
    c.model[block][name] = value
  c.optimizer.learning_rate, c.optimizer.warmup_steps = args.learning_rate, args.steps // 10
  c.optimizer.schedule = "cosine"
  c.batch_size = max(1, args.tokens_per_step // n)
  c.num_train_steps = args.steps
  c.eval_every = c.checkpoint_every = max(1, args.steps // 4)
  c.log_every = max(1, args.steps // 10)
  c.max_eval_batches = args.eval_batches
  c.progress_bar = False
  return c


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", type=int, nargs="*", default=[256, 512, 1024])
  parser.add_argument("--mixers", nargs="*", default=list(MIXERS))
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--tokens_per_step", type=int, default=8192)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--num_layers", type=int, default=2)
  parser.add_argument("--learning_rate", type=float, default=3e-3)
  parser.add_argument("--eval_batches", type=int, default=8)
  parser.add_argument("--max_files", type=int, default=400)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args(argv)
  if args.quick:
    args.lengths, args.steps, args.tokens_per_step, args.width = [64, 128], 4, 512, 32
    args.num_layers = 1
    args.max_files, args.eval_batches = 40, 2
  from luna_jax.data.corpus import prepare_corpus
  from luna_jax.training import train_and_evaluate

  records = []
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    files = write_stdlib_corpus(tmp / "stdlib.jsonl", args.max_files)
    meta = prepare_corpus(str(tmp / "stdlib.jsonl"), tmp / "corpus")
    print(f"{common.describe_device()}; corpus: {files} stdlib files, {meta['splits']}",
          flush=True)
    for n in args.lengths:
      for mixer in args.mixers:
        config = config_for(mixer, n, str(tmp / "corpus"), args)
        start = time.time()
        summary = train_and_evaluate(config, tmp / f"{mixer}_{n}")
        record = {"mixer": mixer, "seq_len": n, "batch": config.batch_size,
                  "steps": args.steps, "tokens_per_step": config.batch_size * n,
                  "test_perplexity": summary["test_perplexity"],
                  "test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"],
                  "best_val_loss": summary["best_val_loss"], "wall_s": time.time() - start}
        records.append(record)
        print(json.dumps(record), flush=True)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = f"mlm_perplexity_{common.device_name()}" + ("_quick" if args.quick else "")
  saved = {"device": common.describe_device(), "corpus": "Python stdlib *.py (first "
           f"{args.max_files} by name), bytes", "splits": meta["splits"],
           "settings": {k: v for k, v in vars(args).items() if k != "out"}, "records": records}
  (out / f"{stem}.json").write_text(json.dumps(saved, indent=1))
  (out / f"{stem}.md").write_text(markdown(records, saved))
  print((out / f"{stem}.md").read_text())
  return 0


def markdown(records, saved) -> str:
  lengths = sorted({r["seq_len"] for r in records})
  mixers = list(dict.fromkeys(r["mixer"] for r in records))
  by = {(r["mixer"], r["seq_len"]): r for r in records}
  s = saved["settings"]
  lines = [f"Device: {saved['device']}. Corpus: {saved['corpus']}; {s['steps']} steps of "
           f"{s['tokens_per_step']} tokens, width {s['width']}, 2 layers. Test perplexity of "
           "masked bytes (wall time of the run):", "",
           "| mixer | " + " | ".join(f"n = {n}" for n in lengths) + " |",
           "|---|" + "---|" * len(lengths)]
  for mixer in mixers:
    cells = [f"{by[(mixer, n)]['test_perplexity']:.3f} ({by[(mixer, n)]['wall_s']:.0f} s)"
             if (mixer, n) in by else "" for n in lengths]
    lines.append(f"| {mixer} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  sys.exit(main())
