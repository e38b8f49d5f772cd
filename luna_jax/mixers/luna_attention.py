"""Bidirectional Luna attention: pack then unpack (Ma et al. 2021, Eqs. 6-8).

    Y_P = Attn(P W_pq, C W_pk, C W_pv)            pack   (no output projection)
    Y_X = Attn(X W_q, Y_P W_k, Y_P W_v) W_o        unpack

Cost O(n l d) for n tokens and a projection length l, instead of O(n^2 d).
Semantics follow the authors' fairseq `LunarMultiheadAttention`: queries scaled by the
head width after the bias, softmax in float32, attention dropout on both attention maps,
tied (one projection for K and V) or untied K/V (the LRA runs used untied).

The pack can be computed in either of two orders, equal in exact arithmetic:

    project first:  softmax(q_h (C W_k,h + b_k,h)^T) (C W_v,h + b_v,h)      per head h
    attend first:   a_h = softmax((q_h W_k,h^T) C^T),
                    (a_h C) W_v,h + (sum_j a_h,j) b_v,h

The attend-first order never projects the n context rows (the constant q_h . b_k,h drops
out of the softmax), so its context products cost 2 h_p l d per token instead of
(2 or 1) d^2 + 2 l d; `pack_order="auto"` picks the cheaper, which is attend-first
whenever 2 h_p l < d + 2 l (untied; h_p l < d/2 + l tied), as at l = 16 with d >= 128.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from luna_jax import common

Array = common.Array

# dot_general dimension numbers over (B, ., D) operands, batch B in front.
_CONTRACT_FEATURES = (((2,), (2,)), ((0,), (0,)))  # (B, R, D) x (B, M, D) -> (B, R, M)
_CONTRACT_TOKENS = (((2,), (1,)), ((0,), (0,)))  # (B, R, M) x (B, M, D) -> (B, R, D)


class LunaAttention(nn.Module):
  """Luna's nested attention: P packs the context, X attends to the packed result.

  Attributes:
    num_heads: heads of the unpack attention (X attends to packed P).
    pack_heads: heads of the pack attention (P attends to the context); None = num_heads.
    tied_kv: one projection for keys and values (5 d x d maps per block) instead of
      separate ones (7 maps; the setting of the Luna LRA runs).
    attention_dropout: dropout rate on both attention maps.
    init_style: "xavier" (the reference's initialisation) or "bert" (N(0, 0.02), zero biases).
    pack_order: "project_first", "attend_first" (see the module docstring; same
      parameters, same result up to rounding) or "auto", the one with fewer FLOPs.
    dtype: computation dtype; softmax always runs in at least float32.
    param_dtype: parameter dtype.
  """

  num_heads: int
  pack_heads: Optional[int] = None
  tied_kv: bool = False
  attention_dropout: float = 0.0
  init_style: str = "xavier"
  pack_order: str = "auto"
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      p_BxLxD: Array,
      context_BxMxD: Optional[Array] = None,
      *,
      context_mask_BxM: Optional[Array] = None,
      p_mask_BxL: Optional[Array] = None,
      deterministic: bool = True,
      unpack_kv: Optional[tuple[Array, Array]] = None,
      return_unpack_kv: bool = False,
  ):
    """Packs the context into P's l rows, then lets X attend to them.

    Args:
      x_BxNxD: queries X.
      p_BxLxD: the projected sequence P (one per example; broadcast a learned P first).
      context_BxMxD: the context C that P packs; None for self-attention (C = X).
      context_mask_BxM: True at real context tokens, False at padding (pack ignores it).
      p_mask_BxL: True at P rows X may attend to; False rows are excluded from unpack
        (Luna's "dynamic projection": rows j >= length of the example).
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.
      unpack_kv: the unpack's keys and values (B, H, L, K) from an earlier call with the
        same P and context (decoding: they depend on the source only); the pack is then
        skipped and Y_P is None.
      return_unpack_kv: also return those keys and values.

    Returns:
      (Y_X of shape (B, N, D), Y_P of shape (B, L, D)): the unpacked output (after the
      output projection) and the packed context (no output projection); with
      return_unpack_kv, (Y_X, Y_P, (K, V)).
    """
    c_BxMxD = x_BxNxD if context_BxMxD is None else context_BxMxD
    d = x_BxNxD.shape[-1]
    if p_BxLxD.shape[-1] != d or c_BxMxD.shape[-1] != d:
      raise ValueError(
          f"X, P and the context must share the width: got {x_BxNxD.shape[-1]}, "
          f"{p_BxLxD.shape[-1]} and {c_BxMxD.shape[-1]}."
      )
    h = self.num_heads
    hp = self.pack_heads or h
    dh = common.check_heads(d, h)
    dhp = common.check_heads(d, hp, "pack_heads")
    x_BxNxD, p_BxLxD, c_BxMxD = (a.astype(self.dtype) for a in (x_BxNxD, p_BxLxD, c_BxMxD))

    def proj(name, role="in_proj"):
      return common.dense(
          d, d, role=role, init_style=self.init_style, dtype=self.dtype,
          param_dtype=self.param_dtype, name=name,
      )

    dropout = nn.Dropout(self.attention_dropout)

    # Pack: P attends to the context. Projections run on (rows, D) views and heads are
    # moved in front once (common.heads_first), so no product copies a transposed operand.
    def project(name, a_BxTxD, role="in_proj"):
      return common.dense_rows(proj(name, role), a_BxTxD)

    y_p_BxLxD = None
    if unpack_kv is None:
      pq_BxHxLxK = common.heads_first(project("p_query", p_BxLxD) * dhp**-0.5, hp)
      kv_names = ("p_context",) if self.tied_kv else ("p_key", "p_value")
      if self._attend_first(hp, p_BxLxD.shape[1], d):
        packed_BxHxLxK = self._pack_attend_first(
            pq_BxHxLxK, c_BxMxD, kv_names, context_mask_BxM, dropout=dropout,
            deterministic=deterministic)
      else:
        pk_BxHxMxK = pv_BxHxMxK = common.heads_first(project(kv_names[0], c_BxMxD), hp)
        if not self.tied_kv:
          pv_BxHxMxK = common.heads_first(project(kv_names[1], c_BxMxD), hp)
        packed_BxHxLxK = common.attend_heads_first(
            pq_BxHxLxK, pk_BxHxMxK, pv_BxHxMxK, context_mask_BxM, dropout, deterministic)
      y_p_BxLxD = common.heads_last(packed_BxHxLxK)

    # Unpack: X attends to a new projection of the packed context.
    q_BxHxNxK = common.heads_first(project("query", x_BxNxD) * dh**-0.5, h)
    if unpack_kv is not None:
      k_BxHxLxK, v_BxHxLxK = unpack_kv
    elif self.tied_kv:
      k_BxHxLxK = v_BxHxLxK = common.heads_first(project("context", y_p_BxLxD), h)
    else:
      k_BxHxLxK = common.heads_first(project("key", y_p_BxLxD), h)
      v_BxHxLxK = common.heads_first(project("value", y_p_BxLxD), h)
    out_BxHxNxK = common.attend_heads_first(
        q_BxHxNxK, k_BxHxLxK, v_BxHxLxK, p_mask_BxL, dropout, deterministic)
    y_x_BxNxD = project("out", common.heads_last(out_BxHxNxK), role="out_proj")
    if return_unpack_kv:
      return y_x_BxNxD, y_p_BxLxD, (k_BxHxLxK, v_BxHxLxK)
    return y_x_BxNxD, y_p_BxLxD

  def _attend_first(self, hp: int, l: int, d: int) -> bool:
    orders = ("auto", "project_first", "attend_first")
    if self.pack_order not in orders:
      raise ValueError(f"pack_order={self.pack_order!r} is not one of {orders}.")
    if self.pack_order != "auto":
      return self.pack_order == "attend_first"
    # Per context token: project-first costs (2 or 1) d^2 + 2 l d multiply-adds,
    # attend-first 2 h_p l d.
    projections = 1 if self.tied_kv else 2
    return 2 * hp * l < projections * d + 2 * l

  def _pack_attend_first(self, pq_BxHxLxK, c_BxMxD, kv_names, context_mask_BxM, *, dropout,
                         deterministic):
    """The pack in attend-first order (module docstring). Returns (B, H, L, K)."""
    b, hp, l, dhp = pq_BxHxLxK.shape
    d = c_BxMxD.shape[-1]

    def weights(name):
      kernel, bias = common.DenseWeights(d, d, role="in_proj", init_style=self.init_style,
                                         param_dtype=self.param_dtype, name=name)()
      return kernel.astype(self.dtype).reshape(d, hp, dhp), bias.astype(self.dtype)

    # q . b_k is constant over the keys, so the softmax drops it.
    wk_DxHxK, bk_D = weights(kv_names[0])
    wv_DxHxK, bv_D = weights(kv_names[1]) if len(kv_names) > 1 else (wk_DxHxK, bk_D)
    qw_BxHLxD = jnp.einsum("bhlk,dhk->bhld", pq_BxHxLxK, wk_DxHxK).reshape(b, hp * l, d)
    logits_BxHxLxM = lax.dot_general(qw_BxHLxD, c_BxMxD, _CONTRACT_FEATURES).reshape(
        b, hp, l, -1)
    mask = None if context_mask_BxM is None else context_mask_BxM[:, None, None, :]
    probs_BxHxLxM = dropout(common.masked_softmax(logits_BxHxLxM, mask),
                            deterministic=deterministic).astype(self.dtype)
    pooled_BxHLxD = lax.dot_general(probs_BxHxLxM.reshape(b, hp * l, -1), c_BxMxD,
                                    _CONTRACT_TOKENS)
    packed_BxHxLxK = jnp.einsum("bhld,dhk->bhlk", pooled_BxHLxD.reshape(b, hp, l, d),
                                wv_DxHxK)
    weight_BxHxLx1 = jnp.sum(probs_BxHxLxM, axis=-1, keepdims=True)
    return packed_BxHxLxK + weight_BxHxLx1 * bv_D.reshape(hp, dhp)[None, :, None, :]
