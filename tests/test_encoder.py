"""Encoder layers and stacks: references, padding invariance, decoding, the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from tests import numpy_reference as ref
from tests.helpers import decode_in_chunks, prefix_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_luna_layer_matches_numpy_reference(pre_ln):
  rng = np.random.default_rng(int(pre_ln))
  b, n, l, d = 2, 8, 5, 12
  x, p = rng.normal(size=(b, n, d)), rng.normal(size=(b, l, d))
  mask, p_mask = prefix_mask([8, 3], n), prefix_mask([5, 3], l)
  layer = luna_jax.LunaEncoderLayer(num_heads=3, pack_heads=2, ffn_dim=20,
                                    normalize_before=pre_ln, **F64)
  params = layer.init(jax.random.key(0), x, p)["params"]
  # Non-trivial LayerNorm parameters, so that their use is checked too.
  params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), params)
  y, p_next = layer.apply({"params": params}, x, p, mask_BxN=mask, p_mask_BxL=p_mask)
  want_y, want_p = ref.luna_layer(ref.to_np(params), x, p, mask, p_mask, 3, 2, False, pre_ln)
  real = mask[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want_y, 0)) < 1e-6
  assert rel_err(p_next, want_p) < 1e-6


@pytest.mark.parametrize("contextual,pre_ln", [(True, False), (False, False), (True, True)])
def test_luna_encoder_matches_numpy_reference(contextual, pre_ln):
  rng = np.random.default_rng(10 + contextual + 2 * pre_ln)
  b, n, l, d = 2, 6, 8, 8  # l > n: dynamic projection masks rows for both examples
  x = rng.normal(size=(b, n, d))
  mask = prefix_mask([6, 4], n)
  enc = luna_jax.Encoder(mixer="luna", num_layers=2, num_heads=2, ffn_dim=16,
                         normalize_before=pre_ln,
                         mixer_options={"proj_len": l, "contextual_p": contextual}, **F64)
  params = enc.init(jax.random.key(1), x, mask_BxN=mask)["params"]
  params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), params)
  y, p = enc.apply({"params": params}, x, mask_BxN=mask)
  want_y, want_p = ref.luna_encoder(ref.to_np(params), x, mask, 2, l, 2, contextual, pre_ln)
  real, rows = mask[..., None], prefix_mask(mask.sum(-1), l)[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want_y, 0)) < 1e-6
  assert rel_err(np.where(rows, p, 0), np.where(rows, want_p, 0)) < 1e-6


MIXER_OPTIONS = {"luna": {"proj_len": 12}, "transformer": {},
                 "linformer": {"max_len": 17, "proj_len": 12},
                 "lightconv": {"kernel_sizes": (3, 4, 9)},
                 "dynamicconv": {"kernel_sizes": (5, 2, 15)}}


def test_every_registered_mixer_is_tested():
  assert set(MIXER_OPTIONS) == set(luna_jax.mixer_names())


# The mixers whose layers draw randomness or share modules differently: Luna (the P
# stream), the Transformer (the chunked attention's own dropout inside its custom VJP),
# Linformer (one projection shared by every layer). The convolutions' DropConnect is an
# nn.Dropout like the residual dropout every layer has.
@pytest.mark.parametrize("mixer", ["luna", "transformer", "linformer"])
def test_remat_keeps_parameter_names_outputs_and_gradients(mixer):
  """nn.remat per layer recomputes the forward pass in the backward pass with the same
  dropout masks: the same parameters, loss and float64 gradients, with dropout on."""
  rng = np.random.default_rng(21)
  options = dict(MIXER_OPTIONS[mixer], **({"sharing": "layerwise"} if mixer == "linformer"
                                          else {}))
  x = rng.normal(size=(2, 10, 16))
  mask = prefix_mask([10, 6], 10)
  results = []
  for remat in (False, True):
    enc = luna_jax.Encoder(mixer=mixer, num_layers=2, num_heads=4, ffn_dim=32,
                           dropout=0.3, attention_dropout=0.2, remat=remat,
                           mixer_options=options, **F64)
    params = enc.init(jax.random.key(0), x, mask_BxN=mask)

    def loss(params, enc=enc):
      y, _ = enc.apply(params, x, mask_BxN=mask, deterministic=False,
                       rngs={"dropout": jax.random.key(3)})
      return jnp.sum(jnp.sin(y) * mask[..., None])

    results.append((params, *jax.jit(jax.value_and_grad(loss))(params)))
  (p0, l0, g0), (p1, l1, g1) = results
  assert jax.tree.structure(p0) == jax.tree.structure(p1)
  jax.tree.map(np.testing.assert_array_equal, p0, p1)
  np.testing.assert_allclose(float(l1), float(l0), rtol=1e-13)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13), g0, g1)


@pytest.mark.parametrize("mixer", sorted(MIXER_OPTIONS))
def test_padding_never_changes_real_outputs_in_a_stack(mixer):
  rng = np.random.default_rng(20)
  b, n, extra, d = 2, 10, 7, 16
  x = rng.normal(size=(b, n, d))
  mask = prefix_mask([10, 6], n)
  enc = luna_jax.Encoder(mixer=mixer, num_layers=3, num_heads=4, ffn_dim=32,
                         mixer_options=MIXER_OPTIONS[mixer], **F64)
  params = enc.init(jax.random.key(0), x, mask_BxN=mask)
  y, p = enc.apply(params, x, mask_BxN=mask)
  x_pad = np.concatenate([x, 50 * rng.normal(size=(b, extra, d))], axis=1)
  mask_pad = np.concatenate([mask, np.zeros((b, extra), bool)], axis=1)
  y2, p2 = enc.apply(params, x_pad, mask_BxN=mask_pad)
  real = mask[..., None]
  np.testing.assert_allclose(np.where(real, y2[:, :n], 0), np.where(real, y, 0), atol=1e-10)
  if mixer == "luna":
    rows = prefix_mask(mask.sum(-1), 12)[..., None]
    np.testing.assert_allclose(np.where(rows, p2, 0), np.where(rows, p, 0), atol=1e-10)


@pytest.mark.parametrize("mixer", ["luna", "transformer"])
def test_causal_stack_is_causal(mixer):
  rng = np.random.default_rng(30)
  x = rng.normal(size=(1, 12, 16))
  enc = luna_jax.Encoder(mixer=mixer, num_layers=2, num_heads=4, ffn_dim=32, causal=True, **F64)
  params = enc.init(jax.random.key(0), x)
  y = enc.apply(params, x)[0]
  x2 = x.copy()
  x2[:, 7:] = rng.normal(size=(1, 5, 16))
  y2 = enc.apply(params, x2)[0]
  np.testing.assert_allclose(y2[:, :7], y[:, :7], atol=1e-12)
  assert not np.allclose(y2[:, 7:], y[:, 7:])


@pytest.mark.parametrize("mixer", ["transformer", "lightconv", "dynamicconv"])
def test_causal_stack_decoding_equals_full_pass(mixer):
  """One and several tokens per call through the decoding caches (the Transformer's
  key/value cache, the convolutions' last inputs) give the full causal pass."""
  rng = np.random.default_rng(41)
  x = rng.normal(size=(2, 10, 16))
  options = {"kernel_size": 3} if "conv" in mixer else {}
  enc = luna_jax.Encoder(mixer=mixer, num_layers=2, num_heads=4, ffn_dim=32, causal=True,
                         mixer_options=options, **F64)
  params = enc.init(jax.random.key(0), x)["params"]
  full = enc.apply({"params": params}, x)[0]
  for sizes in ((1,) * 10, (1, 4, 2, 3), (10,)):
    np.testing.assert_allclose(decode_in_chunks(enc, params, x, sizes), full, atol=1e-10)


def test_causal_luna_stack_decoding_equals_full_pass():
  rng = np.random.default_rng(40)
  x = rng.normal(size=(2, 10, 16))
  enc = luna_jax.Encoder(mixer="luna", num_layers=3, num_heads=4, ffn_dim=32, causal=True,
                         normalize_before=True, mixer_options={"chunk_size": 3}, **F64)
  params = enc.init(jax.random.key(0), x)["params"]
  full = enc.apply({"params": params}, x)[0]
  np.testing.assert_allclose(decode_in_chunks(enc, params, x, (1, 4, 2, 3)), full, atol=1e-10)


def test_bfloat16_encoder_is_finite_and_close_to_float32():
  rng = np.random.default_rng(50)
  x = rng.normal(size=(2, 128, 32)).astype(np.float32)
  mask = prefix_mask([128, 90], 128)
  enc = luna_jax.Encoder(mixer="luna", num_layers=2, num_heads=4, ffn_dim=64,
                         mixer_options={"proj_len": 16})
  params = enc.init(jax.random.key(0), x, mask_BxN=mask)
  y32 = enc.apply(params, x, mask_BxN=mask)[0]
  y16 = enc.clone(dtype=jnp.bfloat16).apply(params, x, mask_BxN=mask)[0]
  assert y16.dtype == jnp.bfloat16 and y32.dtype == jnp.float32
  assert rel_err(np.asarray(y16, np.float32)[:, :90], y32[:, :90]) < 5e-2


def test_training_step_has_finite_gradients_with_an_all_padding_example():
  x = np.random.default_rng(60).normal(size=(2, 8, 16)).astype(np.float32)
  mask = prefix_mask([8, 0], 8)
  enc = luna_jax.Encoder(mixer="luna", num_layers=2, num_heads=4, ffn_dim=32,
                         mixer_options={"proj_len": 4})
  params = enc.init(jax.random.key(0), x, mask_BxN=mask)

  def loss(v):
    y, p = enc.apply(v, x, mask_BxN=mask, deterministic=False, rngs={"dropout": jax.random.key(1)})
    return jnp.mean(y**2) + jnp.mean(p**2)

  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_registry_lists_mixers_and_rejects_unknown_names():
  assert {"luna", "transformer"} <= set(luna_jax.mixer_names())
  x = np.zeros((1, 4, 8), np.float32)
  with pytest.raises(ValueError, match="unknown mixer 'lunar'; choose one of: luna, transformer, "):
    luna_jax.Encoder(mixer="lunar", num_heads=2).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"unknown mixer_options \['kernel_size'\]"):
    luna_jax.Encoder(num_heads=2, mixer_options={"kernel_size": 3}).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="decode=True needs causal=True"):
    luna_jax.Encoder(num_heads=2, decode=True).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"pack_heads=3 must divide the model width d_model=8"):
    luna_jax.Encoder(num_heads=2, mixer_options={"pack_heads": 3}).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="init_style='kaiming'"):
    luna_jax.Encoder(num_heads=2, init_style="kaiming").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="already registered"):
    luna_jax.register_mixer("luna", luna_jax.get_mixer("luna"))


