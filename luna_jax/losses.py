"""Label-smoothed cross-entropy as fairseq's `label_smoothed_nll_loss` computes it
(Szegedy et al. 2016; the translation models of the LightConv and Luna papers use
epsilon = 0.1):

    loss = (1 - eps - eps / (V - 1)) * nll + eps / (V - 1) * sum_v (-log p_v)

that is, the target keeps 1 - eps of the mass and the other V - 1 classes share eps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def label_smoothed_nll(logits: jax.Array, targets: jax.Array, epsilon: float
                       ) -> tuple[jax.Array, jax.Array]:
  """(smoothed loss, plain nll) per position, both of shape targets.shape; logits are
  (..., V) and computed in at least float32."""
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  smooth = -jnp.sum(log_probs, axis=-1)
  eps_i = epsilon / (logits.shape[-1] - 1)
  return (1.0 - epsilon - eps_i) * nll + eps_i * smooth, nll
