"""The softmax baseline: MultiHeadAttention, its chunked (online-softmax) path, the choice
of path, and the pre-LN Transformer layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from luna_jax import chunked_attention as chunked_attention_lib
from luna_jax import common
from luna_jax.chunked_attention import chunked_attention
from luna_jax.mixers import transformer
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


# The chunked (online-softmax) path and the choice of path.

def _qkv(rng, b, n, m, h, k, dtype=np.float64):
  q = rng.normal(size=(b, n, h, k))
  kk, v = rng.normal(size=(2, b, m, h, k))
  return tuple(jnp.asarray(a, dtype) for a in (q, kk, v))


def _explicit(q, k, v, mask, causal, keep=None, rate=0.0):
  """The module's explicit path, given a dense keep mask in place of nn.Dropout."""
  mask_BxNxM = transformer._query_mask(None if mask is None else jnp.asarray(mask), causal,
                                       q.shape[:2], k.shape[1])
  dropout = ((lambda a, deterministic: a) if keep is None
             else (lambda a, deterministic: jnp.where(keep, a / (1 - rate), 0)))
  return _attend_with_query_mask(q * q.shape[-1]**-0.5, k, v, mask_BxNxM, dropout, False)


# (n, m, block_q, block_k): blocks that divide the lengths, that do not (internal
# padding), a single block, and cross-attention lengths.
SHAPES = [(32, 32, 8, 8), (37, 37, 8, 16), (29, 29, 64, 5), (9, 9, None, None),
          (24, 40, 8, 16), (40, 24, 16, 7)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,m,block_q,block_k", SHAPES)
def test_chunked_matches_numpy_reference(causal, n, m, block_q, block_k):
  rng = np.random.default_rng(n + m + int(causal))
  q, k, v = _qkv(rng, 3, n, m, 2, 4)
  mask = random_mask(rng, 3, m)
  mask[2] = False  # an all-padding example: finite, v averaged over all keys
  y = chunked_attention(q, k, v, jnp.asarray(mask), causal=causal, block_q=block_q,
                        block_k=block_k)
  want = ref.softmax_attention(q, k, v, mask, causal)
  assert y.shape == (3, n, 2, 4) and np.all(np.isfinite(y))
  assert rel_err(y, want) < 1e-12
  y32 = chunked_attention(*(a.astype(jnp.float32) for a in (q, k, v)), jnp.asarray(mask),
                          causal=causal, block_q=block_q, block_k=block_k)
  assert y32.dtype == jnp.float32 and rel_err(y32, want) < 1e-5
  unmasked = chunked_attention(q, k, v, None, causal=causal, block_q=block_q, block_k=block_k)
  assert rel_err(unmasked, ref.softmax_attention(q, k, v, None, causal)) < 1e-12


@pytest.mark.parametrize("causal", [False, True])
def test_skipped_blocks_change_nothing(causal):
  """Key blocks that are padding in the whole batch (and, causal, the future) are skipped;
  with no fully masked row anywhere, nothing else may change."""
  rng = np.random.default_rng(5 + int(causal))
  q, k, v = _qkv(rng, 2, 32, 32, 2, 4)
  mask = np.arange(32)[None, :] < np.array([[20], [13]])  # keys 24.. are padding in both
  visit = chunked_attention_lib._visit_table(
      chunked_attention_lib._Config(32, 32, 8, 8, causal, 0.0), jnp.asarray(mask),
      jnp.asarray(mask).reshape(2, 4, 8).transpose(1, 0, 2), 4, 4)
  want_visit = np.ones((4, 4), bool)
  want_visit[:, 3] = False
  if causal:
    want_visit &= np.tril(np.ones((4, 4), bool))
  np.testing.assert_array_equal(visit, want_visit)

  def chunked(q, k, v):
    return chunked_attention(q, k, v, jnp.asarray(mask), causal=causal, block_q=8, block_k=8)

  assert rel_err(chunked(q, k, v), ref.softmax_attention(q, k, v, mask, causal)) < 1e-12
  got = jax.grad(lambda *a: jnp.sum(chunked(*a) ** 2), argnums=(0, 1, 2))(q, k, v)
  want = jax.grad(lambda *a: jnp.sum(_explicit(*a, mask, causal) ** 2), argnums=(0, 1, 2))(q, k, v)
  for g, e in zip(got, want, strict=True):
    assert rel_err(g, e) < 1e-12


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_gradients_equal_explicit_gradients(causal):
  rng = np.random.default_rng(10 + int(causal))
  q, k, v = _qkv(rng, 3, 21, 21, 2, 4)
  mask = random_mask(rng, 3, 21)
  mask[1, :5] = False  # causal rows 0..4 of example 1 have no allowed key
  mask[2] = False
  w = jnp.asarray(rng.normal(size=q.shape))

  def loss(fn):
    return lambda q, k, v: jnp.sum(fn(q, k, v) * w)

  chunked = loss(lambda q, k, v: chunked_attention(q, k, v, jnp.asarray(mask), causal=causal,
                                                   block_q=8, block_k=5))
  explicit = loss(lambda q, k, v: _explicit(q, k, v, mask, causal))
  got = jax.grad(chunked, argnums=(0, 1, 2))(q, k, v)
  want = jax.grad(explicit, argnums=(0, 1, 2))(q, k, v)
  for g, e in zip(got, want, strict=True):
    assert np.all(np.isfinite(g)) and rel_err(g, e) < 1e-12


def test_chunked_broadcasts_a_shared_mask():
  rng = np.random.default_rng(13)
  q, k, v = _qkv(rng, 2, 10, 10, 2, 4)
  mask = random_mask(rng, 1, 10)
  y = chunked_attention(q, k, v, jnp.asarray(mask), block_q=4, block_k=3)
  assert rel_err(y, ref.softmax_attention(q, k, v, np.repeat(mask, 2, 0))) < 1e-12


def test_chunked_gradients_in_float32():
  rng = np.random.default_rng(12)
  q, k, v = _qkv(rng, 2, 50, 50, 2, 8, np.float32)
  mask = random_mask(rng, 2, 50)
  fns = [lambda q, k, v: chunked_attention(q, k, v, jnp.asarray(mask), causal=True),
         lambda q, k, v: _explicit(q, k, v, mask, True)]
  grads = [jax.grad(lambda *a, f=f: jnp.sum(jnp.sin(f(*a))), argnums=(0, 1, 2))(q, k, v)
           for f in fns]
  for g, e in zip(*grads, strict=True):
    assert g.dtype == jnp.float32 and rel_err(g, e) < 1e-5


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_dropout_equals_explicit_with_the_same_masks(causal):
  rng = np.random.default_rng(20 + int(causal))
  q, k, v = _qkv(rng, 2, 19, 19, 3, 4)
  mask = random_mask(rng, 2, 19)
  key, rate = jax.random.key(5), 0.3
  keep = chunked_attention_lib.keep_mask(key, rate, (2, 3, 19, 19), 8, 6)
  assert keep.shape == (2, 3, 19, 19) and 0.5 < float(keep.mean()) < 0.9

  def chunked(q, k, v):
    return chunked_attention(q, k, v, jnp.asarray(mask), causal=causal, block_q=8, block_k=6,
                             dropout_rate=rate, dropout_key=key)

  y = chunked(q, k, v)
  assert rel_err(y, ref.softmax_attention(q, k, v, mask, causal, np.asarray(keep), rate)) < 1e-12
  got = jax.grad(lambda *a: jnp.sum(chunked(*a) ** 2), argnums=(0, 1, 2))(q, k, v)
  want = jax.grad(lambda *a: jnp.sum(_explicit(*a, mask, causal, keep, rate) ** 2),
                  argnums=(0, 1, 2))(q, k, v)
  for g, e in zip(got, want, strict=True):
    assert rel_err(g, e) < 1e-12


def test_chunked_dropout_is_reproducible_and_unbiased():
  rng = np.random.default_rng(30)
  q, k, v = _qkv(rng, 2, 16, 16, 2, 4)
  mask = jnp.asarray(random_mask(rng, 2, 16))

  def run(key, rate=0.3, block_q=8):
    return chunked_attention(q, k, v, mask, block_q=block_q, block_k=8, dropout_rate=rate,
                             dropout_key=key)

  key = jax.random.key(1)
  undropped = chunked_attention(q, k, v, mask, block_q=8, block_k=8)
  np.testing.assert_array_equal(run(key), run(key))  # the same step key: the same masks
  assert not np.allclose(run(key), run(jax.random.key(2)))
  np.testing.assert_array_equal(run(key, rate=0.0), undropped)  # zero dropout is none
  # The mask pattern, not its distribution, depends on the block sizes.
  assert not np.allclose(run(key), run(key, block_q=16))
  mean = jnp.mean(jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(3), 2000)), axis=0)
  assert rel_err(mean, undropped) < 0.03


