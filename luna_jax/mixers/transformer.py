"""The softmax Transformer baseline (Vaswani et al. 2017): multi-head attention (Eq. 1),
its encoder layer, settings and check.

    Attention(Q, K, V) = Dropout(softmax(Q K^T / sqrt(d_h) + mask)) V

per head, the mask holding key padding and, when causal, the future. The strongest exact
softmax on each platform runs it (`attention_path` says which, for the benchmarks'
records):

  cudnn     cuDNN's fused flash attention through jax.nn.dot_product_attention: a CUDA
            GPU, float16/bfloat16, head width a multiple of 8 up to 128, no active dropout
            (that kernel takes none). Key padding goes in as key_value_seq_lengths, so a
            mask that is not a prefix of real tokens (or an all-padding example) switches
            that call to `chunked` at run time.
  chunked   `luna_jax.chunked_attention`: blocked online softmax, O(n) memory forward and
            backward, attention dropout drawn per block; everywhere else (CPU, TPU, float32
            on GPU) and whenever attention dropout is active.
  xla       jax.nn.dot_product_attention(implementation="xla"): the (N, M) scores in
            memory; only when asked for (the naive reference of the benchmarks).
  explicit  einsum, masked softmax, nn.Dropout on the (N, M) probabilities; asked for, or
            "xla" with active dropout.

A fully masked row (no allowed key) averages V uniformly over all M keys on every path,
as `common.masked_softmax` does (cudnn never sees one: such masks take `chunked`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common
from luna_jax.chunked_attention import chunked_attention
from luna_jax.layers import CrossAttentionBase, LayerBase
from luna_jax.mixers import spec
from luna_jax.platform import current_platform

Array = common.Array


IMPLEMENTATIONS = (None, "cudnn", "xla", "chunked", "explicit")
PATHS = ("cudnn", "xla", "chunked", "explicit")
_CUDNN_DTYPES = (jnp.float16, jnp.bfloat16)


def attention_path(
    platform: Optional[str],
    dropout_active: bool,
    *,
    implementation: Optional[str] = None,
    dtype: common.DType = jnp.float32,
    head_dim: Optional[int] = None,
) -> str:
  """The path ("cudnn" | "xla" | "chunked" | "explicit") a MultiHeadAttention call takes.

  Args:
    platform: where it runs, as `current_platform` names it ("cpu", "gpu", "tpu",
      "rocm"); "gpu" is a CUDA GPU (Ampere or later for cuDNN's flash attention). None:
      current_platform().
    dropout_active: attention_dropout > 0 and not deterministic (a training step).
    implementation: the module's setting. None (auto): cudnn where it runs (see the
      module docstring) without dropout, else chunked. "cudnn" and "xla" force those
      kernels; neither takes dropout, so with active dropout "cudnn" gives chunked and
      "xla" the equally materialised explicit path. "chunked" and "explicit" always.
    dtype: the module's computation dtype; head_dim: d / heads (None: not checked).

  "cudnn" runs cuDNN only for key masks that are a prefix of real tokens, as LRA's are;
  others run the chunked path inside that call (exact either way).
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation={implementation!r} is not one of {IMPLEMENTATIONS}.")
  if implementation in ("chunked", "explicit"):
    return implementation
  if dropout_active:
    return "explicit" if implementation == "xla" else "chunked"
  if implementation is not None:
    return implementation
  platform = current_platform() if platform is None else platform
  cudnn_runs = (platform in ("gpu", "cuda") and jnp.dtype(dtype) in _CUDNN_DTYPES
                and (head_dim is None or (head_dim % 8 == 0 and head_dim <= 128)))
  return "cudnn" if cudnn_runs else "chunked"


