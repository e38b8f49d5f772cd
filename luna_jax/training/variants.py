"""Config variants: `--config configs/FILE.py:NAME` selects one of a config file's variants.

A config file keeps its variants in a dict, name -> a function that changes the reference
config in place, and ends `get_config` with `apply_variant`:

    VARIANTS = {"cpu": cpu}

    def get_config(variant: str = ""):
      c = base_config()
      ...
      return apply_variant(c, variant, VARIANTS, __file__)
"""

from __future__ import annotations

import pathlib
from typing import Callable, Mapping

import ml_collections

from luna_jax import errors

Variant = Callable[[ml_collections.ConfigDict], None]


def apply_variant(config: ml_collections.ConfigDict, variant: str,
                  variants: Mapping[str, Variant], source: str) -> ml_collections.ConfigDict:
  """`config` changed by `variants[variant]` ("" leaves it as it is); an unknown name
  fails with the known ones. `source` is the config file (its name goes in the message)."""
  if variant:
    if variant not in variants:
      raise errors.ConfigError(f"unknown variant {variant!r} of {pathlib.Path(source).name}; known: "
                       f"{', '.join(sorted(variants)) or 'none'}")
    variants[variant](config)
  return config


def self_pretrained(base: Variant, steps: int, eval_every: int = 100) -> Variant:
  """`base` preceded by `steps` masked-language-model steps on the task's own training
  inputs (self-pre-training, Amos et al. 2024); fine-tuning keeps base's steps, so the
  two variants are comparable."""

  def variant(c: ml_collections.ConfigDict) -> None:
    base(c)
    c.pretrain.objective = "mlm"
    c.pretrain.num_train_steps = steps
    c.pretrain.eval_every = eval_every

  variant.__doc__ = (f"The {base.__name__} variant after {steps} self-pre-training (MLM) "
                     "steps on its own training inputs.")
  return variant
