"""The built-in mixers, one module each (its attention, layer, settings, check and its
`register_mixer` line). Importing a module registers its mixer; `mixer_names()` lists
them in this order.

  luna             Luna's encoder layer, the learned P, its settings and check
  luna_attention   bidirectional Luna attention (pack, then unpack)
  luna_causal      causal Luna attention (chunked prefix sums, decoding cache)
  transformer      the softmax baseline's attention (cuDNN, chunked or explicit) and layer
  linformer        Linformer attention and layer
  convolution      lightweight and dynamic convolution and the convolution block
"""

from luna_jax.mixers import luna, transformer, linformer, convolution  # noqa: F401  isort: skip
