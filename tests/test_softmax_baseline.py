"""The softmax baseline: MultiHeadAttention and the pre-LN Transformer layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from luna_jax import common
from luna_jax.mixers.transformer import _attend_with_query_mask
from tests import numpy_reference as ref
from tests.helpers import random_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_numpy_reference(causal):
  rng = np.random.default_rng(int(causal))
  x = rng.normal(size=(3, 10, 12))
  mask = random_mask(rng, 3, 10)
  mask[:, 0] = True  # every causal query keeps one visible key
  module = luna_jax.MultiHeadAttention(num_heads=3, causal=causal, **F64)
  params = module.init(jax.random.key(0), x)["params"]
  y = module.apply({"params": params}, x, context_mask_BxM=mask)
  want = ref.multi_head_attention(ref.to_np(params), x, mask, 3, causal)
  assert rel_err(y, want) < 1e-6


def test_dropout_path_equals_fused_path_without_dropout():
  rng = np.random.default_rng(2)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 7, 3, 4))) for _ in range(3))
  mask = random_mask(rng, 2, 7)
  fused = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :], is_causal=True)
  mask_BxNxM = mask[:, None, :] & np.tril(np.ones((7, 7), bool))[None]
  explicit = _attend_with_query_mask(q * 0.5, k, v, jnp.asarray(mask_BxNxM),
                                     lambda a, deterministic: a, True)
  assert rel_err(explicit, fused) < 1e-6


def test_transformer_layer_matches_numpy_reference():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 9, 16))
  mask = random_mask(rng, 2, 9)
  layer = luna_jax.TransformerEncoderLayer(num_heads=4, ffn_dim=24, normalize_before=True, **F64)
  params = layer.init(jax.random.key(0), x, None, mask_BxN=mask)["params"]
  y, p = layer.apply({"params": params}, x, None, mask_BxN=mask)
  assert p is None
  assert rel_err(y, ref.transformer_layer(ref.to_np(params), x, mask, 4, False)) < 1e-6


def test_training_mode_runs_with_attention_dropout_and_differs():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 9, 16)).astype(np.float32)
  module = luna_jax.MultiHeadAttention(num_heads=4, attention_dropout=0.3, causal=True)
  params = module.init(jax.random.key(0), x)["params"]
  y_eval = module.apply({"params": params}, x)
  y_train = module.apply({"params": params}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  assert np.all(np.isfinite(y_train)) and not np.allclose(y_eval, y_train)
  # Causality holds in the dropout path too.
  x2 = x.copy()
  x2[:, 5:] += 1.0
  y2 = module.apply({"params": params}, x2, deterministic=False, rngs={"dropout": jax.random.key(1)})
  np.testing.assert_allclose(y2[:, :5], y_train[:, :5], atol=1e-6)


def test_all_padding_example_is_finite():
  x = np.ones((2, 4, 8), np.float32)
  mask = np.array([[True] * 4, [False] * 4])
  module = luna_jax.MultiHeadAttention(num_heads=2)
  params = module.init(jax.random.key(0), x)["params"]
  assert np.all(np.isfinite(module.apply({"params": params}, x, context_mask_BxM=mask)))
  assert common.MASK_VALUE > -np.inf
