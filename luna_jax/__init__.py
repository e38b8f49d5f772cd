"""luna-jax: linear-cost sequence mixers (Luna, Linformer, light/dynamic convolution) in
JAX/Flax, with a softmax Transformer baseline, for the Long Range Arena.

What it holds:
  mixers/            one module per mixer (its attention, encoder layer, settings, check and
                     `register_mixer` line): Luna (bidirectional and causal attention),
                     the softmax baseline, Linformer, lightweight and dynamic convolution
  layers             the base every mixer's layer builds on: shared fields, residual, FFN
  registry           mechanism name -> `MixerSpec` (layer, settings, check, derivations)
  encoder            the encoder stack, for any registered mixer
  common             the references' numerics: erf GELU, LayerNorm eps and two-pass
                     variance, initialisers, masking
  chunked_attention  exact O(n)-memory softmax attention (online softmax, custom VJP)
  decoding           greedy and beam search over decoding caches (one lax.while_loop)
  losses             label-smoothed cross-entropy
  platform           the platform a trace targets (the default backend, or a TPU slice
                     compiled for from a CPU host)
  models/            the LRA classifier (embeddings, encoder, pooling, two-tower pairs),
                     the masked or causal language model on the same embeddings and encoder
                     (BERT masking, next-token targets), the encoder-decoder translation
                     model and its generation
  data/              the LRA tasks, text corpora and parallel text: preparing and reading
  training/          configs, the kinds of run (workloads), the training loop,
                     evaluation, compile-only runs for TPU
  cli, errors        the command-line tools' entry point; the mistakes a user can fix
  demo               a first look: every mixer on random data
The commands are train.py, eval.py and translate.py at the repository root, and
`python -m luna_jax.data`.

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
    "LanguageModel": "luna_jax.models.language_model",
    "LraClassifier": "luna_jax.models.classifier",
    "Decoder": "luna_jax.models.seq2seq", "DecoderLayer": "luna_jax.models.seq2seq",
    "Seq2SeqModel": "luna_jax.models.seq2seq",
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
