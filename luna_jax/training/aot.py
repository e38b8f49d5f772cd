"""Compile-only runs: a config's programs compiled for a TPU slice that is not here.

    python train.py --config configs/lra_text.py --compile_topology v5e-8 --workdir W

builds the run exactly as training does (`Run`, `Trainer`: the data mesh axis, the
shardings, the donated state, the train and eval steps and, for translation, the
generation function), with the mesh made of the slice's compile-only devices
(`topology`) instead of `jax.devices()`. It lowers them on abstract arguments (no data
is read, nothing runs), compiles them with the real TPU compiler and reports, per chip,
what XLA's memory analysis says: the arguments (parameters and optimiser state, the
batch), the temporaries and the peak, against the chip's HBM; the matrix-product FLOPs
counted from the program (`flops`); the compile time. The report is printed and written
to W/compile_report.json. A config that does not fit is compiled again with what would
make it fit (rematerialisation, gradient accumulation, bfloat16), measured the same way.

This is what MaxText's train_compile.py and axlearn's AOT compilation do: check that a
model fits before anyone rents a TPU.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from luna_jax import platform, registry
from luna_jax.training import model_config
from luna_jax.training import flops as flops_lib
from luna_jax.training import topology as topology_lib
from luna_jax.training.loop import Trainer
from luna_jax.training.pretrain import finetuning_config, pretraining_config
from luna_jax.training.run import Run
from luna_jax.training.workloads import workload_of

REPORT_FILE = "compile_report.json"


@dataclasses.dataclass
class Program:
  """One compiled program's per-chip figures (bytes, FLOPs, seconds)."""

  name: str
  compile_s: float
  argument_bytes: int
  output_bytes: int
  alias_bytes: int  # outputs written in place of donated arguments
  temp_bytes: int
  code_bytes: int
  flops_per_chip: float  # matrix products counted from the program (`flops`)
  xla_flops_per_chip: float  # XLA's cost analysis (a loop's body counted once)

  @property
  def peak_bytes(self) -> int:
    """Arguments, outputs not written in place, temporaries and the program's code."""
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)


def _compile(name: str, jitted, args: tuple, chips: int, count_fn=None) -> Program:
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  counted = flops_lib.count(count_fn or jitted, *args).flops
  return Program(
      name=name, compile_s=seconds, argument_bytes=memory.argument_size_in_bytes,
      output_bytes=memory.output_size_in_bytes, alias_bytes=memory.alias_size_in_bytes,
      temp_bytes=memory.temp_size_in_bytes,
      code_bytes=memory.generated_code_size_in_bytes, flops_per_chip=counted / chips,
      xla_flops_per_chip=float((cost or {}).get("flops", 0.0)))


def _tree_bytes(tree) -> int:
  return int(sum(np.prod(a.shape) * jnp.dtype(a.dtype).itemsize
                 for a in jax.tree.leaves(tree)))


def _abstract_batch(trainer: Trainer) -> dict:
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=trainer.batch_sharding)
          for k, (shape, dtype) in trainer.run.batch_spec().items()}


def compile_programs(trainer: Trainer, train_only: bool = False) -> list[Program]:
  """The run's train step, eval step and (translation) generation, compiled."""
  run, chips = trainer.run, trainer.run.mesh.size
  state, batch = trainer.abstract_state, _abstract_batch(trainer)
  programs = [_compile("train_step", trainer.train_step, (state, batch), chips)]
  if train_only:
    return programs
  index = jax.ShapeDtypeStruct((), jnp.int32, sharding=trainer.replicated)
  programs.append(_compile("eval_step", trainer.eval_step, (state.params, batch, index),
                           chips))
  for name, fn, args in run.workload.extra_programs(trainer, batch):
    programs.append(_compile(name, jax.jit(fn), args, chips, count_fn=fn))
  return programs


def attention_path(config) -> str:
  """The softmax self-attention path the config's programs compile for TPU (the mixer's
  `softmax_path`; "none" for mixers without softmax)."""
  m = config.model
  spec = registry.get_mixer(m.name)
  if spec.softmax_path is None:
    return f"none ({m.name} has no softmax self-attention)"
  settings = model_config.mixer_settings(config)
  dtype = model_config.DTYPES[m.dtype]
  head_dim = m.d_model // m.num_heads
  train = spec.softmax_path(settings, "tpu", m.attention_dropout > 0, dtype, head_dim)
  evaluate = spec.softmax_path(settings, "tpu", False, dtype, head_dim)
  return train if train == evaluate else f"{train} (training), {evaluate} (evaluation)"


