"""The registry: a mechanism's name -> its `MixerSpec`, the one record of that mixer, with
every built-in mixer registered.

The record and the table live in `luna_jax.mixers.spec`, which each mixer's module imports
to register itself. This module imports `luna_jax.mixers` (whose `__init__` imports every
built-in mixer) and re-exports the table's functions, so what it lists is complete. No
mixer imports this module: the registry sits above the mixers, their record below them.
"""

from luna_jax import mixers  # noqa: F401  (registers the built-in mixers)
from luna_jax.mixers.spec import (MixerSpec, RunShape, cross_attention, get_mixer,
                                  make_settings, mixer_names, register_cross_attention,
                                  register_mixer, unregister_mixer)

__all__ = ["MixerSpec", "RunShape", "cross_attention", "get_mixer", "make_settings",
           "mixer_names", "register_cross_attention", "register_mixer", "unregister_mixer"]
