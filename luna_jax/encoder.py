"""The encoder stack: `num_layers` layers of any registered mixer.

The stack knows no mixer by name: it reads the mixer's record (`luna_jax.registry`) for
its layer class, settings, check, shared modules and, for mixers that thread a second
sequence P beside X (Luna), how P is made before each layer and normalised at the end.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common, registry

Array = common.Array


class Encoder(nn.Module):
  """A stack of `num_layers` layers of the mixer named `mixer`.

  Attributes:
    mixer: a registered mechanism name (`luna_jax.mixer_names()`).
    num_layers, num_heads, ffn_dim: stack depth, attention heads, FFN hidden width.
    dropout / attention_dropout / activation_dropout: residual, attention and FFN rates.
    normalize_before: pre-LN (True) or post-LN (False); None takes the mixer's default.
      Pre-LN adds final LayerNorms on X (and P).
    causal: autoregressive mixing (position t sees only positions <= t).
    decode: step-by-step decoding through the 'cache' collection (causal only).
    init_style: "xavier" (the reference) or "bert" (N(0, 0.02) weights, zero biases).
    ffn_activation: None (each layer's own: GELU, ReLU for the convolutions), "relu" or
      "gelu" (the translation models use ReLU).
    mixer_options: the mixer's own settings: a mapping of some of them (the others keep
      their defaults) or the mixer's settings object; the accepted names are the fields
      of `luna_jax.get_mixer(mixer).settings`.
    remat: recompute each layer's activations in the backward pass instead of keeping
      them (`nn.remat`, per layer): a training step then holds one layer's activations
      beside the layers' outputs. Same parameters (names included), same results.
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
  ffn_activation: Optional[str] = None
  mixer_options: Any = dataclasses.field(default_factory=dict)
  remat: bool = False
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  def _check(self, spec: registry.MixerSpec) -> None:
    common.check_init_style(self.init_style)
    capable = lambda reason: ", ".join(  # noqa: E731
        n for n in registry.mixer_names() if not getattr(registry.get_mixer(n), reason))
    if self.causal and spec.not_causal_because:
      raise ValueError(f"mixer {self.mixer!r} cannot be causal: {spec.not_causal_because} "
                       f"Mixers that can: {capable('not_causal_because')}.")
    if self.decode and not self.causal:
      raise ValueError("decode=True needs causal=True.")
    if self.decode and spec.no_decode_because:
      raise ValueError(f"mixer {self.mixer!r} cannot decode step by step: "
                       f"{spec.no_decode_because} Mixers that can: "
                       f"{capable('no_decode_because')}.")

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      *,
      mask_BxN: Optional[Array] = None,
      segment_ids_BxN: Optional[Array] = None,
      deterministic: bool = True,
  ) -> tuple[Array, Optional[Array]]:
    """Encodes embedded inputs.

    Args:
      x_BxNxD: embedded tokens (embedding, positions and their LayerNorm done already).
      mask_BxN: True at real tokens, False at padding; None means no padding.
      segment_ids_BxN: int, the document of each position in rows that pack several
        (positions mix only within their segment); mixers whose spec has
        `no_segments_because` raise. None: one document per row.
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      (X of shape (B, N, D), P of shape (B, L, D) or None for mixers without P). Outputs
      at padded positions and at masked P rows are finite but meaningless.
    """
    spec = registry.get_mixer(self.mixer)
    self._check(spec)
    segments = {}
    if segment_ids_BxN is not None:
      if spec.no_segments_because:
        raise ValueError(f"mixer {self.mixer!r} cannot keep packed documents apart: "
                         f"{spec.no_segments_because} Give it one document per row.")
      segments = {"segment_ids_BxN": segment_ids_BxN}
    b, n, d = x_BxNxD.shape
    run = registry.RunShape(max_len=None, num_layers=self.num_layers, d_model=d,
                            num_heads=self.num_heads, causal=self.causal)
    settings = registry.make_settings(self.mixer, self.mixer_options, run)
    if mask_BxN is None:
      mask_BxN = jnp.ones((b, n), bool)
    x = x_BxNxD.astype(self.dtype) * mask_BxN[..., None].astype(self.dtype)

    normalize_before = (spec.normalize_before if self.normalize_before is None
                        else self.normalize_before)
    shared = spec.shared_modules(self, settings) if spec.shared_modules else {}
    p = p_mask_BxL = None
    for i in range(self.num_layers):
      if spec.p_for_layer is not None:
        p, p_mask_BxL = spec.p_for_layer(self, settings, i, p, x, mask_BxN,
                                         deterministic=deterministic)
      layer = spec.layer(
          num_heads=self.num_heads, ffn_dim=self.ffn_dim, dropout=self.dropout,
          attention_dropout=self.attention_dropout,
          activation_dropout=self.activation_dropout, normalize_before=normalize_before,
          causal=self.causal, decode=self.decode, init_style=self.init_style,
          ffn_activation=self.ffn_activation, dtype=self.dtype, param_dtype=self.param_dtype,
          name=f"layer_{i}",
          **spec.fields_for_layer(settings, i), **shared,
      )
      x, p = self._apply(layer, x, p, mask_BxN, p_mask_BxL, segments=segments,
                         deterministic=deterministic)
    if normalize_before:
      x = common.layer_norm("final_norm", self.dtype, self.param_dtype)(x)
      if spec.final_p is not None and p is not None:
        p = spec.final_p(self, settings, p)
    return x, p

  def _apply(self, layer, x, p, mask_BxN, p_mask_BxL, *, segments, deterministic):
    """layer(x, p, ...), through nn.remat when self.remat; `deterministic` is closed
    over, since remat traces every argument it is given."""

    def call(layer, x, p, mask_BxN, p_mask_BxL, segments):
      return layer(x, p, mask_BxN=mask_BxN, p_mask_BxL=p_mask_BxL,
                   deterministic=deterministic, **segments)

    if self.remat:
      call = nn.remat(call)
    return call(layer, x, p, mask_BxN, p_mask_BxL, segments)
