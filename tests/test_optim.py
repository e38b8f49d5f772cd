"""The learning-rate schedules and gradient accumulation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from luna_jax.training.optim import learning_rate_schedule
from luna_jax.training.objectives import Classification
from luna_jax.training.steps import TrainState, create_state, make_train_step


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


class _Dropout:
  """A stand-in model whose logits go through dropout."""

  def apply(self, variables, inputs, deterministic=True, rngs=None):
    import flax.linen as nn

    h = inputs.astype(jnp.float32) @ variables["params"]["w"]
    return nn.Dropout(0.5).apply({}, h, deterministic=deterministic, rngs=rngs)

  def init(self, rngs, inputs):
    return {"params": {"w": jnp.ones((inputs.shape[-1], 3), jnp.float32)}}


def test_dropout_keys_of_each_generator_repeat_and_differ():
  """prng_impl picks the generator of the dropout keys: a step repeats exactly from the
  same state, and the generators draw different masks."""
  batch = {"inputs": jnp.ones((8, 64), jnp.float32), "label": jnp.zeros((8,), jnp.int32),
           "weight": jnp.ones((8,), jnp.float32)}
  tx = optax.sgd(0.1)
  losses = {}
  for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
    state = create_state(_Dropout(), tx, 0, jnp.ones((1, 64)), impl)
    assert state.rng.dtype == jnp.uint32 and state.rng.ndim == 1
    step = jax.jit(make_train_step(_Dropout(), tx, Classification(3), 1, impl))
    first, second = step(state, batch)[1], step(state, batch)[1]
    assert float(first["loss_sum"]) == float(second["loss_sum"])
    losses[impl] = float(first["loss_sum"])
  assert len(set(losses.values())) == 3, losses
  # threefry2x32 keeps the keys of the runs before prng_impl existed.
  legacy = jax.random.split(jax.random.PRNGKey(0))[1]
  np.testing.assert_array_equal(
      create_state(_Dropout(), tx, 0, jnp.ones((1, 64))).rng, legacy)