class MultiHeadAttention(nn.Module):
  """Softmax multi-head self- or cross-attention: O(n m) time; memory O(n m) on the xla
  and explicit paths, O(n + m) on the others.

  Attributes:
    num_heads: attention heads; must divide the width.
    causal: position t attends only to positions <= t (self-attention).
    attention_dropout: dropout on the attention probabilities (training only).
    init_style: "xavier" (fairseq's MultiheadAttention init) or "bert".
    implementation: None (auto), "cudnn", "xla", "chunked" or "explicit"; see
      `attention_path`, which says which one a call runs.
    decode: causal self-attention step by step through the 'cache' collection (keys and
      values of every position so far): initialise with `init(..., x_full)` in decode
      mode (the cache holds x_full's length, the most it can decode), then feed any
      number of tokens per call with `apply(..., mutable=['cache'])`. Decoding reads no
      padding mask: every fed token is real.
  """

  num_heads: int
  causal: bool = False
  attention_dropout: float = 0.0
  init_style: str = "xavier"
  implementation: Optional[str] = None
  decode: bool = False
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      context_BxMxD: Optional[Array] = None,
      *,
      context_mask_BxM: Optional[Array] = None,
      segment_ids_BxN: Optional[Array] = None,
      deterministic: bool = True,
      context_kv: Optional[tuple[Array, Array]] = None,
      return_context_kv: bool = False,
  ):
    """Args: x (B, N, D); context (B, M, D) or None for self-attention; context_mask
    True at real tokens; segment_ids (self-attention only): int (B, N), positions attend
    only to keys of their own segment (packed documents), through the explicit path;
    context_kv: the keys and values (B, M, H, K) of the context from an earlier call
    (cross-attention while decoding: the encoder output's, projected once), used instead
    of projecting the context; return_context_kv: also return them.
    Returns (B, N, D), or ((B, N, D), (keys, values)) with return_context_kv."""
    c_BxMxD = x_BxNxD if context_BxMxD is None else context_BxMxD
    d = x_BxNxD.shape[-1]
    h = self.num_heads
    dh = common.check_heads(d, h)
    x_BxNxD, c_BxMxD = x_BxNxD.astype(self.dtype), c_BxMxD.astype(self.dtype)

    def proj(name, role="in_proj"):
      return common.dense(
          d, d, role=role, init_style=self.init_style, dtype=self.dtype,
          param_dtype=self.param_dtype, name=name,
      )

    q_BxNxHxK = common.split_heads(proj("query")(x_BxNxD), h)
    if context_kv is not None:
      k_BxMxHxK, v_BxMxHxK = context_kv
    else:
      k_BxMxHxK = common.split_heads(proj("key")(c_BxMxD), h)
      v_BxMxHxK = common.split_heads(proj("value")(c_BxMxD), h)
    use_dropout = self.attention_dropout > 0 and not deterministic
    if self.decode:
      if not self.causal or context_BxMxD is not None:
        raise ValueError("decode=True is for causal self-attention (causal=True, no "
                         "context).")
      initialized = self.has_variable("cache", "cached_key")
      key = self.variable("cache", "cached_key", jnp.zeros, k_BxMxHxK.shape, k_BxMxHxK.dtype)
      value = self.variable("cache", "cached_value", jnp.zeros, v_BxMxHxK.shape,
                            v_BxMxHxK.dtype)
      index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
      if initialized:  # (init runs the full pass below, which makes the parameters)
        start, s = index.value, x_BxNxD.shape[1]
        at = (jnp.int32(0), start, jnp.int32(0), jnp.int32(0))
        key.value = jax.lax.dynamic_update_slice(key.value, k_BxMxHxK, at)
        value.value = jax.lax.dynamic_update_slice(value.value, v_BxMxHxK, at)
        index.value = start + s
        # New token i (position start + i) sees cached positions <= start + i.
        visible_NxM = (jnp.arange(key.value.shape[1])[None, :]
                       <= start + jnp.arange(s)[:, None])
        mask_BxNxM = jnp.broadcast_to(visible_NxM[None], (x_BxNxD.shape[0], *visible_NxM.shape))
        out_BxNxHxK = _attend_with_query_mask(
            q_BxNxHxK * dh**-0.5, key.value, value.value, mask_BxNxM,
            nn.Dropout(self.attention_dropout), not use_dropout)
        return proj("out", role="out_proj")(common.merge_heads(out_BxNxHxK))
    path = attention_path(None, use_dropout, implementation=self.implementation,
                          dtype=self.dtype, head_dim=dh)
    if segment_ids_BxN is not None:  # per-query masks: the explicit path takes them
      if context_BxMxD is not None:
        raise ValueError("segment_ids_BxN is for self-attention (no context).")
      path = "explicit"
    if path == "chunked":
      out_BxNxHxK = chunked_attention(
          q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, context_mask_BxM, causal=self.causal,
          dropout_rate=self.attention_dropout if use_dropout else 0.0,
          dropout_key=self.make_rng("dropout") if use_dropout else None)
    elif path == "cudnn":
      out_BxNxHxK = _cudnn_attention(q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, context_mask_BxM,
                                     self.causal)
    elif path == "xla":
      mask = None if context_mask_BxM is None else context_mask_BxM[:, None, None, :]
      out_BxNxHxK = jax.nn.dot_product_attention(
          q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask=mask, is_causal=self.causal,
          implementation="xla")
    else:
      mask_BxNxM = _query_mask(context_mask_BxM, self.causal, q_BxNxHxK.shape[:2],
                               k_BxMxHxK.shape[1])
      if segment_ids_BxN is not None:
        same_BxNxM = segment_ids_BxN[:, :, None] == segment_ids_BxN[:, None, :]
        mask_BxNxM = same_BxNxM if mask_BxNxM is None else mask_BxNxM & same_BxNxM
      out_BxNxHxK = _attend_with_query_mask(
          q_BxNxHxK * dh**-0.5, k_BxMxHxK, v_BxMxHxK, mask_BxNxM,
          nn.Dropout(self.attention_dropout), not use_dropout)
    out_BxNxD = proj("out", role="out_proj")(common.merge_heads(out_BxNxHxK))
    if return_context_kv:
      return out_BxNxD, (k_BxMxHxK, v_BxMxHxK)
    return out_BxNxD


