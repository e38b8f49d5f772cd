"""The learning-rate schedules and gradient accumulation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from luna_jax.training.optim import learning_rate_schedule
from luna_jax.training.objectives import Classification
from luna_jax.training.steps import TrainState, make_train_step


def _opt(**kw):
  base = dict(learning_rate=1e-3, schedule="inverse_sqrt", warmup_steps=10, warmup_init_lr=1e-7)
  return ml_collections.ConfigDict({**base, **kw})


def test_inverse_sqrt_warms_up_linearly_from_1e7_then_decays_as_fairseq():
  sched = learning_rate_schedule(_opt(), 100)
  # fairseq counts updates from 1: update u has lr init + (peak - init) * u / warmup.
  np.testing.assert_allclose(float(sched(0)), 1e-7 + (1e-3 - 1e-7) / 10, rtol=1e-6)
  np.testing.assert_allclose(float(sched(9)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(sched(39)), 1e-3 * np.sqrt(10 / 40), rtol=1e-6)


def test_cosine_reaches_zero_at_the_last_step():
  sched = learning_rate_schedule(_opt(schedule="cosine"), 110)
  np.testing.assert_allclose(float(sched(9)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(sched(59)), 0.5e-3, rtol=1e-5)
  assert float(sched(109)) < 1e-9


class _Linear:
  """A stand-in model with the apply signature of LraClassifier."""

  def apply(self, variables, inputs, deterministic=True, rngs=None):
    return inputs.astype(jnp.float32) @ variables["params"]["w"]


def test_gradient_accumulation_equals_one_big_batch():
  rng = np.random.default_rng(0)
  batch = {"inputs": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 3, 8), jnp.int32),
           "weight": jnp.asarray([1, 1, 1, 1, 1, 1, 0, 1], jnp.float32)}
  params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
  tx = optax.sgd(0.1)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0))
  one, m1 = make_train_step(_Linear(), tx, Classification(2), 1)(state, batch)
  four, m4 = make_train_step(_Linear(), tx, Classification(2), 4)(state, batch)
  np.testing.assert_allclose(four.params["w"], one.params["w"], rtol=1e-6)
  assert float(m1["count"]) == float(m4["count"]) == 7.0
  np.testing.assert_allclose(float(m4["loss_sum"]), float(m1["loss_sum"]), rtol=1e-6)
  assert not np.allclose(one.params["w"], params["w"])
