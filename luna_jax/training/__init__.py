"""Training and evaluation on the LRA tasks (used by train.py, eval.py and notebooks)."""

from luna_jax.training.config import base_config, build_model, validate
from luna_jax.training.loop import NonFiniteLossError, Trainer, every, train_and_evaluate
from luna_jax.training.run import Run
from luna_jax.training.variants import apply_variant

__all__ = ["NonFiniteLossError", "Run", "Trainer", "apply_variant", "base_config",
           "build_model", "every", "train_and_evaluate", "validate"]
