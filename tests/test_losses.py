"""Label smoothing against its formula, computed independently in float64 NumPy."""

import jax.numpy as jnp
import numpy as np

from luna_jax.losses import label_smoothed_nll


def test_label_smoothing_matches_the_smoothed_target_distribution():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 7, 11)) * 3
  targets = rng.integers(0, 11, (3, 7))
  eps = 0.1
  loss, nll = label_smoothed_nll(jnp.asarray(logits), jnp.asarray(targets), eps)
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  # Cross-entropy against q: 1 - eps on the target, eps / (V - 1) on every other class.
  q = np.full(logits.shape, eps / 10)
  np.put_along_axis(q, targets[..., None], 1 - eps, axis=-1)
  np.testing.assert_allclose(loss, -(q * logp).sum(-1), rtol=1e-12)
  np.testing.assert_allclose(nll, -np.take_along_axis(logp, targets[..., None], -1)[..., 0],
                             rtol=1e-12)
  plain, _ = label_smoothed_nll(jnp.asarray(logits), jnp.asarray(targets), 0.0)
  np.testing.assert_allclose(plain, nll, rtol=1e-12)
