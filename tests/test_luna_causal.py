"""LunaCausalAttention: the reference formulas, causality, decoding, memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from tests import numpy_reference as ref
from tests.helpers import prefix_mask, random_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


def _setup(b=2, n=11, l=5, d=12, h=3, tied=True, chunk=4, seed=0, dtype=np.float64, **kw):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, n, d)).astype(dtype)
  p = rng.normal(size=(b, l, d)).astype(dtype)
  f = F64 if dtype == np.float64 else {}
  module = luna_jax.LunaCausalAttention(num_heads=h, tied_kv=tied, chunk_size=chunk, **f, **kw)
  params = module.init(jax.random.key(seed), x, p)["params"]
  return rng, x, p, module, params


def test_omega_is_softplus_with_beta_ln2():
  z = np.linspace(-30, 30, 101)
  np.testing.assert_allclose(luna_jax.omega(jnp.asarray(z)), np.log1p(2.0**z) / np.log(2), rtol=1e-12)
  assert float(luna_jax.omega(jnp.zeros(()))) == 1.0


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_matches_numpy_reference(tied, chunk):
  rng, x, p, module, params = _setup(tied=tied, chunk=chunk, seed=chunk + tied)
  mask = prefix_mask([11, 8], 11)
  p_mask = random_mask(rng, 2, 5)
  y, p_out = module.apply({"params": params}, x, p, mask_BxN=mask, p_mask_BxL=p_mask)
  want = ref.luna_causal(ref.to_np(params), x, p, mask, p_mask, 3, tied)
  real = mask[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want, 0)) < 1e-6
  np.testing.assert_array_equal(p_out, p)  # causal attention leaves P alone


def _dropout_apply(module, params, x, p, mask, p_mask, seed):
  """One training-mode pass; returns (Y, w_keep, alpha_keep) with the masks it drew."""
  (y, _), state = module.apply({"params": params}, x, p, mask_BxN=mask, p_mask_BxL=p_mask,
                               deterministic=False, rngs={"dropout": jax.random.key(seed)},
                               mutable=["intermediates"])
  keep = state["intermediates"]
  return np.asarray(y), np.asarray(keep["w_keep"][0]), np.asarray(keep["alpha_keep"][0])


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_attention_dropout_drops_pack_weights_and_unpack_alpha(tied, chunk):
  """As the authors' LunarCausalAttention: w dropped before it builds Kbar and Vbar, alpha
  dropped after the softmax, independent masks; checked against the float64 reference."""
  rate = 0.3
  rng, x, p, module, params = _setup(tied=tied, chunk=chunk, seed=chunk + tied,
                                     attention_dropout=rate)
  mask = prefix_mask([11, 8], 11)
  p_mask = random_mask(rng, 2, 5)
  y, w_keep, alpha_keep = _dropout_apply(module, params, x, p, mask, p_mask, seed=3)
  assert w_keep.shape == alpha_keep.shape == (2, 3, 11, 5)
  assert w_keep.dtype == alpha_keep.dtype == bool
  for keep in (w_keep, alpha_keep):
    assert abs(keep.mean() - (1 - rate)) < 0.1
  assert (w_keep != alpha_keep).mean() > 0.2  # two masks, not one used twice
  np_params = ref.to_np(params)
  want = ref.luna_causal(np_params, x, p, mask, p_mask, 3, tied, w_keep, alpha_keep, rate)
  real = mask[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want, 0)) < 1e-6
  # Dropping only w (the behaviour before alpha dropout) is far from the output.
  pack_only = ref.luna_causal(np_params, x, p, mask, p_mask, 3, tied, w_keep, None, rate)
  assert rel_err(np.where(real, y, 0), np.where(real, pack_only, 0)) > 1e-2


def test_dropout_is_reproducible_from_the_rng_and_independent_of_chunk_size():
  rng, x, p, module, params = _setup(n=13, chunk=1, attention_dropout=0.2)
  mask, p_mask = prefix_mask([13, 9], 13), random_mask(rng, 2, 5)
  y1, w1, a1 = _dropout_apply(module, params, x, p, mask, p_mask, seed=5)
  for chunk in (1, 4, 64):
    y, w, a = _dropout_apply(module.clone(chunk_size=chunk), params, x, p, mask, p_mask, seed=5)
    np.testing.assert_array_equal(w, w1)
    np.testing.assert_array_equal(a, a1)
    np.testing.assert_allclose(y, y1, atol=1e-12)
  y_other = _dropout_apply(module, params, x, p, mask, p_mask, seed=6)[0]
  assert not np.allclose(y_other, y1)
  # deterministic=True ignores the rate: the reference without dropout.
  y_eval = module.apply({"params": params}, x, p, mask_BxN=mask, p_mask_BxL=p_mask)[0]
  want = ref.luna_causal(ref.to_np(params), x, p, mask, p_mask, 3, True)
  assert rel_err(np.asarray(y_eval)[:, :9], want[:, :9]) < 1e-6


def test_changing_the_future_never_changes_the_past():
  rng, x, p, module, params = _setup(n=16, chunk=5)
  y = module.apply({"params": params}, x, p)[0]
  for t in (0, 4, 5, 9, 15):
    x2 = x.copy()
    x2[:, t + 1:] = rng.normal(size=x2[:, t + 1:].shape) * 10
    y2 = module.apply({"params": params}, x2, p)[0]
    np.testing.assert_allclose(y2[:, : t + 1], y[:, : t + 1], atol=1e-12)
    if t < 15:
      assert not np.allclose(y2[:, t + 1:], y[:, t + 1:])


def test_jacobian_is_block_lower_triangular():
  _, x, p, module, params = _setup(b=1, n=9, d=8, h=2, chunk=4)
  jac = jax.jacobian(lambda x: module.apply({"params": params}, x, p)[0])(x)
  jac_TxS = np.abs(np.asarray(jac[0, :, :, 0])).sum(axis=(1, 3))  # (t, s)
  assert np.all(np.triu(jac_TxS, k=1) == 0)
  assert np.all(np.diag(jac_TxS) > 0)


def _decode(module, params, x, p, sizes, p_mask=None):
  """Feeds x through the cache in pieces of the given sizes; returns the outputs."""
  decoder = module.clone(decode=True)
  cache = decoder.init(jax.random.key(0), x, p)["cache"]
  step = jax.jit(lambda c, xs: decoder.apply({"params": params, "cache": c}, xs, p,
                                             p_mask_BxL=p_mask, mutable=["cache"]))
  outs, start = [], 0
  for size in sizes:
    (y, _), new_vars = step(cache, x[:, start:start + size])
    cache, start = new_vars["cache"], start + size
    outs.append(y)
  assert start == x.shape[1]
  assert int(cache["index"]) == x.shape[1]
  return np.concatenate(outs, axis=1)


@pytest.mark.parametrize("sizes", [[1] * 13, [3, 1, 4, 5], [13], [6, 7]])
def test_decoding_equals_the_full_pass(sizes):
  rng, x, p, module, params = _setup(n=13, chunk=4, tied=False)
  p_mask = random_mask(rng, 2, 5)
  full = module.apply({"params": params}, x, p, p_mask_BxL=p_mask)[0]
  np.testing.assert_allclose(_decode(module, params, x, p, sizes, p_mask), full, atol=1e-10)


def test_bfloat16_decoding_is_finite_and_close():
  _, x, p, module, params = _setup(n=24, d=32, h=4, chunk=8, dtype=np.float32)
  full = module.apply({"params": params}, x, p)[0]
  m16 = module.clone(dtype=jnp.bfloat16)
  y16 = m16.apply({"params": params}, x, p)[0]
  assert y16.dtype == jnp.bfloat16
  assert rel_err(np.asarray(y16, np.float32), full) < 3e-2
  dec = np.asarray(_decode(m16, params, x, p, [5, 1, 18]), np.float32)
  assert np.all(np.isfinite(dec)) and rel_err(dec, full) < 3e-2


def test_memory_stays_linear_no_prefix_sum_tensor():
  """Compiled temporaries must be far below the reference's (n, l, d_h) prefix sums."""
  b, n, l, d, h = 1, 4096, 64, 64, 4
  x = jax.ShapeDtypeStruct((b, n, d), jnp.float32)
  p = jax.ShapeDtypeStruct((b, l, d), jnp.float32)
  module = luna_jax.LunaCausalAttention(num_heads=h)
  params = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(x.shape), jnp.zeros(p.shape)))
  fwd = jax.jit(lambda v, x, p: module.apply(v, x, p)[0])
  stats = fwd.lower(params, x, p).compile().memory_analysis()
  prefix_sum_bytes = 2 * b * h * n * l * (d // h) * 4  # cumulative K and V of the reference
  assert stats.temp_size_in_bytes < prefix_sum_bytes / 4, stats.temp_size_in_bytes


def test_chunk_size_by_length_gives_the_explicit_chunk_sizes_result():
  """chunk_size=None (by length: 128 here, so 2 chunks and padding) equals explicit sizes."""
  rng, x, p, module, params = _setup(n=150, chunk=None, tied=False, seed=7)
  assert module.chunk_size is None
  assert luna_jax.mixers.luna_causal.chunk_size_for(150, 5, 4) == 128
  mask, p_mask = prefix_mask([150, 97], 150), random_mask(rng, 2, 5)
  y = module.apply({"params": params}, x, p, mask_BxN=mask, p_mask_BxL=p_mask)[0]
  for chunk in (1, 7, 64, 150, 256):
    y_c = module.clone(chunk_size=chunk).apply({"params": params}, x, p, mask_BxN=mask,
                                                 p_mask_BxL=p_mask)[0]
    np.testing.assert_allclose(y, y_c, rtol=0, atol=1e-12)
  want = ref.luna_causal(ref.to_np(params), x, p, mask, p_mask, 3, False)
  real = mask[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want, 0)) < 1e-6


