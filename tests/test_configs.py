"""The LRA configs: the authors' validation intervals and batch sizes, the initial P, settings
derived from the run (Linformer's max_len) and loading them by path, as train.py does."""

import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import lra_image, lra_listops, lra_pathfinder, lra_pathx, lra_retrieval, lra_text
from luna_jax.training.config import build_model, validate

# The authors' --save-interval-updates (ListOps, Text, Retrieval) or one epoch (Image:
# 45,000 train examples, Pathfinder and Path-X: 160,000), at their batch sizes.
EXPECTED = {
    lra_listops: (32, 20),
    lra_text: (32, 100),
    lra_retrieval: (32, 2000),
    lra_image: (256, math.ceil(45_000 / 256)),
    lra_pathfinder: (256, 160_000 // 256),
    lra_pathx: (256, 160_000 // 256),
}
CONFIGS = list(EXPECTED)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(module):
  return module.__name__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("module", CONFIGS, ids=_name)
def test_validation_interval_and_batch_are_the_authors(module):
  c = module.get_config()
  batch, interval = EXPECTED[module]
  assert (c.batch_size, c.eval_every) == (batch, interval)
  # The latest checkpoint is written with each validation, so it holds the best record.
  assert c.checkpoint_every == c.eval_every
  validate(c, num_devices=1)


def test_pathfinder_keeps_the_authors_updates_at_batch_256():
  for module in (lra_pathfinder, lra_pathx):
    c = module.get_config()
    assert (c.batch_size, c.num_train_steps, c.optimizer.warmup_steps) == (256, 62_500, 4000)
  assert lra_image.get_config().eval_every == 176  # ceil(45,000 / 256), about one epoch
  assert lra_pathfinder.get_config().eval_every == 625  # exactly one epoch


CPU_EVAL_EVERY = {lra_listops: 100, lra_text: 100, lra_retrieval: 100, lra_image: 100,
                  lra_pathfinder: 100, lra_pathx: 25}


@pytest.mark.parametrize("module", CONFIGS, ids=_name)
def test_cpu_variants_keep_their_own_intervals_and_validate(module):
  c = module.get_config("cpu")
  assert c.eval_every == c.checkpoint_every == CPU_EVAL_EVERY[module]
  assert c.num_train_steps % c.eval_every == 0
  validate(c, num_devices=1)


@pytest.mark.parametrize("module", CONFIGS, ids=_name)
def test_a_max_len_override_reaches_the_linformer_projections(module):
  """`--config.max_len=N` on the locked config: Linformer's E/F then take N positions."""
  c = module.get_config()
  c.lock()
  n = c.max_len + 64  # longer than the config's own length
  c.update_from_flattened_dict({"max_len": n, "model.name": "linformer"})
  validate(c, num_devices=1)
  model = build_model(c)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(
      (1, 2, n) if c.task == "retrieval" else (1, n), np.int32))["params"]
  k = c.model.linformer.proj_len
  projections = [a.shape for a in jax.tree.leaves(shapes) if a.ndim == 3 and a.shape[1] == k]
  assert projections and all(shape[-1] == n for shape in projections), projections


def test_configs_load_by_path_from_any_directory(tmp_path):
  """As train.py loads them (ml_collections reads the file by path), from another directory
  and without PYTHONPATH: lra_pathx.py imports lra_pathfinder.py from the installed package."""
  script = ("import sys\nfrom absl import flags\nfrom ml_collections import config_flags\n"
            "config = config_flags.DEFINE_config_file('config', lock_config=True)\n"
            "flags.FLAGS(sys.argv)\n"
            "print(config.value.task, config.value.max_len, config.value.batch_size)\n")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  loaded = subprocess.run(
      [sys.executable, "-c", script, f"--config={ROOT / 'configs' / 'lra_pathx.py'}:cpu",
       "--config.max_len=4098"], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert loaded.returncode == 0, loaded.stderr
  assert loaded.stdout.split() == ["pathx", "4098", "8"]


@pytest.mark.parametrize("module", CONFIGS, ids=_name)
def test_an_unknown_variant_names_the_file_and_the_known_ones(module):
  with pytest.raises(ValueError, match=rf"unknown variant 'tpu' of {_name(module)}.py; "
                     "known: cpu"):
    module.get_config("tpu")


@pytest.mark.parametrize("module", [lra_listops, lra_text], ids=_name)
def test_bert_init_configs_keep_p_at_d_to_the_minus_half(module):
  """The authors' LRA encoder does not re-draw P under --apply-bert-init; only their
  pre-training encoder does (model.luna.p_init="bert")."""
  c = module.get_config()
  assert c.model.init_style == "bert" and c.model.luna.p_init == "normal_d"
  tokens = np.ones((1, 8), np.int32)

  def p_std(config):
    params = build_model(config).init(jax.random.key(0), tokens)["params"]
    return float(np.std(params["encoder"]["p_embed"]))

  d = c.model.d_model
  c.model.luna.proj_len = 64  # 64 d draws: the std is known to about 1%
  assert abs(p_std(c) - d**-0.5) < 0.05 * d**-0.5
  c.model.luna.p_init = "bert"
  assert abs(p_std(c) - 0.02) < 0.05 * 0.02
  c.model.luna.p_init = "uniform"
  with pytest.raises(ValueError, match="model.luna.p_init='uniform' is not one of"):
    validate(c, num_devices=1)


# The authors' WMT'14 En-De updates: (tokens per GPU, GPUs, --update-freq), from
# examples/luna/README.wmt.md (XuezheMax/fairseq-apollo) and
# examples/pay_less_attention_paper/README.md (facebookresearch/fairseq).
WMT_UPDATES = {"luna": (8192, 8, 1), "lightconv_big": (3584, 8, 16),
               "dynamicconv_big": (3584, 8, 16)}


@pytest.mark.parametrize("variant", list(WMT_UPDATES))
def test_wmt_updates_hold_the_authors_tokens(variant):
  """translation.max_tokens is one update's tokens over all devices and micro-batches; on
  the authors' GPU count, grad_accum_steps = their --update-freq gives each device's
  micro-batch their per-GPU tokens."""
  from configs import wmt14_en_de
  from luna_jax.data.translation import bucket_lengths, rows_per_batch

  per_gpu, gpus, update_freq = WMT_UPDATES[variant]
  c = wmt14_en_de.get_config(variant)
  c.translation_dir = "/nonexistent"  # a compile-only check needs no data
  t, o = c.translation, c.optimizer
  assert t.max_tokens == per_gpu * gpus * update_freq
  assert o.grad_accum_steps == update_freq
  validate(c, num_devices=gpus, compile_only=True)
  micro_batches = gpus * o.grad_accum_steps  # what one update's rows divide into
  for length in bucket_lengths(max(t.max_source_len, t.max_target_len)):
    rows = rows_per_batch(length, t.max_tokens, micro_batches)
    assert rows * length <= t.max_tokens
    assert rows // micro_batches * length <= per_gpu  # one device's micro-batch
  # On one device, update_freq x gpus micro-batches keep the same micro-batch.
  c.optimizer.grad_accum_steps = update_freq * gpus
  validate(c, num_devices=1, compile_only=True)


def test_the_luna_wmt_recipe_is_the_authors():
  """examples/luna/README.wmt.md: --optimizer apollo --lr 0.1 --apollo-beta 0.9
  --apollo-eps 1e-4 --clip-norm 0.1 --clip-mode each --lr-scheduler milestone
  --lr-decay-rate 0.1 --milestones 300000 450000 --warmup-updates 1000 --warmup-init-lr
  1e-5 --weight-decay 1e-8 --weight-decay-type L2 --max-update 500000
  --best-checkpoint-metric ppl."""
  from configs import wmt14_en_de

  c = wmt14_en_de.get_config("luna")
  o = c.optimizer
  assert (o.name, o.learning_rate, o.apollo.beta, o.apollo.eps) == ("apollo", 0.1, 0.9, 1e-4)
  assert (o.grad_clip_norm, o.clip_mode) == (0.1, "each")
  assert (o.schedule, tuple(o.milestones), o.gamma) == ("milestone", (300_000, 450_000), 0.1)
  assert (o.warmup_steps, o.warmup_init_lr, o.apollo.warmup_steps) == (1000, 1e-5, 0)
  assert (o.weight_decay, o.apollo.weight_decay_type) == (1e-8, "L2")
  assert (c.num_train_steps, c.translation.select, c.eval_every) == (500_000, "loss", 5000)
  big = wmt14_en_de.get_config("lightconv_big")
  assert (big.optimizer.name, big.optimizer.schedule, big.optimizer.learning_rate) == (
      "adamw", "cosine", 1e-3)
  assert (big.optimizer.warmup_steps, big.num_train_steps) == (10_000, 30_000)
  cpu = wmt14_en_de.get_config("cpu")  # the measured offline run keeps its Adam
  assert (cpu.optimizer.name, cpu.optimizer.schedule, cpu.optimizer.grad_clip_norm) == (
      "adamw", "inverse_sqrt", 0.0)
