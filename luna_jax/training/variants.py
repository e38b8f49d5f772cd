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

Variant = Callable[[ml_collections.ConfigDict], None]


def apply_variant(config: ml_collections.ConfigDict, variant: str,
                  variants: Mapping[str, Variant], source: str) -> ml_collections.ConfigDict:
  """`config` changed by `variants[variant]` ("" leaves it as it is); an unknown name
  fails with the known ones. `source` is the config file (its name goes in the message)."""
  if variant:
    if variant not in variants:
      raise ValueError(f"unknown variant {variant!r} of {pathlib.Path(source).name}; known: "
                       f"{', '.join(sorted(variants)) or 'none'}")
    variants[variant](config)
  return config
