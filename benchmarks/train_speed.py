"""Whole training steps of the byte-level Text model at 1K-4K tokens: Luna vs softmax.

    python benchmarks/train_speed.py [--batch 32] [--quick]

The experiment of the LRA and Luna papers' speed tables: the configs/lra_text.py model
(4 layers, width 256, 4 heads, FFN 1024) trained by the same compiled step as train.py,
on random tokens, at 1K, 2K, 3K and 4K tokens. Reports steps per second (median of timed
steps after compilation and a warm-up), XLA's compiled temporary memory of the step, and
both relative to the softmax Transformer, whose attention (with the config's attention
dropout) runs through the path the library picks on the platform, named in its records,
and the machine's matrix-product rate measured in the same run. The papers used batch 32 on a TPU v3; on a CPU
the default batch is 2.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from configs import lra_text
from luna_jax.mixers.transformer import attention_path
from luna_jax.training import build_model, objectives
from luna_jax.training.optim import make_optimizer
from luna_jax.training.steps import create_state, make_train_step

MECHANISMS = {"transformer": {"model.name": "transformer"},
              "luna-16": {"model.name": "luna", "model.luna.proj_len": 16},
              "luna-256": {"model.name": "luna", "model.luna.proj_len": 256}}


def step_time(overrides: dict, seq_len: int, batch: int, repeats: int, dtype: str, tiny: bool):
  config = lra_text.get_config("cpu" if tiny else "")
  config.max_len = seq_len
  config.model.dtype = dtype
  config.model.name = overrides["model.name"]
  if "model.luna.proj_len" in overrides:
    config.model.luna.proj_len = overrides["model.luna.proj_len"]
  model = build_model(config)
  tx = make_optimizer(config.optimizer, config.num_train_steps)
  state = create_state(model, tx, 0, jnp.zeros((1, seq_len), jnp.int32))
  rng = np.random.default_rng(0)
  batch_arrays = {"inputs": jnp.asarray(rng.integers(1, 257, (batch, seq_len)), jnp.int32),
                  "label": jnp.asarray(rng.integers(0, 2, batch), jnp.int32),
                  "weight": jnp.ones((batch,), jnp.float32)}
  step = make_train_step(model, tx, objectives.Classification(2))
  compiled, temp, flops = common.compile_step(step, state, batch_arrays)
  ms = common.median_ms(compiled, state, batch_arrays, repeats=repeats)
  path = None
  if config.model.name == "transformer":
    path = attention_path(jax.devices()[0].platform,
                          dropout_active=config.model.attention_dropout > 0,
                          dtype=jnp.dtype(dtype),
                          head_dim=config.model.d_model // config.model.num_heads)
  return 1e3 / ms, temp, flops, path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", type=int, nargs="*", default=[1024, 2048, 3072, 4096])
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  parser.add_argument("--quick", action="store_true", help="the cpu-variant model, 256/512 tokens")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
  args = parser.parse_args(argv)
  if args.batch is None:
    args.batch = 2 if jax.default_backend() == "cpu" else 32
  mechanisms = MECHANISMS
  if args.quick:
    args.lengths, args.repeats, args.batch = [256, 512], 1, 2
    mechanisms = {k: MECHANISMS[k] for k in ("transformer", "luna-16")}
  matmul_rate = common.matmul_gflops(512 if args.quick else 2048,
                                     dtype=jnp.dtype(args.dtype))
  print(f"{common.describe_device()}; matmul {matmul_rate:.1f} GFLOP/s", flush=True)
  records = []
  for seq_len in args.lengths:
    for name, overrides in mechanisms.items():
      steps_per_s, temp, flops, path = step_time(overrides, seq_len, args.batch, args.repeats,
                                           args.dtype, args.quick)
      records.append({"mechanism": name, "seq_len": seq_len, "batch": args.batch,
                      "steps_per_s": steps_per_s, "temp_bytes": temp, "flops": flops,
                      "dtype": args.dtype, "attention_path": path,
                      "matmul_gflops": matmul_rate})
      print(f"{name:12s} {seq_len:6d}  {steps_per_s:8.3f} steps/s  temp "
            f"{temp / 2**20:9.1f} MiB", flush=True)
  base = {r["seq_len"]: r for r in records if r["mechanism"] == "transformer"}
  paths = sorted({r["attention_path"] for r in records if r["attention_path"]})
  lines = [f"Device: {common.describe_device()}; matrix product {matmul_rate:.1f} GFLOP/s; "
           f"Text model (configs/lra_text.py{':cpu' if args.quick else ''}), batch "
           f"{args.batch}, {args.dtype}; softmax attention path in training: "
           f"{', '.join(paths)}.", "",
           "| mechanism | " + " | ".join(f"{n} tokens" for n in args.lengths) + " |",
           "|---|" + "---|" * len(args.lengths)]
  for name in mechanisms:
    cells = []
    for n in args.lengths:
      r = next(r for r in records if r["mechanism"] == name and r["seq_len"] == n)
      b = base[n]
      cells.append(f"{r['steps_per_s']:.2f} steps/s ({r['steps_per_s'] / b['steps_per_s']:.1f}x), "
                   f"{r['temp_bytes'] / 2**20:.0f} MiB ({r['temp_bytes'] / b['temp_bytes']:.2f}x)")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = f"train_speed_{common.device_name()}_{args.dtype}" + ("_quick" if args.quick else "")
  (out / f"{stem}.json").write_text(json.dumps({"device": common.describe_device(),
                                                "records": records}, indent=1))
  (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
