"""The softmax Transformer baseline (Vaswani et al. 2017): multi-head attention (Eq. 1),
its encoder layer, settings and check.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_h)) V

Built on `jax.nn.dot_product_attention`, so GPUs and TPUs get their fused kernels; when
attention dropout is active the probabilities are needed explicitly and an einsum path
with the same semantics is used instead.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common, registry
from luna_jax.layers import LayerBase

Array = common.Array


class MultiHeadAttention(nn.Module):
  """Softmax multi-head self- or cross-attention, O(n m) in time and memory.

  Attributes:
    num_heads: attention heads; must divide the width.
    causal: position t attends only to positions <= t (self-attention).
    attention_dropout: dropout on the attention probabilities (training only).
    init_style: "xavier" (fairseq's MultiheadAttention init) or "bert".
    implementation: passed to jax.nn.dot_product_attention (None lets JAX choose;
      "xla" or "cudnn", the cuDNN kernel on GPUs).
  """

  num_heads: int
  causal: bool = False
  attention_dropout: float = 0.0
  init_style: str = "xavier"
  implementation: Optional[str] = None
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      context_BxMxD: Optional[Array] = None,
      *,
      context_mask_BxM: Optional[Array] = None,
      deterministic: bool = True,
  ) -> Array:
    """Args: x (B, N, D); context (B, M, D) or None for self-attention; context_mask
    True at real tokens. Returns (B, N, D)."""
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
    k_BxMxHxK = common.split_heads(proj("key")(c_BxMxD), h)
    v_BxMxHxK = common.split_heads(proj("value")(c_BxMxD), h)
    n, m = q_BxNxHxK.shape[1], k_BxMxHxK.shape[1]
    use_dropout = self.attention_dropout > 0 and not deterministic
    if use_dropout:
      mask_BxNxM = None
      if context_mask_BxM is not None or self.causal:
        mask_BxNxM = jnp.ones((x_BxNxD.shape[0], n, m), bool)
        if context_mask_BxM is not None:
          mask_BxNxM &= context_mask_BxM[:, None, :]
        if self.causal:
          mask_BxNxM &= jnp.tril(jnp.ones((n, m), bool))[None]
      out_BxNxHxK = _attend_with_query_mask(
          q_BxNxHxK * dh**-0.5, k_BxMxHxK, v_BxMxHxK, mask_BxNxM,
          nn.Dropout(self.attention_dropout), deterministic)
    else:
      mask = None if context_mask_BxM is None else context_mask_BxM[:, None, None, :]
      out_BxNxHxK = jax.nn.dot_product_attention(
          q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask=mask, is_causal=self.causal,
          implementation=self.implementation)
    return proj("out", role="out_proj")(common.merge_heads(out_BxNxHxK))


def _attend_with_query_mask(q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask_BxNxM, dropout,
                            deterministic):
  """Explicit softmax attention with a per-query mask; q is already scaled."""
  logits_BxHxNxM = jnp.einsum("bnhk,bmhk->bhnm", q_BxNxHxK, k_BxMxHxK)
  mask = None if mask_BxNxM is None else mask_BxNxM[:, None]
  probs = dropout(common.masked_softmax(logits_BxHxNxM, mask), deterministic=deterministic)
  return jnp.einsum("bhnm,bmhk->bnhk", probs.astype(v_BxMxHxK.dtype), v_BxMxHxK)


IMPLEMENTATIONS = (None, "xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class TransformerSettings:
  """The softmax baseline's own settings (the config's `model.transformer` block)."""

  implementation: Optional[str] = None  # jax.nn.dot_product_attention's: xla | cudnn;
                                        # unset: JAX chooses


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
      deterministic: bool = True,
  ) -> tuple[Array, Optional[Array]]:
    del p_mask_BxL  # no P
    if self.decode:
      raise ValueError(f"decode=True is not supported by the softmax Transformer layer: "
                       f"{NO_DECODE}")
    attn = MultiHeadAttention(
        num_heads=self.num_heads, causal=self.causal, attention_dropout=self.attention_dropout,
        init_style=self.init_style, implementation=self.implementation, dtype=self.dtype,
        param_dtype=self.param_dtype, name="attention")
    x = self.residual(
        x_BxNxD,
        lambda h: attn(h, context_mask_BxM=mask_BxN, deterministic=deterministic),
        "x_norm", deterministic)
    return self.feed_forward_block(x, deterministic), p_BxLxD


NO_DECODE = "it keeps no key/value cache; the causal stack runs whole sequences."


def check(settings: TransformerSettings, run: registry.RunShape) -> None:
  del run
  if settings.implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation={settings.implementation!r} is not one of "
                     f"{IMPLEMENTATIONS}.")


registry.register_mixer("transformer", registry.MixerSpec(
    layer=TransformerEncoderLayer, settings=TransformerSettings, normalize_before=True,
    check=check, no_decode_because=NO_DECODE))
