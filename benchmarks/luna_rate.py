"""Luna against the machine's own matrix-product rate, and against the strongest softmax.

    python benchmarks/luna_rate.py             # 1K-16K (softmax to 32K), results/ by device
    python benchmarks/luna_rate.py --quick     # short lengths, a smoke run

For each length n, in one run (batch 2, width 256, 4 heads, l = 16, float32 by default):
  projection   forward + backward of (B n, d) @ (d, d), both gradients: the rate Luna's
               work runs at (3 x 2 B n d^2 FLOPs);
  attention    `LunaAttention` forward + backward; its FLOPs 3 x (8 B n d^2 + 8 B n l d),
               reported as a fraction of the projection rate. That count is the
               project-first pack's; the attend-first pack (picked at l = 16) does the
               same job with fewer products, so the fraction can pass 1. XLA's count of
               the FLOPs actually executed, over the same rate, is recorded beside it
               ("executed_fraction");
  layer        a Luna encoder layer with its FFN (width 4d): 3 x (8 B n d^2 + 8 B n l d
               + 4 B n d f) FLOPs, likewise;
  causal       `LunaCausalAttention` forward + backward, as a ratio to `attention`;
  softmax      `MultiHeadAttention` forward + backward through the path the library picks
               on this platform (recorded), and through the explicit n x n path while it
               fits; Luna's speed-up is reported against the picked path;
and XLA's compiled temporaries of each. Timings: median of --repeats calls after a
warm-up (fewer for calls over 20 s). Each record states the attention path that ran.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

import luna_jax
from benchmarks import common

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _grad_of_sum(apply):
  def loss(variables, x):
    return jnp.sum(jnp.square(apply(variables, x).astype(jnp.float32)))

  return jax.grad(loss, argnums=(0, 1))


def _time(fn, args_, repeats, free_fraction=0.8) -> dict:
  compiled, temp, flops = common.compile_step(fn, *args_)
  if temp > free_fraction * common.available_bytes():
    return {"ms": None, "temp_bytes": temp, "xla_flops": flops, "status": "out of memory"}
  return {"ms": common.median_ms(compiled, *args_, repeats=repeats), "temp_bytes": temp,
          "xla_flops": flops, "status": "ok"}


def projection(b, n, d, dtype, repeats) -> dict:
  x = jnp.ones((b * n, d), dtype)
  w = jnp.ones((d, d), dtype)
  out = _time(jax.grad(lambda w, x: jnp.sum(jnp.square(x @ w)), argnums=(0, 1)), (w, x),
              repeats)
  out["gflops"] = 3 * 2 * b * n * d * d / (out["ms"] / 1e3) / 1e9
  return out


def module_record(module, b, n, d, dtype, repeats, **call) -> dict:
  x = jnp.ones((b, n, d), dtype)
  variables = jax.jit(module.init)(jax.random.key(0), x, **call)

  def apply(v, x):
    y = module.apply(v, x, **call)
    return y[0] if isinstance(y, tuple) else y

  return _time(_grad_of_sum(apply), (variables, x), repeats)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--lengths", type=int, nargs="*",
                      default=[1024, 2048, 4096, 8192, 16384])
  parser.add_argument("--softmax_extra", type=int, nargs="*", default=[32768],
                      help="further lengths for the picked softmax path only")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--proj_len", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args(argv)
  if args.quick:
    args.lengths, args.softmax_extra, args.repeats = [256, 512], [], 1
    args.width = 64
  b, d, h, l = args.batch, args.width, args.heads, args.proj_len
  f = 4 * d
  dtype = jnp.dtype(args.dtype)
  platform = jax.devices()[0].platform
  path = luna_jax.mixers.transformer.attention_path(platform, dropout_active=False)
  print(f"{common.describe_device()}; softmax path picked: {path}", flush=True)
  attention = luna_jax.LunaAttention(num_heads=h, dtype=dtype)
  causal = luna_jax.LunaCausalAttention(num_heads=h, dtype=dtype)
  layer = luna_jax.Encoder(mixer="luna", num_layers=1, num_heads=h, ffn_dim=f, dtype=dtype,
                           mixer_options={"proj_len": l})
  picked = luna_jax.MultiHeadAttention(num_heads=h, dtype=dtype)
  explicit = luna_jax.MultiHeadAttention(num_heads=h, dtype=dtype, implementation="explicit")
  p = jnp.ones((b, l, d), dtype)
  records = []
  for n in args.lengths + args.softmax_extra:
    r = {"seq_len": n, "batch": b, "width": d, "heads": h, "proj_len": l,
         "dtype": args.dtype, "softmax_path": path}
    if n in args.lengths:
      proj = projection(b, n, d, dtype, args.repeats)
      rate = proj["gflops"]
      r["projection"] = proj
      attn_flops = 3 * (8 * b * n * d * d + 8 * b * n * l * d)
      layer_flops = attn_flops + 3 * 4 * b * n * d * f
      r["attention"] = module_record(attention, b, n, d, dtype, args.repeats, p_BxLxD=p)
      r["layer"] = module_record(layer, b, n, d, dtype, args.repeats)
      r["causal"] = module_record(causal, b, n, d, dtype, args.repeats, p_BxLxD=p)
      for key, flops in (("attention", attn_flops), ("layer", layer_flops)):
        ms = r[key]["ms"]
        r[key]["fraction_of_projection_rate"] = flops / (ms / 1e3) / 1e9 / rate
        r[key]["executed_fraction"] = r[key]["xla_flops"] / (ms / 1e3) / 1e9 / rate
      r["causal"]["ratio_to_attention"] = r["causal"]["ms"] / r["attention"]["ms"]
      r["softmax_explicit"] = module_record(explicit, b, n, d, dtype, args.repeats)
    r["softmax"] = module_record(picked, b, n, d, dtype,
                                 args.repeats if n <= 4096 else 1)
    if "attention" in r and r["softmax"]["ms"]:
      r["luna_speedup_over_softmax"] = r["softmax"]["ms"] / r["attention"]["ms"]
    records.append(r)
    print(json.dumps(r), flush=True)
  by = {r["seq_len"]: r for r in records}
  longest = max([n for n in args.lengths if by[n]["softmax_explicit"]["ms"]] or [0])
  memory = {}
  if args.lengths and longest:
    top = max(args.lengths)
    memory = {
        "luna_attention_temp_at": top,
        "over_explicit_softmax_at": longest,
        "ratio_explicit": by[top]["attention"]["temp_bytes"]
                          / by[longest]["softmax_explicit"]["temp_bytes"],
        "ratio_picked": by[top]["attention"]["temp_bytes"]
                        / by[longest]["softmax"]["temp_bytes"]}
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = f"luna_rate_{common.device_name()}_{args.dtype}" + ("_quick" if args.quick else "")
  (out / f"{stem}.json").write_text(json.dumps(
      {"device": common.describe_device(), "records": records, "memory": memory}, indent=1))
  (out / f"{stem}.md").write_text(markdown(records, memory, common.describe_device()))
  print((out / f"{stem}.md").read_text())
  return 0


def _ms(entry) -> str:
  return "OOM" if entry is None or entry["ms"] is None else f"{entry['ms']:.0f}"


def markdown(records, memory, device) -> str:
  lines = [f"Device: {device}. Forward + backward, ms. Fractions are the issue's FLOP "
           "count (project-first Luna) over the time, of the projection matmul rate "
           "measured at the same length in the same run; in brackets the FLOPs XLA "
           "executed, likewise.", "",
           "| n | projection GFLOP/s | LunaAttention | Luna layer | causal / bidirectional "
           "| softmax (path) | Luna speed-up | explicit softmax |",
           "|---|---|---|---|---|---|---|---|"]
  for r in records:
    if "attention" not in r:
      lines.append(f"| {r['seq_len']} | | | | | {_ms(r['softmax'])} ({r['softmax_path']})"
                   " | | |")
      continue
    a, y, c = r["attention"], r["layer"], r["causal"]
    lines.append(
        f"| {r['seq_len']} | {r['projection']['gflops']:.0f} | {_ms(a)} "
        f"({a['fraction_of_projection_rate']:.0%} [{a['executed_fraction']:.0%}]) | "
        f"{_ms(y)} ({y['fraction_of_projection_rate']:.0%} [{y['executed_fraction']:.0%}]) | "
        f"{c['ratio_to_attention']:.2f} | "
        f"{_ms(r['softmax'])} ({r['softmax_path']}) | "
        f"{r.get('luna_speedup_over_softmax', float('nan')):.1f}x | "
        f"{_ms(r['softmax_explicit'])} |")
  if memory:
    lines += ["", f"Compiled temporaries: LunaAttention at {memory['luna_attention_temp_at']} "
              f"over softmax at {memory['over_explicit_softmax_at']}: "
              f"{memory['ratio_explicit']:.3f} (explicit path), "
              f"{memory['ratio_picked']:.3f} (picked path)."]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  sys.exit(main())
