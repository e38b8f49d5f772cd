"""The Luna mixer (Ma et al. 2021): its layer (Eqs. 9-10), its projected sequence P
(Sec. 3.3), its settings and check.

The attention itself is in `luna_attention` (bidirectional, Eqs. 6-8) and `luna_causal`
(Sec. 3.4). The first P is a learned (l, d) parameter drawn from N(0, d^-1/2), broadcast
over the batch, layer-normalised and dropped out per example; the authors' LRA encoder
keeps that init under BERT-style init too, only their pre-training sentence encoder draws
P from N(0, 0.02) (p_init="bert"). Contextual P (the default) feeds each layer's P output
to the next layer; non-contextual gives every layer its own P parameter. Dynamic
projection masks P rows j >= the number of real tokens of the example, so a short
sequence uses only the first min(l, n) rows; it is off when causal, where the total
length would tell earlier positions about later ones.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common
from luna_jax.layers import CrossAttentionBase, LayerBase
from luna_jax.mixers import spec
from luna_jax.mixers.luna_attention import LunaAttention
from luna_jax.mixers.luna_causal import LunaCausalAttention

Array = common.Array

# Initial P: "normal_d" N(0, d^-1/2) (the authors' LRA encoder, whatever init_style) or
# "bert" N(0, 0.02) (their pre-training LunaSentenceEncoder).
P_INITS = ("normal_d", "bert")
# How the first P is embedded: "lra" LayerNorm(P) (the authors' LRA and pre-training
# encoders) or "seq2seq" sqrt(d) P + sinusoidal positions of its l rows, no LayerNorm
# (their translation encoder, fairseq/models/luna.py).
P_STYLES = ("lra", "seq2seq")


@dataclasses.dataclass(frozen=True)
class LunaSettings:
  """Luna's own settings (`mixer_options`, and the config's `model.luna` block)."""

  proj_len: int = 16  # l, the rows of P (the paper: 16, 128, 256)
  p_init: str = "normal_d"  # initial P ~ N(0, d^-1/2) (Luna LRA, also under bert init) |
                            # bert N(0, 0.02) (only the authors' pre-training encoder)
  contextual_p: bool = True  # P passed from layer to layer (else one P per layer)
  dynamic_projection: bool = True  # mask P rows beyond each example's length
  tied_kv: bool = False  # one projection for K and V (LRA runs: untied)
  pack_heads: int = 0  # heads of the pack attention; 0 = num_heads. In a translation
                      # decoder: the cross-attention's pack only (the authors'
                      # decoder_projected_attention_heads); causal Luna has none
  chunk_size: Optional[int] = None  # causal only: positions per chunk; None follows the
                                    # length (luna_causal.chunk_size_for); same result
  p_style: str = "lra"  # first P: lra LayerNorm(P) | seq2seq sqrt(d) P + sinusoidal
                        # positions (the authors' translation encoder)


class LunaEncoderLayer(LayerBase):
  """One Luna layer: Luna attention, then a feed-forward network on X only.

  Post-LN (the default, as in the LRA runs):
      Y_X, Y_P = LunaAttn(X, P)
      X_A = LN_x(X + Dropout(Y_X));  P' = LN_p(P + Dropout(Y_P))
      X' = LN_ffn(X_A + Dropout(FFN(X_A)))
  Pre-LN normalises the inputs instead (X^ = LN_x(X), P^ = LN_p(P); causal: P as it is,
  as in the authors' LunaDecoderLayer) and leaves the final LayerNorms to the encoder. P has its own LayerNorm and no feed-forward. With
  causal=True the attention is `LunaCausalAttention` and P passes through unchanged.

  Extra attributes: pack_heads (None or 0 = num_heads), tied_kv (see LunaAttention),
  chunk_size (causal only; None follows the length).
  """

  pack_heads: Optional[int] = None
  tied_kv: bool = False
  chunk_size: Optional[int] = None

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
    x_in, p_in = x_BxNxD, p_BxLxD
    if self.normalize_before:
      x_in = self.norm("x_norm")(x_BxNxD)
      if not self.causal:  # causal attention reads P as it is (the authors' decoder layer)
        p_in = self.norm("p_norm")(p_BxLxD)
    common_kw = dict(num_heads=self.num_heads, tied_kv=self.tied_kv,
                     attention_dropout=self.attention_dropout, init_style=self.init_style,
                     dtype=self.dtype, param_dtype=self.param_dtype, name="attention")
    if self.causal:
      if self.pack_heads and self.pack_heads != self.num_heads:
        raise ValueError("causal Luna uses num_heads for pack and unpack; "
                         f"got pack_heads={self.pack_heads} != num_heads={self.num_heads}.")
      y_x, _ = LunaCausalAttention(chunk_size=self.chunk_size, decode=self.decode,
                                   **common_kw)(
          x_in, p_in, mask_BxN=mask_BxN, p_mask_BxL=p_mask_BxL, deterministic=deterministic)
      y_p = None
    else:
      if self.decode:
        raise ValueError("decode=True needs causal=True: bidirectional Luna has no "
                         "step-by-step form.")
      y_x, y_p = LunaAttention(pack_heads=self.pack_heads or None, **common_kw)(
          x_in, p_in, context_mask_BxM=mask_BxN, p_mask_BxL=p_mask_BxL,
          deterministic=deterministic)

    x, p = self.residual_pair(x_BxNxD, y_x, p_BxLxD, y_p, x_norm="x_norm", p_norm="p_norm",
                              deterministic=deterministic)
    # The feed-forward block on the (B * N, D) view where `common.rows_view()` says so:
    # the same LayerNorm, Dense and dropout (same masks), but XLA CPU then reads x and the
    # gradients in place for the weight gradients.
    if not common.rows_view():
      return self.feed_forward_block(x, deterministic), p
    b, n, d = x.shape
    return self.feed_forward_block(x.reshape(b * n, d), deterministic).reshape(b, n, d), p


def check(settings: LunaSettings, run: spec.RunShape) -> None:
  if settings.proj_len <= 0:
    raise ValueError(f"proj_len={settings.proj_len} must be positive.")
  if settings.p_style not in P_STYLES:
    raise ValueError(f"p_style={settings.p_style!r} is not one of {P_STYLES}.")
  if settings.p_init not in P_INITS:
    raise ValueError(f"p_init={settings.p_init!r} is not one of {P_INITS}.")
  if settings.pack_heads < 0 or (settings.pack_heads and run.d_model % settings.pack_heads):
    raise ValueError(f"pack_heads={settings.pack_heads} must divide the model width "
                     f"d_model={run.d_model} (0: num_heads).")
  if settings.chunk_size is not None and settings.chunk_size <= 0:
    raise ValueError(f"chunk_size={settings.chunk_size} must be positive (or None: by "
                     "length).")


def _initial_p(encoder, settings: LunaSettings, batch: int, d: int, suffix: str,
               deterministic: bool) -> Array:
  std = 0.02 if settings.p_init == "bert" else d**-0.5
  p_LxD = encoder.param(f"p_embed{suffix}", nn.initializers.normal(std),
                        (settings.proj_len, d), encoder.param_dtype)
  if settings.p_style == "seq2seq":
    p_LxD = d**0.5 * p_LxD + common.sinusoidal_positions(settings.proj_len, d)
  p_BxLxD = jnp.broadcast_to(p_LxD.astype(encoder.dtype), (batch, settings.proj_len, d))
  if settings.p_style == "lra":
    p_BxLxD = common.layer_norm(f"p_embed_norm{suffix}", encoder.dtype,
                                encoder.param_dtype)(p_BxLxD)
  return nn.Dropout(encoder.dropout)(p_BxLxD, deterministic=deterministic)


def p_for_layer(encoder, settings: LunaSettings, index: int, p_BxLxD: Optional[Array],
                x_BxNxD: Array, mask_BxN: Array, *,
                deterministic: bool) -> tuple[Array, Optional[Array]]:
  """Layer `index`'s P: a fresh one for the first layer (contextual) or for every layer,
  else the previous layer's; and the dynamic-projection mask of its rows."""
  p_mask_BxL = None
  if settings.dynamic_projection and not encoder.causal:
    lengths_B = mask_BxN.sum(-1)
    p_mask_BxL = jnp.arange(settings.proj_len)[None, :] < lengths_B[:, None]
  if settings.contextual_p and index > 0:
    return p_BxLxD, p_mask_BxL
  b, _, d = x_BxNxD.shape
  p = _initial_p(encoder, settings, b, d, "" if settings.contextual_p else f"_{index}",
                 deterministic)
  if p_mask_BxL is not None:
    p = p * p_mask_BxL[..., None].astype(p.dtype)
  return p, p_mask_BxL


def final_p(encoder, settings: LunaSettings, p_BxLxD: Array) -> Array:
  """The final LayerNorm of P in a pre-LN stack (causal layers leave P unchanged)."""
  del settings
  if encoder.causal:
    return p_BxLxD
  return common.layer_norm("final_p_norm", encoder.dtype, encoder.param_dtype)(p_BxLxD)


class LunaCrossAttention(CrossAttentionBase):
  """The encoder-decoder attention of the authors' LunaDecoderLayer: Luna attention with
  the decoder's P packing the encoder output (its padding masked) and the decoder's
  tokens unpacking the result (P rows masked by p_mask). Returns (Y_X, Y_P); the decoder
  layer adds Y_P to P under its own LayerNorm, so P is updated by cross-attention only.
  `settings` is the LunaSettings (pack_heads, tied_kv). Its reusable `static` part is
  the unpack's keys and values: given them, the pack is skipped (Y_P is None)."""

  @nn.compact
  def __call__(self, x_BxNxD, p_BxLxD, *, memory_BxMxD, memory_mask_BxM, p_mask_BxL,
               deterministic: bool = True, static=None):
    return LunaAttention(
        num_heads=self.num_heads, pack_heads=self.settings.pack_heads or None,
        tied_kv=self.settings.tied_kv, attention_dropout=self.attention_dropout,
        init_style=self.init_style, dtype=self.dtype, param_dtype=self.param_dtype,
        name="attention")(x_BxNxD, p_BxLxD, memory_BxMxD, context_mask_BxM=memory_mask_BxM,
                          p_mask_BxL=p_mask_BxL, deterministic=deterministic,
                          unpack_kv=static, return_unpack_kv=True)


def decoder_self_settings(settings: LunaSettings) -> LunaSettings:
  """A decoder layer's causal self-attention: pack_heads is the cross-attention's (the
  authors' LunaDecoderLayer builds LunarCausalAttention with the decoder's heads alone and
  gives decoder_projected_attention_heads to the encoder-decoder LunarMultiheadAttention)."""
  return dataclasses.replace(settings, pack_heads=0)


def decoder_p(settings: LunaSettings, p_BxLxD: Array, memory_mask_BxM: Array):
  """The decoder's first P: the encoder's final P, with the encoder's dynamic-projection
  mask (rows j >= the source length), which the causal self-attention and the
  cross-attention's unpack both apply. P depends on the source only, never on targets."""
  p_mask_BxL = None
  if settings.dynamic_projection:
    lengths_B = memory_mask_BxM.sum(-1)
    p_mask_BxL = jnp.arange(settings.proj_len)[None, :] < lengths_B[:, None]
  return p_BxLxD, p_mask_BxL


spec.register_mixer("luna", spec.MixerSpec(
    layer=LunaEncoderLayer, settings=LunaSettings, normalize_before=False, check=check,
    p_for_layer=p_for_layer, final_p=final_p, cross_attention=LunaCrossAttention,
    decoder_p=decoder_p, decoder_self_settings=decoder_self_settings,
    no_segments_because="its pack attends from P to every position of the row, so each "
                        "document's output depends on the others'."))
