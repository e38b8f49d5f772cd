"""Lightweight and dynamic convolution: formulas, both forms, causality, decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from luna_jax.mixers.convolution import DynamicConv, LightweightConv, band_conv, unfold_conv
from tests import numpy_reference as ref
from tests.helpers import decode_in_chunks, prefix_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
KINDS = {"light": (LightweightConv, ref.lightconv), "dynamic": (DynamicConv, ref.dynamicconv)}


@pytest.mark.parametrize("kind", ["light", "dynamic"])
@pytest.mark.parametrize("kernel_size", [1, 2, 5, 8])  # odd, even, longer than the sequence
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("implementation", ["unfold", "band"])
def test_matches_numpy_reference(kind, kernel_size, causal, implementation):
  module_cls, reference = KINDS[kind]
  rng = np.random.default_rng(kernel_size + 10 * causal)
  x = rng.normal(size=(2, 6, 8))
  module = module_cls(num_heads=2, kernel_size=kernel_size, causal=causal,
                      implementation=implementation, **F64)
  params = module.init(jax.random.key(0), x)["params"]
  y = module.apply({"params": params}, x)
  assert rel_err(y, reference(ref.to_np(params), x, 2, kernel_size, causal)) < 1e-6


@pytest.mark.parametrize("dynamic", [False, True])
def test_unfold_equals_band_with_per_step_weights(dynamic):
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.normal(size=(2, 33, 12)))
  for k, left in ((7, 3), (7, 6), (4, 2), (40, 20)):
    w = rng.random((2, 33, 3, k)) if dynamic else rng.random((3, k))
    w = jnp.asarray(w)
    np.testing.assert_allclose(unfold_conv(x, w, left, k - 1 - left), band_conv(x, w, left),
                               atol=1e-12)


def test_auto_picks_band_for_short_and_unfold_for_long_sequences():
  x_short, x_long = np.ones((1, 16, 8), np.float32), np.ones((1, 64, 8), np.float32)
  module = DynamicConv(num_heads=2, kernel_size=3, band_max_len=32)
  params = module.init(jax.random.key(0), x_short)
  short = jax.make_jaxpr(lambda x: module.apply(params, x))(x_short)
  long = jax.make_jaxpr(lambda x: module.apply(params, x))(x_long)
  assert "take_along_axis" in str(short) or "gather" in str(short)
  assert "gather" not in str(long)


@pytest.mark.parametrize("dynamic", [False, True])
def test_conv_layer_matches_numpy_reference(dynamic):
  rng = np.random.default_rng(11)
  x = rng.normal(size=(2, 7, 8))
  mask = prefix_mask([7, 4], 7)
  layer_cls = luna_jax.get_mixer("dynamicconv" if dynamic else "lightconv").layer
  layer = layer_cls(num_heads=2, ffn_dim=12, kernel_size=3, **F64)
  params = layer.init(jax.random.key(0), x, None, mask_BxN=mask)["params"]
  params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), params)
  y, _ = layer.apply({"params": params}, x, None, mask_BxN=mask)
  want = ref.conv_layer(ref.to_np(params), x, mask, 2, 3, False, dynamic)
  real = mask[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want, 0)) < 1e-6


@pytest.mark.parametrize("mixer", ["lightconv", "dynamicconv"])
def test_causal_conv_stack_never_sees_the_future(mixer):
  rng = np.random.default_rng(12)
  x = rng.normal(size=(1, 20, 8))
  enc = luna_jax.Encoder(mixer=mixer, num_layers=3, num_heads=2, ffn_dim=8, causal=True, **F64)
  params = enc.init(jax.random.key(0), x)
  y = enc.apply(params, x)[0]
  x2 = x.copy()
  x2[:, 11:] = rng.normal(size=(1, 9, 8))
  y2 = enc.apply(params, x2)[0]
  np.testing.assert_allclose(y2[:, :11], y[:, :11], atol=1e-12)
  assert not np.allclose(y2[:, 11:], y[:, 11:])


@pytest.mark.parametrize("mixer", ["lightconv", "dynamicconv"])
@pytest.mark.parametrize("sizes", [[1] * 12, [5, 2, 5], [12]])
def test_decoding_one_step_or_chunks_equals_full_pass(mixer, sizes):
  rng = np.random.default_rng(13)
  x = rng.normal(size=(2, 12, 8))
  enc = luna_jax.Encoder(mixer=mixer, num_layers=2, num_heads=2, ffn_dim=8, causal=True,
                         mixer_options={"kernel_sizes": (3, 7)}, **F64)
  params = enc.init(jax.random.key(0), x)["params"]
  full = enc.apply({"params": params}, x)[0]
  np.testing.assert_allclose(decode_in_chunks(enc, params, x, sizes), full, atol=1e-10)


def test_per_layer_kernel_sizes_default_to_the_paper():
  x = np.zeros((1, 40, 8), np.float32)
  enc = luna_jax.Encoder(mixer="lightconv", num_layers=4, num_heads=2, ffn_dim=8)
  params = enc.init(jax.random.key(0), x)["params"]
  sizes = [params[f"layer_{i}"]["conv"]["weight"].shape[1] for i in range(4)]
  assert sizes == [3, 7, 15, 31]
  with pytest.raises(ValueError, match="has 7 entries but the encoder has num_layers=8"):
    enc.clone(num_layers=8).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="either kernel_size"):
    enc.clone(mixer_options={"kernel_size": 3, "kernel_sizes": (3,)}).init(jax.random.key(0), x)


def test_bfloat16_and_dropconnect():
  rng = np.random.default_rng(14)
  x = rng.normal(size=(2, 300, 32)).astype(np.float32)
  for kind in ("light", "dynamic"):
    module = KINDS[kind][0](num_heads=4, kernel_size=31, weight_dropout=0.3)
    params = module.init(jax.random.key(0), x)
    y32 = module.apply(params, x)
    y16 = module.clone(dtype=jnp.bfloat16).apply(params, x)
    assert y16.dtype == jnp.bfloat16 and rel_err(np.asarray(y16, np.float32), y32) < 3e-2
    y_train = module.apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert np.all(np.isfinite(y_train)) and not np.allclose(y_train, y32)


def test_decoding_a_centred_convolution_fails_clearly():
  x = np.zeros((1, 4, 8), np.float32)
  with pytest.raises(ValueError, match="decode=True needs causal=True"):
    LightweightConv(num_heads=2, kernel_size=3, decode=True).init(jax.random.key(0), x)
