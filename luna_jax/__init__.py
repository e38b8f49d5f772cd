"""luna-jax: linear-cost sequence mixers (Luna, Linformer, light/dynamic convolution) in
JAX/Flax, with a softmax Transformer baseline, for the Long Range Arena.

Shapes follow (batch B, tokens N, width D, projection length L); masks are boolean and
True at real tokens (or at usable P rows).
"""

from luna_jax.common import LAYER_NORM_EPS, gelu
from luna_jax.convolution import (ConvEncoderLayer, DynamicConv, DynamicConvEncoderLayer,
                                  LightConvEncoderLayer, LightweightConv)
from luna_jax.encoder import Encoder, LunaEncoder
from luna_jax.layers import FeedForward, LayerBase, LunaEncoderLayer, TransformerEncoderLayer
from luna_jax.linformer import LinformerAttention, LinformerEncoderLayer, LinformerProjection
from luna_jax.luna_attention import LunaAttention
from luna_jax.luna_causal import LunaCausalAttention, omega
from luna_jax.registry import MixerSpec, get_mixer, mixer_names, register_mixer
from luna_jax.model import LraClassifier
from luna_jax.softmax_attention import MultiHeadAttention

__version__ = "0.1.0"

__all__ = [
    "ConvEncoderLayer",
    "DynamicConv",
    "DynamicConvEncoderLayer",
    "Encoder",
    "FeedForward",
    "LAYER_NORM_EPS",
    "LayerBase",
    "LightConvEncoderLayer",
    "LightweightConv",
    "LinformerAttention",
    "LinformerEncoderLayer",
    "LinformerProjection",
    "LraClassifier",
    "LunaAttention",
    "LunaCausalAttention",
    "LunaEncoder",
    "LunaEncoderLayer",
    "MixerSpec",
    "MultiHeadAttention",
    "TransformerEncoderLayer",
    "gelu",
    "get_mixer",
    "mixer_names",
    "omega",
    "register_mixer",
]