def test_chunked_bfloat16_keeps_float32_statistics():
  rng = np.random.default_rng(40)
  q, k, v = _qkv(rng, 2, 40, 40, 2, 8)
  q = q * 8.0  # peaked softmax: bfloat16 statistics would lose it
  mask = random_mask(rng, 2, 40)
  args = [a.astype(jnp.bfloat16) for a in (q, k, v)]
  y = chunked_attention(*args, jnp.asarray(mask), causal=True, block_q=16, block_k=16)
  want = ref.softmax_attention(*(np.asarray(a, np.float64) for a in args), mask, True)
  assert y.dtype == jnp.bfloat16 and rel_err(y, want) < 1e-2
  explicit = _explicit(*args, mask, True)
  assert rel_err(y, explicit) < 1e-2


def test_all_padding_example_is_finite_with_dropout_and_gradients():
  x = np.ones((2, 12, 8), np.float32)
  mask = np.array([[True] * 12, [False] * 12])
  module = luna_jax.MultiHeadAttention(num_heads=2, causal=True, attention_dropout=0.2)
  params = module.init(jax.random.key(0), x)["params"]

  def loss(params):
    y = module.apply({"params": params}, x, context_mask_BxM=mask, deterministic=False,
                     rngs={"dropout": jax.random.key(1)})
    return jnp.sum(y**2)

  value, grads = jax.value_and_grad(loss)(params)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def _fwd_bwd_temp_bytes(n, causal):
  shape = jax.ShapeDtypeStruct((1, n, 2, 32), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, n), bool)

  def loss(q, k, v, mask):
    return jnp.sum(chunked_attention(q, k, v, mask, causal=causal, dropout_rate=0.1,
                                     dropout_key=jax.random.key(0)))

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  return grad.lower(shape, shape, shape, mask).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_memory_grows_linearly(causal):
  """Compiled temporaries of forward + backward (a memory-structure check, not timing)."""
  temp = {n: _fwd_bwd_temp_bytes(n, causal) for n in (2048, 4096, 8192)}
  assert temp[4096] <= 2.3 * temp[2048] and temp[8192] <= 2.3 * temp[4096], temp
  scores_bytes = 2 * 4096 * 4096 * 4  # one float32 (H, N, N) score tensor at n = 4096
  assert temp[4096] < scores_bytes / 4, temp


