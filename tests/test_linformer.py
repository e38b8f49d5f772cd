"""Linformer: the formula, sharing levels, padding in stacks, and its clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from luna_jax.mixers.linformer import LinformerAttention
from tests import numpy_reference as ref
from tests.helpers import prefix_mask, random_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.mark.parametrize("sharing", ["none", "headwise", "kv"])
@pytest.mark.parametrize("before", [False, True])
def test_matches_numpy_reference(sharing, before):
  rng = np.random.default_rng(len(sharing) + before)
  x = rng.normal(size=(2, 9, 12))
  mask = random_mask(rng, 2, 9)
  module = LinformerAttention(num_heads=3, max_len=13, proj_len=4, sharing=sharing,
                              project_before=before, **F64)
  params = module.init(jax.random.key(0), x)["params"]
  params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), params)
  y = module.apply({"params": params}, x, mask_BxN=mask)
  want = ref.linformer_attention(ref.to_np(params), x, mask, 3, sharing, before)
  assert rel_err(y, want) < 1e-6


def _projection_matrices(params) -> list:
  """Every (k, max_len) projection matrix in a parameter tree."""
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if any(getattr(p, "key", None) in ("e", "f", "shared_projection") for p in path):
      found.extend(np.asarray(leaf).reshape(-1, *leaf.shape[-2:]))
  return found


@pytest.mark.parametrize("sharing,count", [("none", 2 * 4 * 3), ("headwise", 2 * 3),
                                           ("kv", 3), ("layerwise", 1)])
def test_sharing_levels_have_the_papers_matrix_counts(sharing, count):
  x = np.zeros((1, 10, 16), np.float32)
  enc = luna_jax.Encoder(mixer="linformer", num_layers=3, num_heads=4, ffn_dim=8,
                         mixer_options={"proj_len": 5, "max_len": 12, "sharing": sharing})
  params = enc.init(jax.random.key(0), x)["params"]
  mats = _projection_matrices(params)
  assert len(mats) == count and all(m.shape == (5, 12) for m in mats)
  total = sum(a.size for a in jax.tree.leaves(params))
  base = luna_jax.Encoder(mixer="linformer", num_layers=3, num_heads=4, ffn_dim=8,
                          mixer_options={"proj_len": 5, "max_len": 12, "sharing": "kv"})
  base_total = sum(a.size for a in jax.tree.leaves(base.init(jax.random.key(0), x)))
  assert total == base_total + (count - 3) * 5 * 12


def test_layerwise_sharing_is_one_parameter_used_by_every_layer():
  x = np.random.default_rng(0).normal(size=(1, 10, 16))
  enc = luna_jax.Encoder(mixer="linformer", num_layers=2, num_heads=4, ffn_dim=8,
                         mixer_options={"proj_len": 5, "max_len": 12, "sharing": "layerwise"},
                         **F64)
  params = enc.init(jax.random.key(0), x)["params"]
  grads = jax.grad(lambda p: jnp.sum(enc.apply({"params": p}, x)[0] ** 2))(params)
  # Changing the one matrix changes the output of the first layer as well as the last.
  g = np.asarray(grads["shared_projection"]["kernel"])
  assert np.abs(g).sum() > 0
  layer0 = luna_jax.Encoder(mixer="linformer", num_layers=1, num_heads=4, ffn_dim=8,
                            mixer_options={"proj_len": 5, "max_len": 12,
                                           "sharing": "layerwise"}, **F64)
  p0 = {"layer_0": params["layer_0"], "shared_projection": params["shared_projection"],
        "final_norm": params["final_norm"]}
  g0 = jax.grad(lambda e: jnp.sum(layer0.apply(
      {"params": {**p0, "shared_projection": {"kernel": e}}}, x)[0] ** 2))(
          params["shared_projection"]["kernel"])
  assert np.abs(np.asarray(g0)).sum() > 0


@pytest.mark.parametrize("before,sharing", [(False, "headwise"), (True, "none"),
                                            (False, "layerwise")])
def test_padded_stack_equals_unpadded_stack(before, sharing):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1, 7, 16))
  enc = luna_jax.Encoder(mixer="linformer", num_layers=3, num_heads=4, ffn_dim=24,
                         mixer_options={"proj_len": 4, "max_len": 12, "sharing": sharing,
                                        "project_before": before}, **F64)
  params = enc.init(jax.random.key(0), x)
  y = enc.apply(params, x)[0]
  x_pad = np.concatenate([x, 30 * rng.normal(size=(1, 5, 16))], axis=1)
  y_pad = enc.apply(params, x_pad, mask_BxN=prefix_mask([7], 12))[0]
  np.testing.assert_allclose(y_pad[:, :7], y, atol=1e-10)


def test_too_long_input_names_both_lengths():
  x = np.zeros((1, 20, 8), np.float32)
  with pytest.raises(ValueError, match="sequence length 20 exceeds .* max_len 16"):
    LinformerAttention(num_heads=2, max_len=16).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="sequence length 20 exceeds .* max_len 16"):
    luna_jax.Encoder(mixer="linformer", num_heads=2, mixer_options={"max_len": 16}).init(
        jax.random.key(0), x)


def test_causal_use_raises_instead_of_being_ignored():
  x = np.zeros((1, 8, 8), np.float32)
  with pytest.raises(ValueError, match="'linformer' cannot be causal: .*future"):
    luna_jax.Encoder(mixer="linformer", num_heads=2, causal=True,
                     mixer_options={"max_len": 8}).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="cannot be causal"):
    luna_jax.get_mixer("linformer").layer(num_heads=2, ffn_dim=8, causal=True,
                                          max_len=8).init(jax.random.key(0), x)


def test_missing_max_len_and_bad_sharing_fail_clearly():
  x = np.zeros((1, 8, 8), np.float32)
  with pytest.raises(ValueError, match="needs max_len"):
    luna_jax.Encoder(mixer="linformer", num_heads=2).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="sharing='all'"):
    LinformerAttention(num_heads=2, max_len=8, sharing="all").init(jax.random.key(0), x)
