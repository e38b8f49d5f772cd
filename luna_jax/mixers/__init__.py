"""The built-in mixers, one module each (its attention, layer, settings, check and its
`register_mixer` line), and `spec`, the record they register and the table it goes into.
Importing a module registers its mixer; `mixer_names()` lists them in this order.
`luna_jax.registry` imports this package and reads the table.

  spec             `MixerSpec`, `RunShape` and the table (`register_mixer`, the default
                   cross-attention)
  luna             Luna's encoder layer, the learned P, its settings and check
  luna_attention   bidirectional Luna attention (pack, then unpack)
  luna_causal      causal Luna attention (chunked prefix sums, decoding cache)
  transformer      the softmax baseline's attention (cuDNN, chunked or explicit) and layer
  linformer        Linformer attention and layer
  convolution      lightweight and dynamic convolution and the convolution block
"""

from luna_jax.mixers import luna, transformer, linformer, convolution  # noqa: F401  isort: skip