def _x64(enabled: bool):
  """Traced in 32 bits as train.py runs, whatever the process's setting (the float64
  mode of the tests gives int64 indices, on which libtpu's compiler aborts)."""
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(enabled)
  from jax.experimental import disable_x64, enable_x64  # JAX before 0.7

  return enable_x64() if enabled else disable_x64()


def measure(config, topology: topology_lib.Topology, devices=None, train_only: bool = False,
            workdir="compile_only") -> tuple[Run, Trainer, list[Program], float]:
  """(run, trainer, programs, seconds) of the config compiled for the topology."""
  start = time.perf_counter()
  devices = topology.devices() if devices is None else devices
  with platform.compiling_for("tpu"), _x64(False):
    run = Run.create(config, workdir, devices=devices, compile_only=True)
    trainer = Trainer(run)
    programs = compile_programs(trainer, train_only)
  return run, trainer, programs, time.perf_counter() - start


def _candidates(config, chips: int):
  """Settings that lower a step's memory, each tried on top of the previous:
  rematerialisation, then halving the micro-batch down to one example per chip, then
  bfloat16 computation."""
  changes = {}
  if not config.model.remat:
    changes["model.remat"] = True
    yield dict(changes)
  accum = config.optimizer.grad_accum_steps
  rows = workload_of(config).uses_rows  # token batches split by their own max_tokens
  while rows and config.batch_size % (chips * accum * 2) == 0:
    accum *= 2
    changes["optimizer.grad_accum_steps"] = accum
    yield dict(changes)
  if config.model.dtype != "bfloat16":
    changes["model.dtype"] = "bfloat16"
    yield dict(changes)


def with_changes(config, changes: dict):
  """A copy of config with dotted keys set."""
  new = copy.deepcopy(config)
  with new.unlocked():
    for key, value in changes.items():
      node = new
      *path, last = key.split(".")
      for part in path:
        node = node[part]
      node[last] = value
  return new


def suggest(config, topology, devices, budget_bytes: int) -> dict | None:
  """The first settings of `_candidates` whose train step's peak per chip is within
  budget_bytes, with that peak; None if none is."""
  for changes in _candidates(config, topology.chips):
    _, _, (program,), _ = measure(with_changes(config, changes), topology, devices,
                                  train_only=True)
    if program.peak_bytes <= budget_bytes:
      return {"changes": changes, "train_step_peak_bytes": program.peak_bytes,
              "flags": " ".join(f"--config.{k}={v}" for k, v in changes.items())}
  return None


def stages(config) -> list[tuple[str, object]]:
  """(program name prefix, config) of each stage a run trains: with
  config.pretrain.objective, the pre-training ("pretrain/") and the fine-tuning stage."""
  if not config.pretrain.objective:
    return [("", config)]
  return [("pretrain/", pretraining_config(config)),
          ("", finetuning_config(config, "pretrain"))]


