"""Language models over token ids: masked (BERT/RoBERTa) and causal, and their inputs.

    tokens -> embedding + learned positions -> LayerNorm -> Dropout -> Encoder
           -> Linear -> GELU -> LayerNorm -> logits = h E^T + b   (E: the token embedding)

The embedding and encoder are the classifier's (`embeddings.embed_tokens`, same parameter
names), so a pre-trained language model's weights start a classifier (`init_from`). The
output projection is tied to the token embedding by default (RoBERTa's LM head); untied
it is a Linear layer of its own. The vocabulary is the task's plus one [MASK] id, the last
(`lm_vocab_size`); a classifier taking over the embedding leaves that row out.

Masked language modelling (Devlin et al. 2019): each real content token (not padding, CLS
or EOS) is chosen with probability 0.15; a chosen token becomes [MASK] with probability
0.8, a random content token with 0.1, and stays itself with 0.1; the loss is over chosen
positions only. Causal language modelling: position t predicts token t + 1 (the leading
CLS acts as the beginning-of-sequence token; EOS is predicted, padding is not).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common
from luna_jax.encoder import Encoder
from luna_jax.models.embeddings import embed_tokens

Array = common.Array


def lm_vocab_size(task_vocab_size: int) -> int:
  """The language model's vocabulary: the task's ids, then [MASK]."""
  return task_vocab_size + 1


def mask_id(task_vocab_size: int) -> int:
  return task_vocab_size


@dataclasses.dataclass(frozen=True)
class MaskingRates:
  """BERT's corruption: `rate` of the real tokens are predicted; of those, `mask` become
  [MASK], `random` a random content token, the rest stay as they are."""

  rate: float = 0.15
  mask: float = 0.8
  random: float = 0.1

  def check(self) -> None:
    if not 0 < self.rate <= 1:
      raise ValueError(f"mlm.mask_rate={self.rate} must be in (0, 1].")
    if self.mask < 0 or self.random < 0 or self.mask + self.random > 1:
      raise ValueError(f"mlm.mask_fraction={self.mask} and mlm.random_fraction="
                       f"{self.random} must be >= 0 and sum to at most 1.")


def mask_tokens(tokens_BxN: Array, key: jax.Array, *, num_tokens: int, mask_token: int,
                rates: MaskingRates = MaskingRates()) -> tuple[Array, Array, Array]:
  """BERT masking of content ids 1..num_tokens (others are never chosen).

  Returns (inputs_BxN: the corrupted tokens, targets_BxN: the original tokens,
  weights_BxN: float32, 1 at the chosen positions). The same key gives the same masks.
  """
  choose_key, kind_key, random_key = jax.random.split(key, 3)
  content = (tokens_BxN >= 1) & (tokens_BxN <= num_tokens)
  chosen = content & (jax.random.uniform(choose_key, tokens_BxN.shape) < rates.rate)
  kind = jax.random.uniform(kind_key, tokens_BxN.shape)
  to_mask = chosen & (kind < rates.mask)
  to_random = chosen & (kind >= rates.mask) & (kind < rates.mask + rates.random)
  random_ids = jax.random.randint(random_key, tokens_BxN.shape, 1, num_tokens + 1,
                                  tokens_BxN.dtype)
  inputs = jnp.where(to_mask, mask_token, jnp.where(to_random, random_ids, tokens_BxN))
  return inputs, tokens_BxN, chosen.astype(jnp.float32)


def next_token_targets(tokens_BxN: Array, segment_ids_BxN: Optional[Array] = None
                       ) -> tuple[Array, Array]:
  """(targets_BxN, weights_BxN): token t + 1 at position t, weight 0 where that is
  padding, past the end, or (packed rows) the first token of the next document, which
  position t cannot see."""
  def shift(a):
    return jnp.concatenate([a[:, 1:], jnp.zeros_like(a[:, :1])], axis=1)

  targets = shift(tokens_BxN)
  weights = targets != 0
  if segment_ids_BxN is not None:
    weights &= shift(segment_ids_BxN) == segment_ids_BxN
  return targets, weights.astype(jnp.float32)


class LanguageModel(nn.Module):
  """Per-position logits over the vocabulary (see the module docstring).

  Attributes:
    vocab_size: ids the model reads and predicts (`lm_vocab_size` of the task's).
    max_len: positions; d_model: width; dropout: embedding dropout.
    tie_embeddings: logits from the token embedding (True) or a Linear layer of their own.
    encoder: keyword arguments of `luna_jax.Encoder` (causal=True for causal LM).
  """

  vocab_size: int
  max_len: int
  d_model: int
  dropout: float = 0.1
  init_style: str = "xavier"
  tie_embeddings: bool = True
  encoder: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(self, tokens_BxN: Array, *, segment_ids_BxN: Optional[Array] = None,
               deterministic: bool = True) -> Array:
    """tokens: int (B, N), 0 is padding; segment_ids: the document of each position in
    packed rows (see `Encoder`). Returns logits (B, N, vocab_size) in at least float32."""
    mask_BxN = tokens_BxN != 0
    x, embed = embed_tokens(self, tokens_BxN, deterministic)
    x, _ = Encoder(**self.encoder, dtype=self.dtype, param_dtype=self.param_dtype,
                   init_style=self.init_style, name="encoder")(
                       x, mask_BxN=mask_BxN, segment_ids_BxN=segment_ids_BxN,
                       deterministic=deterministic)
    kw = dict(init_style=self.init_style, dtype=self.dtype, param_dtype=self.param_dtype)
    h = common.dense(self.d_model, self.d_model, role="linear", name="lm_transform", **kw)(x)
    h = common.layer_norm("lm_norm", self.dtype, self.param_dtype)(common.gelu(h))
    if self.tie_embeddings:
      bias = self.param("lm_bias", nn.initializers.zeros, (self.vocab_size,),
                        self.param_dtype)
      logits = embed.attend(h) + bias.astype(self.dtype)[None, None, :]
    else:
      logits = common.dense(self.vocab_size, self.d_model, role="linear", name="lm_out",
                            **kw)(h)
    return logits.astype(common.softmax_dtype(self.dtype))