def test_non_contextual_p_has_one_parameter_per_layer():
  x = np.zeros((1, 4, 8), np.float32)
  ctx = luna_jax.Encoder(mixer="luna", num_layers=3, num_heads=2, ffn_dim=8,
                         mixer_options={"proj_len": 5})
  per_layer = ctx.clone(mixer_options={"proj_len": 5, "contextual_p": False})
  assert [k for k in ctx.init(jax.random.key(0), x)["params"] if k.startswith("p_embed")] == [
      "p_embed", "p_embed_norm"]
  names = [k for k in per_layer.init(jax.random.key(0), x)["params"] if k.startswith("p_embed")]
  assert sorted(names) == sorted([f"p_embed_{i}" for i in range(3)] +
                                 [f"p_embed_norm_{i}" for i in range(3)])


def test_demo_runs(capsys):
  from luna_jax import demo
  demo.main(["--seq_len", "256", "--width", "32"])
  out = capsys.readouterr().out
  assert "luna" in out and "transformer" in out
  gap = float(out.split("removed = ")[1].split()[0])
  assert gap < 1e-4


def test_public_names_are_importable_from_the_top_level():
  missing = [name for name in luna_jax.__all__ if not hasattr(luna_jax, name)]
  assert not missing
  for name in ("LunaAttention", "LunaCausalAttention", "LinformerAttention", "LightweightConv",
               "DynamicConv", "MultiHeadAttention", "Encoder", "LraClassifier"):
    assert name in luna_jax.__all__ and getattr(luna_jax, name).__doc__


