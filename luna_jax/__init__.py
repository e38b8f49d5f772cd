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

from luna_jax import mixers  # noqa: F401  (registers the built-in mixers)
from luna_jax.common import LAYER_NORM_EPS, gelu
from luna_jax.encoder import Encoder
from luna_jax.layers import CrossAttentionBase, FeedForward, LayerBase
from luna_jax.mixers.convolution import (ConvEncoderLayer, DynamicConv, DynamicConvEncoderLayer,
                                         LightweightConv)
from luna_jax.mixers.linformer import (LinformerAttention, LinformerEncoderLayer,
                                       LinformerProjection)
from luna_jax.mixers.luna import LunaEncoderLayer
from luna_jax.mixers.luna_attention import LunaAttention
from luna_jax.mixers.luna_causal import LunaCausalAttention, omega
from luna_jax.mixers.transformer import MultiHeadAttention, TransformerEncoderLayer
from luna_jax.lm import LanguageModel
from luna_jax.model import LraClassifier
from luna_jax.seq2seq import Decoder, DecoderLayer, Seq2SeqModel
from luna_jax.registry import (MixerSpec, RunShape, get_mixer, mixer_names, register_mixer,
                               unregister_mixer)

__version__ = "0.1.0"

__all__ = [
    "ConvEncoderLayer",
    "CrossAttentionBase",
    "Decoder",
    "DecoderLayer",
    "DynamicConv",
    "DynamicConvEncoderLayer",
    "Encoder",
    "FeedForward",
    "LAYER_NORM_EPS",
    "LayerBase",
    "LightweightConv",
    "LinformerAttention",
    "LinformerEncoderLayer",
    "LinformerProjection",
    "LanguageModel",
    "LraClassifier",
    "LunaAttention",
    "LunaCausalAttention",
    "LunaEncoderLayer",
    "MixerSpec",
    "MultiHeadAttention",
    "RunShape",
    "Seq2SeqModel",
    "TransformerEncoderLayer",
    "gelu",
    "get_mixer",
    "mixer_names",
    "omega",
    "register_mixer",
    "unregister_mixer",
]
