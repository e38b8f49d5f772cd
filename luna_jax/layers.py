"""The base every mixer's encoder layer builds on: shared fields, residual, feed-forward.

Every layer shares one call interface so that the encoder stack can swap them by name:

    layer(x_BxNxD, p_BxLxD | None, *, mask_BxN, p_mask_BxL, deterministic) -> (x, p)

A layer that has no use for P returns it unchanged. Every mixer module imports this one,
so all mixers sit on the same level of the import graph.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common

Array = common.Array


ACTIVATIONS = {"gelu": common.gelu, "relu": nn.relu}


class FeedForward(nn.Module):
  """FFN(x) = W2 ActDropout(act(W1 x + b1)) + b2 (Vaswani et al. 2017, Eq. 2); act is
  exact (erf) GELU or ReLU."""

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
  """Fields every encoder layer accepts (the encoder sets them), and the residual and
  feed-forward sub-blocks shared by all of them. A mixer's own fields come after these,
  filled from its settings (see `luna_jax.registry.MixerSpec`)."""

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
  # None: the layer's own FFN activation (GELU; ReLU for the convolutions); "relu" or
  # "gelu" overrides it (fairseq's translation models use ReLU everywhere).
  ffn_activation: Optional[str] = None
  # False: the layer ends after its mixing sub-block, without the FFN sub-block (a
  # decoder layer puts encoder-decoder attention between the two; `luna_jax.models.seq2seq`).
  feed_forward: bool = True

  def norm(self, name: str) -> nn.LayerNorm:
    return common.layer_norm(name, self.dtype, self.param_dtype)

  def residual(self, x: Array, sublayer, norm_name: str, deterministic: bool) -> Array:
    """Pre-LN: x + Dropout(f(LN(x))); post-LN: LN(x + Dropout(f(x)))."""
    drop = nn.Dropout(self.dropout)
    if self.normalize_before:
      return x + drop(sublayer(self.norm(norm_name)(x)), deterministic=deterministic)
    return self.norm(norm_name)(x + drop(sublayer(x), deterministic=deterministic))

  def residual_pair(self, x: Array, y_x: Array, p: Array, y_p: Optional[Array], *,
                    x_norm: str, p_norm: str, deterministic: bool) -> tuple[Array, Array]:
    """The two-stream residual of Luna's blocks: x + Dropout(y_x), and p + Dropout(y_p)
    when the block updates P (y_p not None); in post-LN each is LayerNormed after its
    sum. The pre-LN inputs are the caller's, since some blocks read P un-normalised."""
    drop = nn.Dropout(self.dropout)
    x = x + drop(y_x, deterministic=deterministic)
    if y_p is not None:
      p = p + drop(y_p.astype(p.dtype), deterministic=deterministic)
    if not self.normalize_before:
      x = self.norm(x_norm)(x)
      if y_p is not None:
        p = self.norm(p_norm)(p)
    return x, p

  def feed_forward_block(self, x: Array, deterministic: bool, activation: str = "gelu") -> Array:
    """The residual FFN sub-block, post-LN or pre-LN; x unchanged when feed_forward is
    False."""
    if not self.feed_forward:
      return x
    if self.ffn_activation is not None:
      activation = self.ffn_activation
    ffn = FeedForward(
        hidden_dim=self.ffn_dim, activation_dropout=self.activation_dropout,
        init_style=self.init_style, dtype=self.dtype, param_dtype=self.param_dtype,
        activation=activation, name="ffn")
    return self.residual(x, lambda h: ffn(h, deterministic=deterministic), "ffn_norm",
                         deterministic)


class CrossAttentionBase(nn.Module):
  """Fields every encoder-decoder attention accepts (`MixerSpec.cross_attention`; the
  decoder layer sets them): heads, the mixer's settings object, attention dropout,
  init style, dtypes. Its call: (x_BxNxD, p_BxLxD | None, *, memory_BxMxD,
  memory_mask_BxM, p_mask_BxL, deterministic, static=None) -> (y_x_BxNxD,
  y_p_BxLxD | None, static): `static` is whatever depends on the source alone (the
  memory's projected keys and values, ...), returned so that decoding computes it once
  and passes it back at every step."""

  num_heads: int
  settings: object = None
  attention_dropout: float = 0.0
  init_style: str = "xavier"
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32