def report(config, topology_name: str, num_slices: int = 1, workdir=None,
           config_name: str = "") -> dict:
  """Compiles the config for the topology (a name such as "v5e-8", or "local": the TPU
  devices attached to this process); returns (and writes to workdir/compile_report.json,
  when workdir is given) the report."""
  if topology_name == "local":  # the attached TPU devices, compiled for as they are
    devices = jax.devices()
    topology = topology_lib.local(devices)
  else:
    topology = topology_lib.parse(topology_name, num_slices)
    devices = topology.devices()
  programs, seconds = [], 0.0
  for prefix, stage in stages(config):
    run, trainer, compiled, stage_s = measure(stage, topology, devices,
                                              workdir=workdir or "compile_only")
    programs += [dataclasses.replace(p, name=prefix + p.name) for p in compiled]
    seconds += stage_s
  spec = run.batch_spec()
  peak = max(p.peak_bytes for p in programs)
  state_bytes = _tree_bytes(trainer.abstract_state)  # replicated: whole on every chip
  params_bytes = _tree_bytes(trainer.abstract_state.params)
  c = run.config  # the last stage's
  out = {
      "config": config_name, "topology": topology.name, "num_slices": num_slices,
      "chips": topology.chips, "hosts": topology.hosts,
      "device_kind": devices[0].device_kind, "hbm_bytes_per_chip": topology.hbm_bytes,
      "compiled_as": f"process 0 of {topology.hosts}",
      "task": c.task, "mechanism": c.model.name,
      "objective": "+".join(filter(None, (config.pretrain.objective, c.objective))),
      "max_len": c.max_len if run.workload.uses_rows else None,
      "batch_spec": {k: list(shape) for k, (shape, _) in spec.items()},
      "examples_per_chip": next(iter(spec.values()))[0][0] // topology.chips,
      "grad_accum_steps": c.optimizer.grad_accum_steps, "dtype": c.model.dtype,
      "remat": bool(c.model.remat), "prng_impl": trainer.prng_impl,
      "attention_path": attention_path(c),
      "params": int(sum(np.prod(a.shape) for a in jax.tree.leaves(
          trainer.abstract_state.params))),
      "params_bytes_per_chip": params_bytes, "state_bytes_per_chip": state_bytes,
      "programs": [dataclasses.asdict(p) | {"peak_bytes": p.peak_bytes} for p in programs],
      "peak_bytes_per_chip": peak, "fits": peak <= topology.hbm_bytes,
      "total_s": seconds,
      "jax": jax.__version__,
  }
  if not out["fits"]:
    out["would_fit"] = suggest(config, topology, devices, topology.hbm_bytes)
  if workdir is not None:
    path = pathlib.Path(workdir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    (path / REPORT_FILE).write_text(json.dumps(out, indent=2))
  return out


def _gib(n: float) -> str:
  return f"{n / 2**30:.2f}"


def _size(n: float) -> str:
  """Bytes in GiB, or MiB below 1 GiB."""
  return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def describe(r: dict) -> str:
  """The report as a table and a verdict."""
  hbm = r["hbm_bytes_per_chip"]
  slices = f" x {r['num_slices']} slices" if r["num_slices"] > 1 else ""
  lines = [
      f"{r['config'] or r['task']} ({r['mechanism']}, {r['objective']}) compiled for "
      f"{r['topology']}{slices}: {r['chips']} {r['device_kind']} chips of {_gib(hbm)} GiB, "
      f"{r['hosts']} host(s), as {r['compiled_as']}; {r['examples_per_chip']} example(s) "
      f"per chip, {r['dtype']}, remat {'on' if r['remat'] else 'off'}, dropout keys "
      f"{r['prng_impl']}; softmax attention path: {r['attention_path']}.",
      f"{'per chip':<22}{'compile s':>10}{'arguments':>12}{'temporaries':>13}{'peak':>12}"
      f"{'of HBM':>8}{'GFLOP':>10}",
  ]
  for p in r["programs"]:
    lines.append(
        f"{p['name']:<22}{p['compile_s']:>10.1f}{_size(p['argument_bytes']):>12}"
        f"{_size(p['temp_bytes']):>13}{_size(p['peak_bytes']):>12}"
        f"{p['peak_bytes'] / hbm:>8.1%}{p['flops_per_chip'] / 1e9:>10.1f}")
  lines.append(f"parameters {r['params']:,} ({_size(r['params_bytes_per_chip'])}); with the "
               f"optimiser state {_size(r['state_bytes_per_chip'])} per chip.")
  verdict = "fits" if r["fits"] else "does NOT fit"
  lines.append(f"{verdict}: peak {_size(r['peak_bytes_per_chip'])} of {_gib(hbm)} GiB per "
               f"chip; compiled in {r['total_s']:.0f} s.")
  if not r["fits"]:
    fix = r.get("would_fit")
    lines.append(f"would fit with {fix['flags']} (train step peak "
                 f"{_size(fix['train_step_peak_bytes'])})" if fix else
                 "nothing tried fits (remat, gradient accumulation to one example per chip, "
                 "bfloat16): use a larger slice or a smaller model.")
  return "\n".join(lines)