def test_attention_path_selection():
  bf16 = jnp.bfloat16
  path = transformer.attention_path
  assert path("cpu", False) == path("cpu", True) == "chunked"
  assert path("tpu", False, dtype=bf16) == "chunked"
  assert path("gpu", False, dtype=bf16, head_dim=64) == "cudnn"
  assert path("gpu", True, dtype=bf16, head_dim=64) == "chunked"  # cuDNN takes no dropout
  assert path("gpu", False, dtype=jnp.float32, head_dim=64) == "chunked"  # not in cuDNN
  assert path("gpu", False, dtype=bf16, head_dim=12) == "chunked"
  assert path("gpu", False, dtype=bf16, head_dim=256) == "chunked"
  assert path("rocm", False, dtype=bf16, head_dim=64) == "chunked"
  assert path("cpu", False, implementation="xla") == "xla"
  assert path("cpu", True, implementation="xla") == "explicit"
  assert path("gpu", True, dtype=bf16, implementation="cudnn") == "chunked"
  assert path("gpu", False, implementation="cudnn") == "cudnn"
  assert path("gpu", False, dtype=bf16, implementation="explicit") == "explicit"
  assert path("gpu", True, implementation="chunked") == "chunked"
  assert path(None, False) == path(transformer.current_platform(), False)
  if jax.default_backend() == "cpu":
    assert transformer.current_platform() == "cpu" and path(None, False) == "chunked"
  with pytest.raises(ValueError, match="implementation='flash' is not one of"):
    path("cpu", False, implementation="flash")
  transformer.check(transformer.TransformerSettings(implementation="chunked"), None)
  with pytest.raises(ValueError, match="is not one of"):
    transformer.check(transformer.TransformerSettings(implementation="flash"), None)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's choice")