def test_chunk_size_for_follows_the_length_and_the_head_shape():
  chunk_size_for = luna_jax.mixers.luna_causal.chunk_size_for
  for n in (1, 5, 63):
    assert chunk_size_for(n, 16, 64) == n  # a short input is one chunk
  for n in (1024, 16384, 10**6):
    assert chunk_size_for(n, 16, 64) == 64
  for l, dh in ((16, 64), (128, 64), (256, 64), (64, 16), (16, 16), (1, 1)):
    c = chunk_size_for(4096, l, dh)
    assert c & (c - 1) == 0 and 1 <= c <= 4096


@pytest.mark.parametrize("num", [1, 5, 16, 17, 40])
def test_exclusive_prefix_sum_matches_cumsum(num):
  a = np.random.default_rng(num).normal(size=(2, 3, num, 4))
  before, total = luna_jax.mixers.luna_causal.exclusive_prefix_sum(jnp.asarray(a), block=16)
  want = np.cumsum(a, axis=2) - a
  np.testing.assert_allclose(before, want, atol=1e-12)
  np.testing.assert_allclose(total, a.sum(axis=2), atol=1e-12)


def test_decoding_with_the_default_chunk_size_equals_the_full_pass():
  rng, x, p, module, params = _setup(n=70, chunk=None, tied=False, seed=8)
  full = module.apply({"params": params}, x, p)[0]
  np.testing.assert_allclose(_decode(module, params, x, p, [1, 65, 4]), full, atol=1e-10)
