"""The LRA classifier: embeddings, an encoder of any registered mixer, pooling, a head.

    tokens -> embedding + learned positions -> LayerNorm -> Dropout -> Encoder
           -> CLS (x[0]) or mean over real tokens -> Linear -> ReLU -> Linear (no bias)

As in the Luna LRA models; padded token rows are zeroed (the encoder does it). For pairs
(retrieval) one shared encoder reads both documents and the two sentence vectors are
combined: [u, v] (Luna's concatenation) or [u, v, u * v, u - v] (the NLI-style head of
the LRA paper).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common
from luna_jax.encoder import Encoder
from luna_jax.models.embeddings import embed_tokens

Array = common.Array
POOLINGS = ("cls", "mean")
PAIR_COMBINATIONS = ("concat", "nli")




class LraClassifier(nn.Module):
  """Sequence (or sequence-pair) classifier over token ids.

  Attributes:
    vocab_size, max_len, num_classes: from the task; max_len bounds the positions.
    d_model: model width; classifier_hidden: width of the head's hidden layer.
    pooling: "cls" (the first token) or "mean" (over real tokens).
    pair_combination: "concat" or "nli", for inputs of shape (B, 2, N).
    encoder: keyword arguments of `luna_jax.Encoder` (mixer, layers, heads, mixer_options).
  """

  vocab_size: int
  max_len: int
  num_classes: int
  d_model: int
  classifier_hidden: int
  dropout: float = 0.1
  pooling: str = "cls"
  pair_combination: str = "concat"
  init_style: str = "xavier"
  encoder: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  def _embed(self, tokens_BxN: Array, deterministic: bool) -> Array:
    return embed_tokens(self, tokens_BxN, deterministic)[0]

  def _sentence(self, tokens_BxN: Array, deterministic: bool) -> Array:
    mask_BxN = tokens_BxN != 0
    x = self._embed(tokens_BxN, deterministic)
    x, _ = Encoder(**self.encoder, dtype=self.dtype, param_dtype=self.param_dtype,
                   init_style=self.init_style, name="encoder")(
                       x, mask_BxN=mask_BxN, deterministic=deterministic)
    if self.pooling == "cls":
      return x[:, 0]
    weights = mask_BxN.astype(x.dtype)[..., None]
    return (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1)

  @nn.compact
  def __call__(self, tokens: Array, *, deterministic: bool = True) -> Array:
    """tokens: int (B, N), or (B, 2, N) for pairs; 0 is padding. Returns float32 logits
    (B, num_classes)."""
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r} is not one of {POOLINGS}.")
    if tokens.ndim == 3:
      b, two, n = tokens.shape
      pooled = self._sentence(tokens.reshape(b * two, n), deterministic)
      u, v = pooled.reshape(b, two, -1)[:, 0], pooled.reshape(b, two, -1)[:, 1]
      if self.pair_combination == "concat":
        features = jnp.concatenate([u, v], -1)
      elif self.pair_combination == "nli":
        features = jnp.concatenate([u, v, u * v, u - v], -1)
      else:
        raise ValueError(f"pair_combination={self.pair_combination!r} is not one of "
                         f"{PAIR_COMBINATIONS}.")
    else:
      features = self._sentence(tokens, deterministic)
    kw = dict(role="linear", init_style=self.init_style, dtype=self.dtype,
              param_dtype=self.param_dtype)
    h = nn.relu(common.dense(self.classifier_hidden, features.shape[-1], name="classifier_hidden",
                             **kw)(features))
    logits = common.dense(self.num_classes, self.classifier_hidden, name="classifier_out",
                          use_bias=False, **kw)(h)
    return logits.astype(jnp.float32)
