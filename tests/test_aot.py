"""Compile-only runs for TPU slices (luna_jax.training.aot), with the real TPU compiler of
the libtpu package and no TPU; and the FLOP counter they report with."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from configs import lra_text
from luna_jax import errors
from luna_jax.training import aot, flops, topology

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The Text cpu variant (2 layers) at width 128 and 512 tokens. Not width 64: TPU arrays
# are tiled by (8, 128), so at width 64 the state takes 1.46x its bytes on the chip
# (2.65 MB of arguments for 1.82 MB of parameters and Adam moments); at 128, 1.003x.
WIDTH_128 = {"max_len": 512, "model.d_model": 128, "model.ffn_dim": 256,
             "model.classifier_hidden": 128}
SMALL = ["--config", "configs/lra_text.py:cpu", *(f"--config.{k}={v}" for k, v in
                                                  WIDTH_128.items())]


def _small_config():
  return aot.with_changes(lra_text.get_config("cpu"), WIDTH_128)


def _assert_arguments_are_the_state(report):
  """The train step's per-chip arguments are the replicated parameters and optimiser
  state (counted from the tree) and this chip's share of the batch."""
  train = report["programs"][0]
  assert train["name"] == "train_step"
  state = report["state_bytes_per_chip"]
  assert abs(train["argument_bytes"] - state) <= 0.1 * state, (train, state)
  assert train["alias_bytes"] >= 0.9 * state  # the donated state is updated in place
  assert report["fits"] and report["peak_bytes_per_chip"] < report["hbm_bytes_per_chip"]


