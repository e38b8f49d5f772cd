"""Encoder layers: the Luna layer (Ma et al. 2021, Eqs. 9-10) and the Transformer layer.

Every layer shares one call interface so that the encoder stack can swap them by name:

    layer(x_BxNxD, p_BxLxD | None, *, mask_BxN, p_mask_BxL, deterministic) -> (x, p)

A layer that has no use for P returns it unchanged.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common
from luna_jax.luna_attention import LunaAttention
from luna_jax.luna_causal import LunaCausalAttention
from luna_jax.softmax_attention import MultiHeadAttention

Array = common.Array


ACTIVATIONS = {"gelu": common.gelu, "relu": nn.relu}


class FeedForward(nn.Module):
  """W2 ActDropout(act(W1 x + b1)) + b2; act is exact (erf) GELU or ReLU."""

  hidden_dim: int
  activation_dropout: float = 0.0
  init_style: str = "xavier"
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x_BxNxD: Array, *, deterministic: bool = True) -> Array:
    d = x_BxNxD.shape[-1]
    kw = dict(role="linear", init_style=self.init_style, dtype=self.dtype,
              param_dtype=self.param_dtype)
    act = ACTIVATIONS[self.activation]
    h = act(common.dense(self.hidden_dim, d, name="fc1", **kw)(x_BxNxD))
    h = nn.Dropout(self.activation_dropout)(h, deterministic=deterministic)
    return common.dense(d, self.hidden_dim, name="fc2", **kw)(h)


class LayerBase(nn.Module):
  """Fields every encoder layer accepts (see `luna_jax.registry`), and the residual
  sub-block shared by all of them."""

  num_heads: int
  ffn_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  activation_dropout: float = 0.0
  normalize_before: bool = False
  causal: bool = False
  decode: bool = False
  init_style: str = "xavier"
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  def norm(self, name: str) -> nn.LayerNorm:
    return common.layer_norm(name, self.dtype, self.param_dtype)

  def residual(self, x: Array, sublayer, norm_name: str, deterministic: bool) -> Array:
    """Pre-LN: x + Dropout(f(LN(x))); post-LN: LN(x + Dropout(f(x)))."""
    drop = nn.Dropout(self.dropout)
    if self.normalize_before:
      return x + drop(sublayer(self.norm(norm_name)(x)), deterministic=deterministic)
    return self.norm(norm_name)(x + drop(sublayer(x), deterministic=deterministic))

  def feed_forward_block(self, x: Array, deterministic: bool, activation: str = "gelu") -> Array:
    """The residual FFN sub-block, post-LN or pre-LN."""
    ffn = FeedForward(
        self.ffn_dim, self.activation_dropout, self.init_style, self.dtype, self.param_dtype,
        activation, name="ffn",
    )
    return self.residual(x, lambda h: ffn(h, deterministic=deterministic), "ffn_norm",
                         deterministic)


class LunaEncoderLayer(LayerBase):
  """One Luna layer: Luna attention, then a feed-forward network on X only.

  Post-LN (the default, as in the LRA runs):
      Y_X, Y_P = LunaAttn(X, P)
      X_A = LN_x(X + Dropout(Y_X));  P' = LN_p(P + Dropout(Y_P))
      X' = LN_ffn(X_A + Dropout(FFN(X_A)))
  Pre-LN normalises the inputs instead (X^ = LN_x(X), P^ = LN_p(P)) and leaves the final
  LayerNorms to the encoder. P has its own LayerNorm and no feed-forward. With
  causal=True the attention is `LunaCausalAttention` and P passes through unchanged.

  Extra attributes: pack_heads, tied_kv (see LunaAttention), chunk_size (causal only).
  """

  pack_heads: Optional[int] = None
  tied_kv: bool = False
  chunk_size: int = 64

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      p_BxLxD: Array,
      *,
      mask_BxN: Optional[Array] = None,
      p_mask_BxL: Optional[Array] = None,
      deterministic: bool = True,
  ) -> tuple[Array, Array]:
    if p_BxLxD is None:
      raise ValueError("LunaEncoderLayer needs the projected sequence P; got None.")
    drop = nn.Dropout(self.dropout)
    x_in, p_in = x_BxNxD, p_BxLxD
    if self.normalize_before:
      x_in, p_in = self.norm("x_norm")(x_BxNxD), self.norm("p_norm")(p_BxLxD)
    if self.causal:
      if self.pack_heads not in (None, self.num_heads):
        raise ValueError("causal Luna uses num_heads for pack and unpack; "
                         f"got pack_heads={self.pack_heads} != num_heads={self.num_heads}.")
      y_x, _ = LunaCausalAttention(
          self.num_heads, self.tied_kv, self.attention_dropout, self.init_style,
          self.chunk_size, self.decode, self.dtype, self.param_dtype, name="attention",
      )(x_in, p_in, mask_BxN=mask_BxN, p_mask_BxL=p_mask_BxL, deterministic=deterministic)
      y_p = None
    else:
      if self.decode:
        raise ValueError("decode=True needs causal=True: bidirectional Luna has no "
                         "step-by-step form.")
      y_x, y_p = LunaAttention(
          self.num_heads, self.pack_heads, self.tied_kv, self.attention_dropout,
          self.init_style, self.dtype, self.param_dtype, name="attention",
      )(x_in, p_in, context_mask_BxM=mask_BxN, p_mask_BxL=p_mask_BxL,
        deterministic=deterministic)

    x = x_BxNxD + drop(y_x, deterministic=deterministic)
    p = p_BxLxD
    if y_p is not None:
      p = p_BxLxD + drop(y_p.astype(p_BxLxD.dtype), deterministic=deterministic)
    if not self.normalize_before:
      x = self.norm("x_norm")(x)
      if y_p is not None:
        p = self.norm("p_norm")(p)
    return self.feed_forward_block(x, deterministic), p


class TransformerEncoderLayer(LayerBase):
  """The softmax Transformer layer (pre-LN by default in this library's registry):
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
      raise ValueError("decode=True is not supported by the softmax Transformer layer; "
                       "use mixer 'luna' with causal=True for step-by-step decoding.")
    attn = MultiHeadAttention(
        self.num_heads, self.causal, self.attention_dropout, self.init_style,
        self.implementation, self.dtype, self.param_dtype, name="attention",
    )
    x = self.residual(
        x_BxNxD,
        lambda h: attn(h, context_mask_BxM=mask_BxN, deterministic=deterministic),
        "x_norm", deterministic)
    return self.feed_forward_block(x, deterministic), p_BxLxD