@pytest.mark.parametrize("dropout", [False, True])
def test_module_runs_chunked_on_cpu_by_default(monkeypatch, dropout):
  calls = []

  def spy(*args, **kwargs):
    calls.append(kwargs)
    return chunked_attention(*args, **kwargs)

  monkeypatch.setattr(transformer, "chunked_attention", spy)
  x = np.ones((2, 6, 8), np.float32)
  module = luna_jax.MultiHeadAttention(num_heads=2, attention_dropout=0.1)
  params = module.init(jax.random.key(0), x)["params"]
  calls.clear()
  module.apply({"params": params}, x, deterministic=not dropout,
               rngs={"dropout": jax.random.key(1)})
  assert len(calls) == 1 and (calls[0]["dropout_rate"] > 0) == dropout


@pytest.mark.parametrize("causal", [False, True])
def test_module_paths_agree(causal):
  rng = np.random.default_rng(50 + int(causal))
  x = rng.normal(size=(2, 11, 12))
  mask = random_mask(rng, 2, 11)
  mask[1] = False
  outs = {}
  for implementation in (None, "chunked", "explicit", "xla"):
    module = luna_jax.MultiHeadAttention(num_heads=3, causal=causal,
                                         implementation=implementation, **F64)
    params = module.init(jax.random.key(0), x)["params"]
    outs[implementation] = module.apply({"params": params}, x, context_mask_BxM=mask)
  for implementation, y in outs.items():
    # jax.nn.dot_product_attention's xla softmax runs in float32 even for float64 inputs.
    tol = 1e-6 if implementation == "xla" else 1e-12
    assert rel_err(y, outs["explicit"]) < tol, implementation


@pytest.mark.parametrize("causal", [False, True])
def test_cudnn_wrapper_passes_prefix_masks_as_lengths(monkeypatch, causal):
  """cuDNN itself needs a GPU; jax.nn's xla kernel stands in for it to check the wrapper:
  prefix masks go in as key lengths, other masks (and all-padding examples) run chunked."""
  real = jax.nn.dot_product_attention

  def stand_in(*args, implementation=None, **kwargs):
    assert implementation == "cudnn"
    return real(*args, implementation="xla", **kwargs)

  monkeypatch.setattr(jax.nn, "dot_product_attention", stand_in)
  rng = np.random.default_rng(60 + int(causal))
  q, k, v = _qkv(rng, 3, 12, 12, 2, 8, np.float32)
  prefix = np.arange(12)[None, :] < np.array([[12], [5], [9]])
  scattered = random_mask(rng, 3, 12)
  scattered[:, 0] = False
  empty = prefix.copy()
  empty[1] = False
  for mask in (None, prefix, scattered, empty):
    y = jax.jit(transformer._cudnn_attention, static_argnums=4)(
        q, k, v, None if mask is None else jnp.asarray(mask), causal)
    assert rel_err(y, ref.softmax_attention(q, k, v, mask, causal)) < 1e-5


@pytest.mark.skipif(transformer.current_platform() != "gpu",
                    reason="cuDNN needs a CUDA GPU (benchmarks/accelerator_check.sh runs this)")
@pytest.mark.parametrize("causal", [False, True])
def test_cudnn_agrees_with_the_chunked_path_on_a_gpu(causal):
  """The real cuDNN kernel, in bfloat16, against the chunked path on the same inputs and
  prefix masks (as LRA's): the same attention up to bfloat16 rounding."""
  rng = np.random.default_rng(70 + int(causal))
  x = jnp.asarray(rng.normal(size=(4, 256, 128)), jnp.bfloat16)
  mask = jnp.asarray(np.arange(256)[None, :] < np.array([[256], [100], [200], [31]]))
  outs = {}
  for implementation in ("cudnn", "chunked"):
    module = luna_jax.MultiHeadAttention(num_heads=2, causal=causal,
                                         implementation=implementation, dtype=jnp.bfloat16)
    params = module.init(jax.random.key(0), x)["params"]
    outs[implementation] = np.asarray(
        module.apply({"params": params}, x, context_mask_BxM=mask), np.float32)
  real = np.asarray(mask)[..., None]
  assert rel_err(np.where(real, outs["cudnn"], 0), np.where(real, outs["chunked"], 0)) < 2e-2
