"""The train state and the pure train/eval steps (compiled once by the loop)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

# optax.global_norm is deprecated in favour of optax.tree.norm (absent in older optax).
_global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm


class TrainState(flax.struct.PyTreeNode):
  """Everything a step changes. `rng` is the base dropout key; step t uses
  fold_in(rng, t), so a resumed run draws exactly the keys of an uninterrupted one."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def create_state(model, tx, seed: int, example_inputs) -> TrainState:
  """example_inputs: the model's positional inputs (an array, or a tuple of them)."""
  params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  if not isinstance(example_inputs, tuple):
    example_inputs = (example_inputs,)
  params = model.init({"params": params_key}, *example_inputs)["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=dropout_key)


def make_train_step(model, tx, objective, grad_accum_steps: int = 1):
  """(state, batch) -> (state, metric sums) of the objective (`objectives`); the batch is
  split into grad_accum_steps micro-batches (rows i, i + k, ... so each stays spread over
  the devices); micro-batch i gets the key fold_in(fold_in(rng, step), i)."""

  def micro_loss(params, micro, key):
    sums = objective.sums(model, params, micro, key, train=True)
    return sums["loss_sum"], sums

  grad_fn = jax.grad(micro_loss, has_aux=True)

  def train_step(state: TrainState, batch: dict):
    key = jax.random.fold_in(state.rng, state.step)
    k = grad_accum_steps
    micro_batches = jax.tree.map(
        lambda a: jnp.swapaxes(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 0, 1), batch)

    def accumulate(carry, inputs):
      grads, sums = carry
      index, micro = inputs
      g, s = grad_fn(state.params, micro, jax.random.fold_in(key, index))
      return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, sums, s)), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    zero_sums = {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct", "count")}
    (grads, sums), _ = jax.lax.scan(accumulate, (zeros, zero_sums),
                                    (jnp.arange(k), micro_batches))
    grads = jax.tree.map(lambda g: g / jnp.maximum(sums["count"], 1.0), grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    sums["grad_norm"] = _global_norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), sums

  return train_step


# Evaluation batch i draws its masks (language modelling) from fold_in(key(EVAL_SEED), i):
# every validation pass, and eval.py, score the same corrupted inputs.
EVAL_SEED = 1234


def make_eval_step(model, objective):
  """(params, batch, batch index) -> the objective's metric sums, without dropout."""

  def eval_step(params, batch: dict, index) -> dict:
    key = jax.random.fold_in(jax.random.PRNGKey(EVAL_SEED), index)
    return objective.sums(model, params, batch, key, train=False)

  return eval_step
