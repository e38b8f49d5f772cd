"""The encoder stack: any registered mixer, plus Luna's learned projected sequence P.

For Luna (Ma et al. 2021, Sec. 3.3) the first P is a learned (l, d) parameter, drawn from
N(0, d^-1/2), broadcast over the batch, layer-normalised and dropped out per example. The
authors' LRA encoder keeps that init under BERT-style init too; only their pre-training
sentence encoder redraws P from N(0, 0.02) (p_init="bert" here).
Contextual P (the default) feeds each layer's P output to the next layer; non-contextual
gives every layer its own P parameter. Dynamic projection masks P rows j >= the number of
real tokens of the example, so a short sequence uses only the first min(l, n) rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common
from luna_jax.registry import get_mixer

Array = common.Array
# Initial P: "normal_d" N(0, d^-1/2) (the authors' LRA encoder, whatever init_style) or
# "bert" N(0, 0.02) (their pre-training LunaSentenceEncoder).
P_INITS = ("normal_d", "bert")


class Encoder(nn.Module):
  """A stack of `num_layers` layers of the mixer named `mixer` (see `luna_jax.registry`).

  Attributes:
    mixer: registered mechanism name ("luna", "transformer", ...).
    num_layers, num_heads, ffn_dim: stack depth, attention heads, FFN hidden width.
    dropout / attention_dropout / activation_dropout: residual, attention and FFN rates.
    normalize_before: pre-LN (True) or post-LN (False); None takes the mixer's default
      (post-LN for Luna as in the LRA runs, pre-LN for the Transformer). Pre-LN adds final
      LayerNorms on X (and P).
    causal: autoregressive mixing (position t sees only positions <= t).
    decode: step-by-step decoding through the 'cache' collection (causal only).
    init_style: "xavier" (the reference) or "bert" (N(0, 0.02) weights, zero biases; P
      follows p_init).
    proj_len: l, the length of P (Luna-type mixers only).
    p_init: std of the initial P: "normal_d" (d^-1/2, the authors' LRA models, also under
      init_style="bert") or "bert" (0.02, the authors' pre-training encoder).
    contextual_p: pass P from layer to layer (True) or give each layer its own P.
    dynamic_projection: mask P rows beyond each example's length. Not applied when causal,
      where the total length would tell earlier positions about later ones.
    mixer_options: the mixer's own layer fields, e.g. {"tied_kv": True, "pack_heads": 4}.
  """

  mixer: str = "luna"
  num_layers: int = 1
  num_heads: int = 8
  ffn_dim: int = 2048
  dropout: float = 0.1
  attention_dropout: float = 0.1
  activation_dropout: float = 0.0
  normalize_before: Optional[bool] = None
  causal: bool = False
  decode: bool = False
  init_style: str = "xavier"
  proj_len: int = 16
  p_init: str = "normal_d"
  contextual_p: bool = True
  dynamic_projection: bool = True
  mixer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  def _check(self, spec) -> None:
    common.check_init_style(self.init_style)
    if self.causal and spec.not_causal_because:
      raise ValueError(f"mixer {self.mixer!r} cannot be causal: {spec.not_causal_because}")
    if self.decode and not self.causal:
      raise ValueError("decode=True needs causal=True.")
    unknown = set(self.mixer_options) - set(spec.option_names())
    if unknown:
      raise ValueError(
          f"unknown mixer_options {sorted(unknown)} for mixer {self.mixer!r}; "
          f"it accepts {list(spec.option_names())}."
      )
    if spec.uses_p and self.proj_len <= 0:
      raise ValueError(f"proj_len must be positive, got {self.proj_len}.")
    if self.p_init not in P_INITS:
      raise ValueError(f"p_init={self.p_init!r} is not one of {P_INITS}.")

  def _initial_p(self, batch: int, d: int, index: str, deterministic: bool) -> Array:
    std = 0.02 if self.p_init == "bert" else d**-0.5
    p_LxD = self.param(f"p_embed{index}", nn.initializers.normal(std),
                       (self.proj_len, d), self.param_dtype)
    p_BxLxD = jnp.broadcast_to(p_LxD.astype(self.dtype), (batch, self.proj_len, d))
    p_BxLxD = common.layer_norm(f"p_embed_norm{index}", self.dtype, self.param_dtype)(p_BxLxD)
    return nn.Dropout(self.dropout)(p_BxLxD, deterministic=deterministic)

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      *,
      mask_BxN: Optional[Array] = None,
      deterministic: bool = True,
  ) -> tuple[Array, Optional[Array]]:
    """Encodes embedded inputs.

    Args:
      x_BxNxD: embedded tokens (embedding, positions and their LayerNorm done already).
      mask_BxN: True at real tokens, False at padding; None means no padding.
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      (X of shape (B, N, D), P of shape (B, l, D) or None for mixers without P). Outputs
      at padded positions and at masked P rows are finite but meaningless.
    """
    spec = get_mixer(self.mixer)
    self._check(spec)
    b, n, d = x_BxNxD.shape
    if mask_BxN is None:
      mask_BxN = jnp.ones((b, n), bool)
    x = x_BxNxD.astype(self.dtype) * mask_BxN[..., None].astype(self.dtype)

    p_mask_BxL = None
    if spec.uses_p and self.dynamic_projection and not self.causal:
      lengths_B = mask_BxN.sum(-1)
      p_mask_BxL = jnp.arange(self.proj_len)[None, :] < lengths_B[:, None]

    def fresh_p(index: str) -> Array:
      p = self._initial_p(b, d, index, deterministic)
      return p if p_mask_BxL is None else p * p_mask_BxL[..., None].astype(p.dtype)

    normalize_before = (spec.normalize_before if self.normalize_before is None
                        else self.normalize_before)
    options = dict(self.mixer_options)
    shared = spec.shared_modules(self, options) if spec.shared_modules else {}
    p = fresh_p("") if spec.uses_p and self.contextual_p else None
    for i in range(self.num_layers):
      if spec.uses_p and not self.contextual_p:
        p = fresh_p(f"_{i}")
      own = spec.layer_kwargs(self, options, i) if spec.layer_kwargs else options
      layer = spec.layer(
          num_heads=self.num_heads, ffn_dim=self.ffn_dim, dropout=self.dropout,
          attention_dropout=self.attention_dropout,
          activation_dropout=self.activation_dropout, normalize_before=normalize_before,
          causal=self.causal, decode=self.decode, init_style=self.init_style,
          dtype=self.dtype, param_dtype=self.param_dtype, name=f"layer_{i}",
          **own, **shared,
      )
      x, p = layer(x, p, mask_BxN=mask_BxN, p_mask_BxL=p_mask_BxL,
                   deterministic=deterministic)
    if normalize_before:
      x = common.layer_norm("final_norm", self.dtype, self.param_dtype)(x)
      if spec.uses_p and not self.causal:
        p = common.layer_norm("final_p_norm", self.dtype, self.param_dtype)(p)
    return x, p


class LunaEncoder(Encoder):
  """`Encoder` with the Luna mixer: post-LN Luna layers sharing a contextual P."""

  mixer: str = "luna"
