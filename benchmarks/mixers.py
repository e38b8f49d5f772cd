"""Speed and memory of one encoder layer of each mechanism against sequence length.

    python benchmarks/mixers.py                # the full sweep, results/ named by device
    python benchmarks/mixers.py --quick        # 256 tokens, one repeat: a smoke run
    python benchmarks/mixers.py --dtype bfloat16

Each record times forward + backward (gradients of the parameters and the inputs) of one
`luna_jax.Encoder` layer (the mixer plus its feed-forward block) at the same width, heads
and batch for every mechanism, and reports XLA's compiled temporary memory, the achieved
GFLOP/s (XLA's FLOP count / time) and that rate over a matrix product measured in the
same run. The softmax Transformer runs through the attention path the library picks on
the platform (cuDNN's fused kernel on CUDA GPUs, else the chunked online softmax), named
in each of its records. A configuration whose compiled memory exceeds what the machine has free is
reported as out of memory rather than run (or skipped silently).
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
from luna_jax.mixers.transformer import attention_path

LINEAR_EXTRA = (32768,)


def mechanisms(seq_len: int) -> dict:
  """name -> Encoder keyword arguments."""
  return {
      "transformer": dict(mixer="transformer"),
      "luna-16": dict(mixer="luna", mixer_options={"proj_len": 16}),
      "luna-128": dict(mixer="luna", mixer_options={"proj_len": 128}),
      "luna-256": dict(mixer="luna", mixer_options={"proj_len": 256}),
      "luna-causal-16": dict(mixer="luna", mixer_options={"proj_len": 16}, causal=True),
      "linformer-128": dict(mixer="linformer",
                            mixer_options={"proj_len": 128, "max_len": seq_len}),
      "lightconv-31": dict(mixer="lightconv", mixer_options={"kernel_size": 31}),
      "dynamicconv-31": dict(mixer="dynamicconv", mixer_options={"kernel_size": 31}),
      "dynamicconv-31-unfold": dict(mixer="dynamicconv", mixer_options={
          "kernel_size": 31, "implementation": "unfold"}),
      "dynamicconv-31-band": dict(mixer="dynamicconv", mixer_options={
          "kernel_size": 31, "implementation": "band"}),
  }


def fwd_bwd(encoder):
  def loss(variables, x):
    y, _ = encoder.apply(variables, x)
    return jnp.sum(jnp.square(y.astype(jnp.float32)))

  return jax.grad(loss, argnums=(0, 1))


def measure(name, kwargs, seq_len, args, dtype, matmul_rate) -> dict:
  encoder = luna_jax.Encoder(num_layers=1, num_heads=args.heads, ffn_dim=4 * args.width,
                             dropout=0.0, attention_dropout=0.0, dtype=dtype, **kwargs)
  x = jnp.ones((args.batch, seq_len, args.width), dtype)
  variables = jax.jit(encoder.init)(jax.random.key(0), x)
  record = {"mixer": name, "seq_len": seq_len, "batch": args.batch, "width": args.width,
            "heads": args.heads, "dtype": args.dtype}
  if kwargs["mixer"] == "transformer":
    record["attention_path"] = attention_path(
        jax.devices()[0].platform, dropout_active=False, dtype=dtype,
        head_dim=args.width // args.heads)
  compiled, temp, flops = common.compile_step(fwd_bwd(encoder), variables, x)
  record.update(temp_bytes=temp, flops=flops)
  free = common.available_bytes()
  if temp > 0.8 * free:
    record.update(fwd_bwd_ms=None, status=f"out of memory: needs {temp / 2**30:.1f} GiB of "
                  f"temporaries, {free / 2**30:.1f} GiB free")
    return record
  ms = common.median_ms(compiled, variables, x, repeats=args.repeats)
  gflops = flops / (ms / 1e3) / 1e9 if flops else None
  record.update(fwd_bwd_ms=ms, gflops=gflops,
                fraction_of_matmul=None if gflops is None else gflops / matmul_rate,
                peak_rss_bytes=common.peak_rss_bytes(), status="ok")
  return record


def markdown(records, device, matmul_rate) -> str:
  names = list(dict.fromkeys(r["mixer"] for r in records))
  lengths = sorted({r["seq_len"] for r in records})
  by = {(r["mixer"], r["seq_len"]): r for r in records}
  base = {n: by.get(("transformer", n)) for n in lengths}
  paths = sorted({r["attention_path"] for r in records if r.get("attention_path")})
  lines = [f"Device: {device}; matrix product: {matmul_rate:.1f} GFLOP/s; softmax "
           f"attention path: {', '.join(paths) or 'not run'}.", "",
           "Forward + backward of one layer, ms (speed-up over the softmax Transformer; "
           "compiled temporary memory in MiB; fraction of the matmul rate):", "",
           "| mechanism | " + " | ".join(str(n) for n in lengths) + " |",
           "|---|" + "---|" * len(lengths)]
  for name in names:
    cells = []
    for n in lengths:
      r = by.get((name, n))
      if r is None:
        cells.append("")
      elif r["fwd_bwd_ms"] is None:
        cells.append(f"OOM ({r['temp_bytes'] / 2**20:.0f} MiB)")
      else:
        b = base.get(n)
        speed = (f" ({b['fwd_bwd_ms'] / r['fwd_bwd_ms']:.1f}x)"
                 if b and b.get("fwd_bwd_ms") and name != "transformer" else "")
        frac = r.get("fraction_of_matmul")
        cells.append(f"{r['fwd_bwd_ms']:.0f}{speed}; {r['temp_bytes'] / 2**20:.0f} MiB"
                     + (f"; {frac:.0%}" if frac else ""))
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(records, path: pathlib.Path, device: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
  for name in dict.fromkeys(r["mixer"] for r in records):
    rs = [r for r in records if r["mixer"] == name]
    ok = [r for r in rs if r["fwd_bwd_ms"] is not None]
    if ok:
      ax_t.plot([r["seq_len"] for r in ok], [r["fwd_bwd_ms"] for r in ok], "o-", label=name)
    ax_m.plot([r["seq_len"] for r in rs], [r["temp_bytes"] / 2**20 for r in rs], "o-", label=name)
  for ax, label in ((ax_t, "forward + backward (ms)"), (ax_m, "compiled temporaries (MiB)")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
  ax_t.legend(fontsize=7)
  fig.suptitle(f"One encoder layer, {device}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="256 tokens, one repeat")
  parser.add_argument("--lengths", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096, 8192, 16384])
  parser.add_argument("--linear_extra", type=int, nargs="*", default=list(LINEAR_EXTRA),
                      help="further lengths for the linear mechanisms only")
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  parser.add_argument("--mixers", nargs="*", help="a subset of mechanism names")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
  parser.add_argument("--report", help="rebuild the table and plot from a results JSON")
  args = parser.parse_args(argv)
  if args.report:
    path = pathlib.Path(args.report)
    saved = json.loads(path.read_text())
    path.with_suffix(".md").write_text(markdown(saved["records"], saved["device"],
                                                saved["matmul_gflops"]))
    plot(saved["records"], path.with_suffix(".png"), saved["device"])
    return 0
  lengths = list(args.lengths)
  linear_extra = list(args.linear_extra)
  if args.quick:
    lengths, linear_extra, args.repeats = [256], [], 1
    args.width, args.batch = 64, 1
  dtype = jnp.dtype(args.dtype)
  device = common.device_name()
  matmul_rate = common.matmul_gflops(512 if args.quick else 2048, dtype=dtype)
  print(f"{common.describe_device()}; matmul {matmul_rate:.1f} GFLOP/s", flush=True)
  records = []
  for seq_len in lengths + linear_extra:
    for name, kwargs in mechanisms(seq_len).items():
      if args.mixers and name not in args.mixers:
        continue
      if seq_len in linear_extra and name == "transformer":
        continue
      record = measure(name, kwargs, seq_len, args, dtype, matmul_rate)
      record["matmul_gflops"] = matmul_rate
      records.append(record)
      shown = "OOM" if record["fwd_bwd_ms"] is None else f"{record['fwd_bwd_ms']:.1f} ms"
      print(f"{name:24s} {seq_len:6d}  {shown:>12s}  temp {record['temp_bytes'] / 2**20:8.1f} MiB",
            flush=True)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = f"mixers_{device}_{args.dtype}" + ("_quick" if args.quick else "")
  if args.lengths != parser.get_default("lengths") and not args.quick:
    stem += "_" + "-".join(str(n) for n in lengths)
  (out / f"{stem}.json").write_text(json.dumps(
      {"device": common.describe_device(), "matmul_gflops": matmul_rate, "records": records},
      indent=1))
  (out / f"{stem}.md").write_text(markdown(records, common.describe_device(), matmul_rate))
  plot(records, out / f"{stem}.png", common.describe_device())
  print(f"wrote {out / stem}.{{json,md,png}}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
