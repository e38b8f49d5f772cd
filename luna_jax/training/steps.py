"""The train state and the pure train/eval steps (compiled once by the loop).

Dropout and masking keys come from one of jax.random's generators (`PRNG_IMPLS`):
Threefry-2x32, a hash computed by ordinary ops and fused into its consumers, or "rbg",
the TPU's hardware random-bit generator. On TPU, Threefry makes the compiler generate
its rounds inside every dropout's fusion: the Luna Text step then compiles in 1.6x the
time (123 s against 75 s, `benchmarks/results/tpu_compile_time.md`). Parameters are
always drawn with Threefry, so a seed gives the same initial model on every platform.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

# optax.global_norm is deprecated in favour of optax.tree.norm (absent in older optax).
_global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm


PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def resolve_prng_impl(name: str, platform: str) -> str:
  """config.prng_impl on `platform`: "auto" is rbg on TPU (as MaxText and T5X use
  there) and threefry2x32 elsewhere, where it is cheap and platform-independent."""
  if name == "auto":
    return "rbg" if platform == "tpu" else "threefry2x32"
  return name


class TrainState(flax.struct.PyTreeNode):
  """Everything a step changes. `rng` is the base dropout key's data (uint32 words of the
  run's generator); step t uses fold_in(rng, t), so a resumed run draws exactly the keys
  of an uninterrupted one."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def create_state(model, tx, seed: int, example_inputs,
                 prng_impl: str = "threefry2x32") -> TrainState:
  """example_inputs: the model's positional inputs (an array, or a tuple of them);
  prng_impl: the dropout keys' generator (`PRNG_IMPLS`)."""
  params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  if prng_impl != "threefry2x32":  # the other generator's key words, drawn from the seed
    words = jax.random.key_data(jax.random.key(0, impl=prng_impl)).shape
    dropout_key = jax.random.bits(dropout_key, words, jnp.uint32)
  if not isinstance(example_inputs, tuple):
    example_inputs = (example_inputs,)
  params = model.init({"params": params_key}, *example_inputs)["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=dropout_key)


def make_train_step(model, tx, objective, grad_accum_steps: int = 1,
                    prng_impl: str = "threefry2x32"):
  """(state, batch) -> (state, metric sums) of the objective (`objectives`); the batch is
  split into grad_accum_steps micro-batches (rows i, i + k, ... so each stays spread over
  the devices); micro-batch i gets the key fold_in(fold_in(rng, step), i) of prng_impl's
  generator."""

  def micro_loss(params, micro, key):
    sums = objective.sums(model, params, micro, key, train=True)
    return sums["loss_sum"], sums

  grad_fn = jax.grad(micro_loss, has_aux=True)

  def train_step(state: TrainState, batch: dict):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng, impl=prng_impl), state.step)
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


def make_eval_step(model, objective, prng_impl: str = "threefry2x32"):
  """(params, batch, batch index) -> the objective's metric sums, without dropout."""

  def eval_step(params, batch: dict, index) -> dict:
    key = jax.random.fold_in(jax.random.key(EVAL_SEED, impl=prng_impl), index)
    return objective.sums(model, params, batch, key, train=False)

  return eval_step
