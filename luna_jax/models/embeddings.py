"""The token embedding shared by the classifier and the language model (same parameter
names), so that a pre-trained language model's embeddings and encoder start a classifier
(`init_from`).

    tokens -> embedding + learned positions -> LayerNorm -> Dropout
"""

from __future__ import annotations

import flax.linen as nn

from luna_jax import common

Array = common.Array


def embed_tokens(model: nn.Module, tokens_BxN: Array, deterministic: bool):
  """Token embedding + learned positions -> LayerNorm -> Dropout, inside `model`'s compact
  call (its parameters token_embed, position_embed, embed_norm). `model` has the
  attributes vocab_size, max_len, d_model, dropout, init_style, dtype and param_dtype;
  the classifier and the language model share these names, so a pre-trained model's
  embeddings load into a classifier. Returns (x of shape (B, N, D), the nn.Embed)."""
  if tokens_BxN.shape[-1] > model.max_len:
    raise ValueError(f"inputs have {tokens_BxN.shape[-1]} tokens but the model allows "
                     f"max_len={model.max_len}; raise max_len or truncate the inputs.")
  std = 0.02 if model.init_style == "bert" else model.d_model**-0.5
  embed = nn.Embed(num_embeddings=model.vocab_size, features=model.d_model,
                   embedding_init=nn.initializers.normal(std), dtype=model.dtype,
                   param_dtype=model.param_dtype, name="token_embed")
  positions = model.param("position_embed", nn.initializers.normal(std),  # (max_len, D)
                          (model.max_len, model.d_model), model.param_dtype)
  x = embed(tokens_BxN) + positions[None, :tokens_BxN.shape[-1]].astype(model.dtype)
  x = common.layer_norm("embed_norm", model.dtype, model.param_dtype)(x)
  return nn.Dropout(model.dropout)(x, deterministic=deterministic), embed


# The parameters a classifier takes over from a pre-trained model (`init_from`).
SHARED_PARAMS = ("token_embed", "position_embed", "embed_norm", "encoder")
