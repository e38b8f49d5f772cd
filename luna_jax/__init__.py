"""luna-jax: linear-cost sequence mixers (Luna, Linformer, light/dynamic convolution) in
JAX/Flax, with a softmax Transformer baseline, for the Long Range Arena.

Layout: `luna_jax.mixers` holds one module per mixer (its attention, encoder layer,
settings, check and `register_mixer` line); `layers` is the base every mixer's layer
builds on; `registry` maps names to mixers; `encoder` stacks any of them; `model` is the
LRA classifier around the encoder and `lm` the masked or causal language model that
pre-trains it.

Shape letters, used in every tensor name (x_BxNxD is a (batch, length, width) array):

    B  batch                      D  model width d
    N  sequence length (tokens)   H  heads (convolutions: kernels)
    M  context length (keys and   K  head width d_h = D / H (convolutions: the channels
       values of cross-attention)    one kernel covers)
    L  projected length: the rows of Luna's P (l) or of Linformer's E K (k)
    T  kernel taps (a convolution's kernel size)
    G  Linformer projection matrices (1, or one per head)
    I  chunks of the causal Luna scan   C  positions per chunk (c)

Masks are boolean and True at real tokens (or at usable P rows).
"""

import importlib
import importlib.util

# Exports, imported on first use: a process that needs only a part (a data generator's
# worker imports luna_jax.data.pathfinder) does not pay for JAX and Flax.
_EXPORTS = {
    "LAYER_NORM_EPS": "luna_jax.common", "gelu": "luna_jax.common",
    "Encoder": "luna_jax.encoder",
    "CrossAttentionBase": "luna_jax.layers", "FeedForward": "luna_jax.layers",
    "LayerBase": "luna_jax.layers",
    "ConvEncoderLayer": "luna_jax.mixers.convolution",
    "DynamicConv": "luna_jax.mixers.convolution",
    "DynamicConvEncoderLayer": "luna_jax.mixers.convolution",
    "LightweightConv": "luna_jax.mixers.convolution",
    "LinformerAttention": "luna_jax.mixers.linformer",
    "LinformerEncoderLayer": "luna_jax.mixers.linformer",
    "LinformerProjection": "luna_jax.mixers.linformer",
    "LunaEncoderLayer": "luna_jax.mixers.luna",
    "LunaAttention": "luna_jax.mixers.luna_attention",
    "LunaCausalAttention": "luna_jax.mixers.luna_causal", "omega": "luna_jax.mixers.luna_causal",
    "MultiHeadAttention": "luna_jax.mixers.transformer",
    "TransformerEncoderLayer": "luna_jax.mixers.transformer",
    "LanguageModel": "luna_jax.lm",
    "LraClassifier": "luna_jax.model",
    "Decoder": "luna_jax.seq2seq", "DecoderLayer": "luna_jax.seq2seq",
    "Seq2SeqModel": "luna_jax.seq2seq",
    "MixerSpec": "luna_jax.registry", "RunShape": "luna_jax.registry",
    "get_mixer": "luna_jax.registry", "mixer_names": "luna_jax.registry",
    "register_mixer": "luna_jax.registry", "unregister_mixer": "luna_jax.registry",
}


def __getattr__(name: str):
  """An export, or a submodule (luna_jax.mixers), imported on first use."""
  module = _EXPORTS.get(name)
  if module is not None:
    value = getattr(importlib.import_module(module), name)
  elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
    value = importlib.import_module(f"{__name__}.{name}")
  else:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_EXPORTS))


__version__ = "0.1.0"

__all__ = sorted(_EXPORTS)
