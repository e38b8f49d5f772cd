"""Bidirectional Luna attention: pack then unpack (Ma et al. 2021, Eqs. 6-8).

    Y_P = Attn(P W_pq, C W_pk, C W_pv)            pack   (no output projection)
    Y_X = Attn(X W_q, Y_P W_k, Y_P W_v) W_o        unpack

Cost O(n l d) for n tokens and a projection length l, instead of O(n^2 d).
Semantics follow the authors' fairseq `LunarMultiheadAttention`: queries scaled by the
head width after the bias, softmax in float32, attention dropout on both attention maps,
tied (one projection for K and V) or untied K/V (the LRA runs used untied).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common

Array = common.Array


class LunaAttention(nn.Module):
  """Luna's nested attention: P packs the context, X attends to the packed result.

  Attributes:
    num_heads: heads of the unpack attention (X attends to packed P).
    pack_heads: heads of the pack attention (P attends to the context); None = num_heads.
    tied_kv: one projection for keys and values (5 d x d maps per block) instead of
      separate ones (7 maps; the setting of the Luna LRA runs).
    attention_dropout: dropout rate on both attention maps.
    init_style: "xavier" (the reference's initialisation) or "bert" (N(0, 0.02), zero biases).
    dtype: computation dtype; softmax always runs in at least float32.
    param_dtype: parameter dtype.
  """

  num_heads: int
  pack_heads: Optional[int] = None
  tied_kv: bool = False
  attention_dropout: float = 0.0
  init_style: str = "xavier"
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
  ) -> tuple[Array, Array]:
    """Packs the context into P's l rows, then lets X attend to them.

    Args:
      x_BxNxD: queries X.
      p_BxLxD: the projected sequence P (one per example; broadcast a learned P first).
      context_BxMxD: the context C that P packs; None for self-attention (C = X).
      context_mask_BxM: True at real context tokens, False at padding (pack ignores it).
      p_mask_BxL: True at P rows X may attend to; False rows are excluded from unpack
        (Luna's "dynamic projection": rows j >= length of the example).
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      (Y_X of shape (B, N, D), Y_P of shape (B, L, D)): the unpacked output (after the
      output projection) and the packed context (no output projection).
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

    pq_BxHxLxK = common.heads_first(project("p_query", p_BxLxD) * dhp**-0.5, hp)
    if self.tied_kv:
      pk_BxHxMxK = pv_BxHxMxK = common.heads_first(project("p_context", c_BxMxD), hp)
    else:
      pk_BxHxMxK = common.heads_first(project("p_key", c_BxMxD), hp)
      pv_BxHxMxK = common.heads_first(project("p_value", c_BxMxD), hp)
    packed_BxHxLxK = common.attend_heads_first(
        pq_BxHxLxK, pk_BxHxMxK, pv_BxHxMxK, context_mask_BxM, dropout, deterministic)
    y_p_BxLxD = common.heads_last(packed_BxHxLxK)

    # Unpack: X attends to a new projection of the packed context.
    q_BxHxNxK = common.heads_first(project("query", x_BxNxD) * dh**-0.5, h)
    if self.tied_kv:
      k_BxHxLxK = v_BxHxLxK = common.heads_first(project("context", y_p_BxLxD), h)
    else:
      k_BxHxLxK = common.heads_first(project("key", y_p_BxLxD), h)
      v_BxHxLxK = common.heads_first(project("value", y_p_BxLxD), h)
    out_BxHxNxK = common.attend_heads_first(
        q_BxHxNxK, k_BxHxLxK, v_BxHxLxK, p_mask_BxL, dropout, deterministic)
    y_x_BxNxD = project("out", common.heads_last(out_BxHxNxK), role="out_proj")
    return y_x_BxNxD, y_p_BxLxD