def test_train_py_compiles_for_v5e_8_and_writes_the_report(tmp_path):
  result = subprocess.run(
      [sys.executable, "train.py", *SMALL, "--compile_topology", "v5e-8",
       "--workdir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "fits: peak" in result.stdout and "train_step" in result.stdout, result.stdout
  report = json.loads((tmp_path / aot.REPORT_FILE).read_text())
  assert report["topology"] == "v5e-8" and report["chips"] == 8 and report["hosts"] == 1
  assert report["device_kind"].startswith("TPU v5")
  assert report["hbm_bytes_per_chip"] == 16 * 2**30
  assert [p["name"] for p in report["programs"]] == ["train_step", "eval_step"]
  assert report["examples_per_chip"] == 32 // 8
  assert report["prng_impl"] == "rbg"  # config.prng_impl=auto on TPU
  _assert_arguments_are_the_state(report)
  # The count covers every layer's products: more than the 6 * params * tokens rule for
  # the layers alone, less than twice the total.
  # 6 multiply-adds per weight and token for the layers (2 forward, 4 backward), and
  # the layers hold most of the weights (the position table does no products).
  tokens = 32 * 512 / 8
  train = report["programs"][0]["flops_per_chip"]
  assert 2 * report["params"] * tokens < train < 8 * report["params"] * tokens


def test_compiles_as_one_process_of_a_two_host_slice(tmp_path):
  config = _small_config()
  config.model.name = "transformer"
  report = aot.report(config, "v4-16", workdir=tmp_path)
  assert report["chips"] == 8 and report["hosts"] == 2
  assert report["compiled_as"] == "process 0 of 2"
  assert report["device_kind"] == "TPU v4"
  assert report["hbm_bytes_per_chip"] == 32 * 2**30
  assert report["attention_path"] == "chunked"
  _assert_arguments_are_the_state(report)
  assert "does NOT fit" not in aot.describe(report)


def test_a_config_that_does_not_fit_is_told_what_would():
  """A budget just under the step's peak: remat fits it, measured by compiling it."""
  config = _small_config()
  slice_ = topology.parse("v5e-8")
  devices = slice_.devices()
  _, _, (train,), _ = aot.measure(config, slice_, devices, train_only=True)
  suggestion = aot.suggest(config, slice_, devices, train.peak_bytes - 1)
  assert suggestion["changes"] == {"model.remat": True}
  assert suggestion["flags"] == "--config.model.remat=True"
  # One layer's activations kept instead of both layers'.
  assert suggestion["train_step_peak_bytes"] < train.peak_bytes


@pytest.mark.parametrize("name, chips, hosts, shape", [
    ("v5e-1", 1, 1, (1, 1)), ("v5e-8", 8, 1, (2, 4)), ("v5e-16", 16, 4, (4, 4)),
    ("v6e-8", 8, 1, (2, 4)), ("v4-8", 4, 1, (2, 2, 1)), ("v4-16", 8, 2, (2, 2, 2)),
    ("v5p-8", 4, 1, (2, 2, 1)),
])
def test_topology_names_as_maxtext_writes_them(name, chips, hosts, shape):
  topo = topology.parse(name)
  assert (topo.chips, topo.hosts, topo.shape) == (chips, hosts, shape)
  assert topology.parse(name, num_slices=2).chips == 2 * chips


@pytest.mark.parametrize("name, phrase", [
    ("v5e-3", "known sizes: v5e-1, v5e-4"), ("v4-9", "2 per chip"), ("tpu8", "e.g. v5e-1"),
])
def test_unknown_topologies_are_config_errors(name, phrase):
  with pytest.raises(errors.ConfigError, match=phrase):
    topology.parse(name)


def test_flops_count_loops_branches_and_recomputation():
  a = jax.ShapeDtypeStruct((4, 8, 16), jnp.float32)
  b = jax.ShapeDtypeStruct((16, 32), jnp.float32)
  one = 2 * 8 * 16 * 32  # one (8, 16) x (16, 32) product

  def scanned(a, b):
    return jax.lax.scan(lambda c, x: (c, x @ b), 0, a)[1]

  assert flops.count(scanned, a, b).flops == 4 * one
  fori = jax.jit(lambda a, b: jax.lax.fori_loop(0, 3, lambda i, c: c + a @ b,
                                                jnp.zeros((4, 8, 32))))
  assert flops.count(fori, a, b).flops == 3 * 4 * one
  cond = lambda a, b: jax.lax.cond(a[0, 0, 0] > 0, lambda: (a @ b) @ b.T, lambda: a)  # noqa
  assert flops.count(cond, a, b).flops == 2 * 4 * one
  # The gradient of a rematerialised product: forward, recomputed forward, d/da.
  remat = jax.grad(lambda a, b: jnp.sum(jax.checkpoint(lambda a: jnp.sin(a @ b))(a)))
  assert flops.count(remat, a, b).flops == 3 * 4 * one
  loop = lambda a, b: jax.lax.while_loop(lambda c: c[0, 0, 0] < 5, lambda c: c + a @ b,  # noqa
                                         jnp.zeros((4, 8, 32)))
  count = flops.count(loop, a, b)
  assert count.flops == 4 * one and count.unbounded_loops == 1


def test_flops_count_convolutions():
  x = jax.ShapeDtypeStruct((2, 10, 6), jnp.float32)  # N W C
  w = jax.ShapeDtypeStruct((3, 2, 6), jnp.float32)  # W I O with 3 groups of 2 channels
  conv = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=3)
  assert flops.count(conv, x, w).flops == 2 * (2 * 10 * 6) * (3 * 2)


def test_prng_and_remat_settings_reach_the_trainer():
  """auto draws dropout keys with the TPU's generator when compiling for one, and
  threefry2x32 when asked; remat reaches the encoder."""
  from luna_jax import platform
  from luna_jax.training import Run, Trainer

  devices = topology.parse("v5e-4").devices()
  for prng, words in (("auto", 4), ("threefry2x32", 2)):
    config = aot.with_changes(_small_config(), {"prng_impl": prng, "model.remat": True})
    with platform.compiling_for("tpu"):
      trainer = Trainer(Run.create(config, "unused", devices=devices))
    assert trainer.abstract_state.rng.shape == (words,)
    assert trainer.run.model.encoder["remat"] is True
    assert trainer.run.mesh.devices.shape == (4,)


class _FakeDevice:
  def __init__(self, kind):
    self.device_kind = kind


@pytest.mark.parametrize("kind, count, name, hbm_gib", [
    ("TPU v5 lite", 1, "v5e-1", 16), ("TPU v5 lite", 8, "v5e-8", 16),
    ("TPU v4", 4, "v4-8", 32), ("TPU v6 lite", 8, "v6e-8", 32), ("TPU v5", 4, "v5p-8", 95),
])
def test_attached_tpus_are_named_by_kind_and_count(kind, count, name, hbm_gib):
  topo = topology.local([_FakeDevice(kind)] * count)
  assert topo.name == name and topo.hbm_bytes == hbm_gib * 2**30 and topo.chips == count
  with pytest.raises(errors.ConfigError, match="no HBM figure"):
    topology.local([_FakeDevice("TPU v2")])
