"""The built-in mixers, one module each (its attention, layer, settings, check and its
`register_mixer` line). Importing a module registers its mixer; `mixer_names()` lists
them in this order.
"""

from luna_jax.mixers import luna, transformer, linformer, convolution  # noqa: F401  isort: skip