def _cudnn_attention(q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask_BxM, causal):
  """cuDNN's kernel, padding given as key lengths; masks that are not a prefix of real
  tokens (or empty) run the chunked path instead, so the result is exact either way."""
  def fused(lengths_B):
    return jax.nn.dot_product_attention(
        q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, is_causal=causal, key_value_seq_lengths=lengths_B,
        implementation="cudnn")

  if mask_BxM is None:
    return fused(None)
  mask_BxM = jnp.broadcast_to(mask_BxM, (q_BxNxHxK.shape[0], k_BxMxHxK.shape[1]))
  lengths_B = jnp.sum(mask_BxM, axis=-1, dtype=jnp.int32)
  prefix_BxM = jnp.arange(mask_BxM.shape[-1])[None, :] < lengths_B[:, None]
  is_prefix = jnp.all(mask_BxM == prefix_BxM) & jnp.all(lengths_B > 0)
  return jax.lax.cond(
      is_prefix, fused,
      lambda _: chunked_attention(q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask_BxM, causal=causal),
      lengths_B)


def _query_mask(mask_BxM, causal, batch_and_n, m):
  """The explicit path's (B, N, M) mask, or None when nothing is masked."""
  if mask_BxM is None and not causal:
    return None
  mask_BxNxM = jnp.ones((*batch_and_n, m), bool)
  if mask_BxM is not None:
    mask_BxNxM &= mask_BxM[:, None, :]
  if causal:
    mask_BxNxM &= jnp.tril(jnp.ones((batch_and_n[1], m), bool))[None]
  return mask_BxNxM