@pytest.mark.parametrize("mean,tol", [(100.0, 1e-5), (1000.0, 1e-4)])
def test_float32_layer_norm_is_two_pass(mean, tol):
  """Rows with |mean| >> std: Flax's default one-pass variance E[x^2] - mean^2 loses
  4e-4 (mean 100) and 3e-2 (mean 1000); two-pass, as torch, is near float32's floor
  (3e-6 and 3e-5: the mean itself rounds to a float32 ulp, 6e-5 at 1000)."""
  rng = np.random.default_rng(70)
  x = (mean + rng.normal(size=(64, 256))).astype(np.float32)
  ln = luna_jax.common.layer_norm("norm", jnp.float32, jnp.float32)
  params = ln.init(jax.random.key(0), x)["params"]
  params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape).astype(np.float32), params)
  want = ref.layer_norm(x.astype(np.float64), ref.to_np(params))
  assert rel_err(ln.apply({"params": params}, x), want) < tol
  one_pass = ln.clone(use_fast_variance=True).apply({"params": params}, x)
  assert rel_err(one_pass, want) > 10 * tol  # the tolerance does tell the two apart


def test_float32_luna_encoder_with_a_large_mean_p_matches_float64_reference():
  """The layers normalise through the same LayerNorm: a P parameter with mean 1000 (P's
  embedding LayerNorm) still gives the float64 reference's outputs in float32."""
  rng = np.random.default_rng(71)
  b, n, l, d = 2, 12, 6, 32
  x = rng.normal(size=(b, n, d)).astype(np.float32)
  mask = prefix_mask([12, 7], n)
  enc = luna_jax.Encoder(mixer="luna", num_layers=2, num_heads=4, ffn_dim=64,
                         mixer_options={"proj_len": l})
  params = enc.init(jax.random.key(2), x, mask_BxN=mask)["params"]
  params = dict(params, p_embed=params["p_embed"] + 1000.0)
  y, p = enc.apply({"params": params}, x, mask_BxN=mask)
  want_y, want_p = ref.luna_encoder(ref.to_np(params), x.astype(np.float64), mask, 4, l, 2,
                                    True, False)
  real, rows = mask[..., None], prefix_mask(mask.sum(-1), l)[..., None]
  assert rel_err(np.where(real, y, 0), np.where(real, want_y, 0)) < 1e-4
  assert rel_err(np.where(rows, p, 0), np.where(rows, want_p, 0)) < 1e-4


@pytest.mark.parametrize("init_style", ["xavier", "bert"])
def test_initial_p_std_is_d_to_the_minus_half_unless_p_init_is_bert(init_style):
  """The authors' LRA encoder keeps P ~ N(0, d^-1/2) even under BERT init (P std 0.0625 at
  d = 256); p_init="bert" gives their pre-training encoder's N(0, 0.02)."""
  d, l = 256, 256
  x = np.zeros((1, 4, d), np.float32)
  enc = luna_jax.Encoder(mixer="luna", num_heads=4, ffn_dim=32, init_style=init_style,
                         mixer_options={"proj_len": l})
  std = float(np.std(enc.init(jax.random.key(0), x)["params"]["p_embed"]))
  assert abs(std - d**-0.5) < 0.02 * d**-0.5  # 65,536 draws: std known to 0.3%
  bert = enc.clone(mixer_options={"proj_len": l, "p_init": "bert"}).init(
      jax.random.key(0), x)["params"]["p_embed"]
  assert abs(float(np.std(bert)) - 0.02) < 0.02 * 0.02
  with pytest.raises(ValueError, match="p_init='uniform' is not one of"):
    enc.clone(mixer_options={"proj_len": l, "p_init": "uniform"}).init(jax.random.key(0), x)
