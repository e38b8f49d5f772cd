"""Training and evaluation on the LRA tasks (used by train.py, eval.py and notebooks)."""

from luna_jax.training.config import base_config, build_model, validate
from luna_jax.training.loop import NonFiniteLossError, Trainer, train_and_evaluate

__all__ = ["NonFiniteLossError", "Trainer", "base_config", "build_model", "train_and_evaluate",
           "validate"]
