"""The softmax Transformer baseline: multi-head attention (Vaswani et al. 2017, Eq. 1).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_h)) V

Built on `jax.nn.dot_product_attention`, so GPUs and TPUs get their fused kernels; when
attention dropout is active the probabilities are needed explicitly and an einsum path
with the same semantics is used instead.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common

Array = common.Array


class MultiHeadAttention(nn.Module):
  """Softmax multi-head self- or cross-attention, O(n m) in time and memory.

  Attributes:
    num_heads: attention heads; must divide the width.
    causal: position t attends only to positions <= t (self-attention).
    attention_dropout: dropout on the attention probabilities (training only).
    init_style: "xavier" (fairseq's MultiheadAttention init) or "bert".
    implementation: passed to jax.nn.dot_product_attention (None lets JAX choose;
      "cudnn" forces the cuDNN kernel on GPUs).
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

    q = common.split_heads(proj("query")(x_BxNxD), h)
    k = common.split_heads(proj("key")(c_BxMxD), h)
    v = common.split_heads(proj("value")(c_BxMxD), h)
    n, m = q.shape[1], k.shape[1]
    use_dropout = self.attention_dropout > 0 and not deterministic
    if use_dropout:
      mask = None
      if context_mask_BxM is not None or self.causal:
        mask = jnp.ones((x_BxNxD.shape[0], n, m), bool)
        if context_mask_BxM is not None:
          mask &= context_mask_BxM[:, None, :]
        if self.causal:
          mask &= jnp.tril(jnp.ones((n, m), bool))[None]
      out = _attend_with_query_mask(
          q * dh**-0.5, k, v, mask, nn.Dropout(self.attention_dropout), deterministic
      )
    else:
      mask = None if context_mask_BxM is None else context_mask_BxM[:, None, None, :]
      out = jax.nn.dot_product_attention(
          q, k, v, mask=mask, is_causal=self.causal, implementation=self.implementation
      )
    return proj("out", role="out_proj")(common.merge_heads(out))


def _attend_with_query_mask(q, k, v, mask_BxNxM, dropout, deterministic):
  """Explicit softmax attention with a per-query mask; q is already scaled."""
  logits_BxHxNxM = jnp.einsum("bthk,bshk->bhts", q, k)
  mask = None if mask_BxNxM is None else mask_BxNxM[:, None]
  probs = dropout(common.masked_softmax(logits_BxHxNxM, mask), deterministic=deterministic)
  return jnp.einsum("bhts,bshk->bthk", probs.astype(v.dtype), v)
