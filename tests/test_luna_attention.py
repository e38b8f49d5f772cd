"""LunaAttention (bidirectional) against the float64 NumPy reference, and its properties."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from tests import numpy_reference as ref
from tests.helpers import prefix_mask, random_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


def _init(module, x, p, c=None, **kw):
  return module.init(jax.random.key(0), x, p, c, **kw)["params"]


# (batch, n, m (context; None = self), l, d, heads, pack_heads, tied)
CASES = [
    (2, 7, None, 5, 12, 3, 3, False),
    (2, 5, None, 9, 12, 4, 2, True),  # l > n, pack heads != heads
    (3, 6, 8, 4, 16, 2, 4, False),  # cross-attention
    (1, 10, None, 3, 8, 1, 8, True),
]


@pytest.mark.parametrize("order", ["project_first", "attend_first"])
@pytest.mark.parametrize("b,n,m,l,d,h,hp,tied", CASES)
def test_matches_numpy_reference(b, n, m, l, d, h, hp, tied, order):
  rng = np.random.default_rng(n * 100 + l)
  x = rng.normal(size=(b, n, d))
  p = rng.normal(size=(b, l, d))
  c = None if m is None else rng.normal(size=(b, m, d))
  c_mask = random_mask(rng, b, m or n)
  p_mask = random_mask(rng, b, l)
  module = luna_jax.LunaAttention(num_heads=h, pack_heads=hp, tied_kv=tied, pack_order=order,
                                  **F64)
  params = _init(module, x, p, c)
  y, y_p = module.apply({"params": params}, x, p, c, context_mask_BxM=c_mask, p_mask_BxL=p_mask)
  assert y.dtype == jnp.float64
  want_y, want_p = ref.luna_attention(ref.to_np(params), x, p, x if c is None else c,
                                      c_mask, p_mask, h, hp, tied)
  assert rel_err(y, want_y) < 1e-6
  assert rel_err(y_p, want_p) < 1e-6


class JitTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_and_eager_agree(self):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    p = rng.normal(size=(2, 4, 16)).astype(np.float32)
    mask = random_mask(rng, 2, 9)
    module = luna_jax.LunaAttention(num_heads=4)
    params = _init(module, x, p)
    fn = self.variant(
        lambda prm, x, p, m: module.apply({"params": prm}, x, p, context_mask_BxM=m))
    y, _ = fn(params, x, p, mask)
    want, _ = ref.luna_attention(ref.to_np(params), x, p, x, mask, None, 4, 4, False)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_appending_padding_changes_nothing():
  rng = np.random.default_rng(2)
  b, n, extra, l, d = 2, 11, 6, 5, 16
  x = rng.normal(size=(b, n, d))
  p = rng.normal(size=(b, l, d))
  mask = prefix_mask([n, 7], n)
  module = luna_jax.LunaAttention(num_heads=4, pack_heads=2, **F64)
  params = _init(module, x, p)
  y, y_p = module.apply({"params": params}, x, p, context_mask_BxM=mask)
  x_pad = np.concatenate([x, rng.normal(size=(b, extra, d)) * 100], axis=1)
  mask_pad = np.concatenate([mask, np.zeros((b, extra), bool)], axis=1)
  y2, y_p2 = module.apply({"params": params}, x_pad, p, context_mask_BxM=mask_pad)
  real = mask[..., None]
  np.testing.assert_allclose(np.where(real, y2[:, :n], 0), np.where(real, y, 0), atol=1e-12)
  np.testing.assert_allclose(y_p2, y_p, atol=1e-12)


def test_p_row_mask_equals_truncating_p():
  rng = np.random.default_rng(3)
  b, n, l, keep, d = 2, 6, 9, 4, 12
  x, p = rng.normal(size=(b, n, d)), rng.normal(size=(b, l, d))
  module = luna_jax.LunaAttention(num_heads=3, **F64)
  params = _init(module, x, p)
  y_masked, yp_masked = module.apply({"params": params}, x, p,
                                     p_mask_BxL=prefix_mask([keep, keep], l))
  y_short, yp_short = module.apply({"params": params}, x, p[:, :keep])
  np.testing.assert_allclose(y_masked, y_short, atol=1e-12)
  np.testing.assert_allclose(yp_masked[:, :keep], yp_short, atol=1e-12)


def test_all_padding_example_is_finite_with_finite_gradients():
  rng = np.random.default_rng(4)
  x, p = rng.normal(size=(2, 5, 8)).astype(np.float32), rng.normal(size=(2, 3, 8)).astype(np.float32)
  mask = np.array([[True] * 5, [False] * 5])
  p_mask = np.array([[True] * 3, [False] * 3])
  module = luna_jax.LunaAttention(num_heads=2)
  params = _init(module, x, p)

  def loss(prm):
    y, yp = module.apply({"params": prm}, x, p, context_mask_BxM=mask, p_mask_BxL=p_mask)
    return jnp.sum(y**2) + jnp.sum(yp**2)

  value, grads = jax.value_and_grad(loss)(params)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bfloat16_is_finite_and_close_to_float32():
  rng = np.random.default_rng(5)
  x, p = rng.normal(size=(2, 64, 32)).astype(np.float32), rng.normal(size=(2, 16, 32)).astype(np.float32)
  mask = prefix_mask([64, 40], 64)
  f32 = luna_jax.LunaAttention(num_heads=4)
  params = _init(f32, x, p)
  y32, _ = f32.apply({"params": params}, x, p, context_mask_BxM=mask)
  y16, _ = luna_jax.LunaAttention(num_heads=4, dtype=jnp.bfloat16).apply(
      {"params": params}, x, p, context_mask_BxM=mask)
  assert y16.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(y16, np.float32)))
  assert rel_err(np.asarray(y16, np.float32), y32) < 3e-2


def test_parameter_count_tied_and_untied():
  d = 16
  x = np.zeros((1, 4, d), np.float32)
  for tied, maps in ((True, 5), (False, 7)):
    params = _init(luna_jax.LunaAttention(num_heads=4, tied_kv=tied), x, x)
    assert len(params) == maps
    assert sum(a.size for a in jax.tree.leaves(params)) == maps * (d * d + d)


def test_reference_initialisation():
  d = 64
  x = np.zeros((1, 4, d), np.float32)
  params = _init(luna_jax.LunaAttention(num_heads=4), x, x)
  in_bound = (1 / np.sqrt(2)) * np.sqrt(6 / (2 * d))
  for name in ("p_query", "p_key", "p_value", "query", "key", "value"):
    kernel, bias = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
    assert np.abs(kernel).max() <= in_bound and np.abs(kernel).max() > 0.9 * in_bound
    assert np.abs(bias).max() <= 1 / np.sqrt(d) and np.abs(bias).max() > 0.5 / np.sqrt(d)
  assert np.abs(params["out"]["kernel"]).max() > 0.9 * in_bound * np.sqrt(2)
  assert np.all(np.asarray(params["out"]["bias"]) == 0)
  bert = _init(luna_jax.LunaAttention(num_heads=4, init_style="bert"), x, x)
  assert abs(float(np.std(bert["query"]["kernel"])) - 0.02) < 0.002
  assert np.all(np.asarray(bert["query"]["bias"]) == 0)


def test_attention_dropout_is_active_only_in_training():
  rng = np.random.default_rng(6)
  x, p = rng.normal(size=(2, 9, 16)).astype(np.float32), rng.normal(size=(2, 4, 16)).astype(np.float32)
  module = luna_jax.LunaAttention(num_heads=4, attention_dropout=0.5)
  params = _init(module, x, p)
  y_eval, _ = module.apply({"params": params}, x, p)
  y_train, _ = module.apply({"params": params}, x, p, deterministic=False,
                            rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(y_eval, y_train)


def test_heads_that_do_not_divide_the_width_fail_clearly():
  x = np.zeros((1, 4, 10), np.float32)
  with pytest.raises(ValueError, match="num_heads=4 must .* divide the model width 10"):
    _init(luna_jax.LunaAttention(num_heads=4), x, x)
  with pytest.raises(ValueError, match="pack_heads=3"):
    _init(luna_jax.LunaAttention(num_heads=2, pack_heads=3), x, x)


@pytest.mark.parametrize("tied", [False, True])
def test_pack_orders_share_parameters_and_dropout(tied):
  """Both pack orders make the same parameters from a key and, in training, draw the same
  dropout masks: a checkpoint and a seed give one result whichever order runs."""
  rng = np.random.default_rng(11)
  x, p = rng.normal(size=(2, 13, 16)), rng.normal(size=(2, 3, 16))
  mask = random_mask(rng, 2, 13)
  outs, trees = [], []
  for order in ("project_first", "attend_first"):
    module = luna_jax.LunaAttention(num_heads=4, tied_kv=tied, attention_dropout=0.3,
                                    pack_order=order, **F64)
    params = _init(module, x, p)
    trees.append(params)
    outs.append(module.apply({"params": params}, x, p, context_mask_BxM=mask,
                             deterministic=False, rngs={"dropout": jax.random.key(5)}))
  chex.assert_trees_all_equal(*trees)
  for a, b in zip(*outs, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_auto_pack_order_takes_the_cheaper_products():
  """attend-first at a short P and wide model (fewer FLOPs), project-first at a long P;
  checked through the parameters each path reads (same tree) and the compiled FLOPs."""
  x = jnp.zeros((1, 64, 32))

  def flops(module, l):
    p = jnp.zeros((1, l, 32))
    params = _init(module, x, p)
    fn = jax.jit(lambda prm: module.apply({"params": prm}, x, p)[0])
    return fn.lower(params).compile().cost_analysis()["flops"]

  for l in (2, 40):
    auto, pf, af = (flops(luna_jax.LunaAttention(num_heads=2, pack_order=o), l)
                    for o in ("auto", "project_first", "attend_first"))
    assert auto == min(pf, af), (l, auto, pf, af)
  with pytest.raises(ValueError, match="pack_order='fast' is not one of"):
    _init(luna_jax.LunaAttention(num_heads=2, pack_order="fast"), x, x[:, :2])