def _attend_with_query_mask(q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask_BxNxM, dropout,
                            deterministic):
  """Explicit softmax attention with a per-query mask; q is already scaled."""
  logits_BxHxNxM = jnp.einsum("bnhk,bmhk->bhnm", q_BxNxHxK, k_BxMxHxK)
  mask = None if mask_BxNxM is None else mask_BxNxM[:, None]
  probs = dropout(common.masked_softmax(logits_BxHxNxM, mask), deterministic=deterministic)
  return jnp.einsum("bhnm,bmhk->bnhk", probs.astype(v_BxMxHxK.dtype), v_BxMxHxK)


@dataclasses.dataclass(frozen=True)
class TransformerSettings:
  """The softmax baseline's own settings (the config's `model.transformer` block)."""

  implementation: Optional[str] = None  # cudnn | xla | chunked | explicit; unset: auto
                                        # (see transformer.attention_path)


class TransformerEncoderLayer(LayerBase):
  """The softmax Transformer layer (pre-LN by default, as registered below):
      X_A = X + Dropout(MHA(LN(X)));  X' = X_A + Dropout(FFN(LN(X_A)))
  Post-LN when normalize_before=False. P, if given, passes through unchanged.

  Extra attribute: implementation (see MultiHeadAttention).
  """

  implementation: Optional[str] = None

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      p_BxLxD: Optional[Array] = None,
      *,
      mask_BxN: Optional[Array] = None,
      p_mask_BxL: Optional[Array] = None,
      segment_ids_BxN: Optional[Array] = None,
      deterministic: bool = True,
  ) -> tuple[Array, Optional[Array]]:
    del p_mask_BxL  # no P
    attn = MultiHeadAttention(
        num_heads=self.num_heads, causal=self.causal, attention_dropout=self.attention_dropout,
        init_style=self.init_style, implementation=self.implementation, decode=self.decode,
        dtype=self.dtype, param_dtype=self.param_dtype, name="attention")
    x = self.residual(
        x_BxNxD,
        lambda h: attn(h, context_mask_BxM=mask_BxN, segment_ids_BxN=segment_ids_BxN,
                       deterministic=deterministic),
        "x_norm", deterministic)
    return self.feed_forward_block(x, deterministic), p_BxLxD


class SoftmaxCrossAttention(CrossAttentionBase):
  """Softmax encoder-decoder attention (Vaswani et al. 2017, Sec. 3.2.3): the decoder's
  tokens attend to the encoder output, its padding masked; the registry's default
  `cross_attention` (`register_cross_attention` below), used by the Transformer's and the
  convolutions' decoders. P passes through (returns (Y_X, None, the memory's keys and
  values))."""

  @nn.compact
  def __call__(self, x_BxNxD, p_BxLxD, *, memory_BxMxD, memory_mask_BxM, p_mask_BxL,
               deterministic: bool = True, static=None):
    del p_BxLxD, p_mask_BxL
    y, kv = MultiHeadAttention(
        num_heads=self.num_heads, attention_dropout=self.attention_dropout,
        init_style=self.init_style, dtype=self.dtype, param_dtype=self.param_dtype,
        name="attention")(x_BxNxD, memory_BxMxD, context_mask_BxM=memory_mask_BxM,
                          deterministic=deterministic, context_kv=static,
                          return_context_kv=True)
    return y, None, kv


def check(settings: TransformerSettings, run: spec.RunShape) -> None:
  del run
  if settings.implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation={settings.implementation!r} is not one of "
                     f"{IMPLEMENTATIONS}.")


def softmax_path(settings: TransformerSettings, platform: str, dropout_active: bool, dtype,
                 head_dim: int) -> str:
  return attention_path(platform, dropout_active, implementation=settings.implementation,
                        dtype=dtype, head_dim=head_dim)


spec.register_mixer("transformer", spec.MixerSpec(
    layer=TransformerEncoderLayer, settings=TransformerSettings, normalize_before=True,
    check=check, no_segments_because="", softmax_path=softmax_path))
spec.register_cross_attention(SoftmaxCrossAttention)
