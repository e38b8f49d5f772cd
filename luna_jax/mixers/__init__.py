"""The built-in mixers, one module each (its attention, layer, settings, check and its
`register_mixer` line), and `spec`, the record they register and the table it goes into.
Importing a module registers its mixer; `mixer_names()` lists them in this order.
`luna_jax.registry` imports this package and reads the table.
"""

from luna_jax.mixers import luna, transformer, linformer, convolution  # noqa: F401  isort: skip
