"""The LRA configs: the authors' validation intervals and batch sizes, and the initial P."""

import math

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
