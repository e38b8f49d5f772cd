"""Test-wide JAX settings: float64 available for the exactness tests, and implicit rank
promotion turned into an error so that broadcasting bugs cannot hide."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
