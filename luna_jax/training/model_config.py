"""The model part of the config: each mixer's `model.<name>` block, made from its settings
dataclass, and the encoder, classifier and language model the `model` block describes.
Every workload builds its model from these.
"""

from __future__ import annotations

import dataclasses
import typing

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from luna_jax import errors, registry
from luna_jax.data.vocab import Vocab
from luna_jax.models.classifier import PAIR_COMBINATIONS, POOLINGS
from luna_jax.models.language_model import LanguageModel, lm_vocab_size

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
LAYER_NORMS = ("default", "pre", "post")
NORMALIZE_BEFORE = {"default": None, "pre": True, "post": False}


def settings_block(settings_cls) -> ml_collections.ConfigDict:
  """A mixer's config block: its settings' defaults; a None default becomes a typed
  placeholder, so that --config.model.<name>.<setting>= can still set it."""
  hints = typing.get_type_hints(settings_cls)
  block = ml_collections.ConfigDict()
  for field in dataclasses.fields(settings_cls):
    value = field.default
    if value is dataclasses.MISSING:
      value = field.default_factory()
    if value is None:
      types = [t for t in typing.get_args(hints[field.name]) if t is not type(None)]
      value = config_dict.placeholder(types[0] if len(types) == 1 else object)
    block[field.name] = value
  return block


def add_mixer_blocks(model_block: ml_collections.ConfigDict) -> None:
  """One block per registered mixer (model.luna, ...), made from its settings dataclass;
  the chosen one's block is used."""
  for name in registry.mixer_names():
    if name in model_block:
      raise ValueError(f"mixer name {name!r} collides with the config key model.{name}.")
    model_block[name] = settings_block(registry.get_mixer(name).settings)


def run_of(config):
  """What the chosen mixer's settings may follow or be checked against."""
  m = config.model
  return registry.RunShape(max_len=config.max_len, num_layers=m.num_layers,
                           d_model=m.d_model, num_heads=m.num_heads, causal=m.causal)


def mixer_settings(config):
  """The chosen mechanism's settings object, read from its block: unset derived settings
  follow the run (e.g. Linformer's max_len), and the mixer's own check has passed."""
  name = config.model.name
  spec = registry.get_mixer(name)
  block = config.model.get(name)
  block = {} if block is None else block.to_dict()
  unknown = sorted(set(block) - set(spec.setting_names()))
  errors.require(not unknown, f"model.{name} has no setting {', '.join(unknown)}; its "
                 f"settings are {', '.join(spec.setting_names())}.")
  try:
    return registry.make_settings(name, block, run_of(config))
  except ValueError as e:  # the mixer's message starts with the setting's name
    raise errors.ConfigError(f"invalid config: model.{name}.{e}") from None


def check_model(config) -> None:
  """The `model` block's own checks (the mixer's included)."""
  m = config.model
  names = registry.mixer_names()
  errors.require(m.name in names, f"model.name={m.name!r} is not a mechanism; choose one "
                 f"of {', '.join(names)}.")
  errors.require(m.num_heads > 0 and m.d_model % m.num_heads == 0,
                 f"model.num_heads={m.num_heads} must divide model.d_model={m.d_model}.")
  mixer_settings(config)  # the mixer's own check ("invalid config: model.<name>....")
  errors.require(m.dtype in DTYPES, f"model.dtype={m.dtype!r} is not one of "
                 f"{list(DTYPES)}.")
  errors.require(m.layer_norm in LAYER_NORMS, f"model.layer_norm={m.layer_norm!r} is not "
                 f"one of {LAYER_NORMS}.")
  errors.require(m.pooling in POOLINGS, f"model.pooling={m.pooling!r} is not one of "
                 f"{POOLINGS}.")
  errors.require(m.pair_combination in PAIR_COMBINATIONS, f"model.pair_combination="
                 f"{m.pair_combination!r} is not one of {PAIR_COMBINATIONS}.")


def encoder_settings(config) -> dict:
  """The `Encoder` keyword arguments of the config's model block."""
  m = config.model
  encoder = dict(mixer=m.name, num_layers=m.num_layers, num_heads=m.num_heads,
                 ffn_dim=m.ffn_dim, dropout=m.dropout, attention_dropout=m.attention_dropout,
                 activation_dropout=m.activation_dropout,
                 normalize_before=NORMALIZE_BEFORE[m.layer_norm], causal=m.causal,
                 mixer_options=mixer_settings(config))
  if m.remat:
    encoder["remat"] = True
  return encoder


def language_model(config, vocab: Vocab) -> LanguageModel:
  """The masked or causal language model over `vocab` (plus its [MASK] id)."""
  m = config.model
  return LanguageModel(
      vocab_size=lm_vocab_size(vocab.size), max_len=config.max_len, d_model=m.d_model,
      dropout=m.dropout, init_style=m.init_style, tie_embeddings=config.mlm.tie_embeddings,
      encoder=encoder_settings(config), dtype=DTYPES[m.dtype])
