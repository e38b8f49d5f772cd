"""Greedy and beam-search generation with fixed shapes in one `lax.while_loop`.

Both drive a step function over decoding state that the caller owns (a model's decoding
caches, or anything else):

    step_fn(state, tokens_R) -> (log_probs_RxV, state)

R rows (batch B for greedy, B * k for a beam of k), one new token each; log_probs are
log-softmax over the vocabulary. The state is a pytree whose leaves have R rows in front.
Beam search reorders it by each surviving hypothesis's parent after every step.

Beam search keeps k alive hypotheses and k finished ones per example. At each step it
scores the 2k best continuations of the alive ones. Those ending in EOS that rank among
the k best (as fairseq's search, so that a beam of one is greedy search) join the
finished set with score logp / lp(length), where lp(m) = ((5 + m) / 6) ** length_penalty (Wu et
al. 2016; length_penalty 0 scores by log probability alone). The k best others stay alive.
A finished hypothesis is never extended or replaced except by a better finished one. The
loop stops at max_len, or once no alive hypothesis can still beat the worst finished one
of its example. That test is exact for length_penalty = 0 and uses the best possible
normaliser (max_len) otherwise.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]
NEG_INF = -1e9


def greedy_search(step_fn: StepFn, state, *, batch: int, max_len: int, bos_id: int,
                  eos_id: int, pad_id: int = 0) -> jax.Array:
  """(B, max_len) tokens: the most probable token at each step. After EOS a row holds
  pad_id, and its state keeps being stepped with pad_id (the shapes stay fixed)."""

  def body(carry):
    t, last_R, done_R, out_BxT, state = carry
    log_probs, state = step_fn(state, last_R)
    token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    token = jnp.where(done_R, pad_id, token)
    out_BxT = out_BxT.at[:, t].set(token)
    return t + 1, token, done_R | (token == eos_id), out_BxT, state

  def cond(carry):
    t, _, done_R, _, _ = carry
    return (t < max_len) & ~jnp.all(done_R)

  init = (jnp.int32(0), jnp.full((batch,), bos_id, jnp.int32), jnp.zeros((batch,), bool),
          jnp.full((batch, max_len), pad_id, jnp.int32), state)
  return jax.lax.while_loop(cond, body, init)[3]


def _length_norm(length, length_penalty: float):
  return ((5.0 + length) / 6.0) ** length_penalty


def _gather_beams(tree, indices_BxK, batch: int, beam: int):
  """Rows (B * k, ...) -> (B * k, ...) taking beams `indices_BxK` of each example; leaves
  without B * k rows in front (a cache's step index) are shared and kept."""

  def gather(a):
    if a.ndim == 0 or a.shape[0] != batch * beam:
      return a
    a = a.reshape(batch, -1, *a.shape[1:])
    picked = jnp.take_along_axis(
        a, indices_BxK.reshape(batch, -1, *([1] * (a.ndim - 2))), axis=1)
    return picked.reshape(batch * indices_BxK.shape[1], *a.shape[2:])

  return jax.tree.map(gather, tree)


def beam_search(step_fn: StepFn, state, *, batch: int, beam_size: int, max_len: int,
                bos_id: int, eos_id: int, pad_id: int = 0, length_penalty: float = 1.0):
  """Beam search (module docstring). `state` has B * beam_size rows, example-major (rows
  b k .. b k + k - 1 belong to example b), all equal at the start.

  Returns (tokens (B, k, max_len), scores (B, k)), best first. Tokens end with EOS, then
  pad_id. An example with no finished hypothesis by max_len returns its alive ones,
  scored the same way.
  """
  b, k = batch, beam_size

  def body(carry):
    (t, alive_seq, alive_lp, fin_seq, fin_score, fin_flag, state) = carry
    last = jax.lax.dynamic_index_in_dim(alive_seq, jnp.maximum(t - 1, 0), axis=2,
                                        keepdims=False)
    last = jnp.where(t == 0, bos_id, last).reshape(b * k)
    log_probs, state = step_fn(state, last)
    log_probs = log_probs.astype(jnp.float32)  # scores accumulate in float32
    vocab = log_probs.shape[-1]
    cand_BxKxV = alive_lp[..., None] + log_probs.reshape(b, k, vocab)
    top_lp, top_index = jax.lax.top_k(cand_BxKxV.reshape(b, k * vocab), 2 * k)
    parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    seq_2k = jnp.take_along_axis(alive_seq, parent[..., None], axis=1)
    seq_2k = jax.lax.dynamic_update_index_in_dim(seq_2k, token, t, axis=2)
    ends = token == eos_id
    # As fairseq: a hypothesis finishes only when its EOS ranks among the k best
    # continuations (so a beam of 1 is greedy search); lower-ranked EOS ones are dropped.
    rank = jnp.arange(2 * k)[None, :]
    is_eos = ends & (rank < k) & (top_lp > NEG_INF / 2)  # not from an empty beam
    # Alive: the k best that do not end here.
    alive_rank = jnp.where(ends, NEG_INF, top_lp)
    new_alive_lp, keep = jax.lax.top_k(alive_rank, k)
    new_alive_seq = jnp.take_along_axis(seq_2k, keep[..., None], axis=1)
    state = _gather_beams(state, jnp.take_along_axis(parent, keep, axis=1), b, k)
    # Finished: the k best of the old finished and the ones that end here.
    score = jnp.where(is_eos, top_lp / _length_norm(t + 1.0, length_penalty), NEG_INF)
    all_seq = jnp.concatenate([fin_seq, seq_2k], axis=1)
    all_score = jnp.concatenate([fin_score, score], axis=1)
    all_flag = jnp.concatenate([fin_flag, is_eos], axis=1)
    fin_score, best = jax.lax.top_k(all_score, k)
    fin_seq = jnp.take_along_axis(all_seq, best[..., None], axis=1)
    fin_flag = jnp.take_along_axis(all_flag, best, axis=1)
    return (t + 1, new_alive_seq, new_alive_lp, fin_seq, fin_score, fin_flag, state)

  def cond(carry):
    t, _, alive_lp, _, fin_score, fin_flag, _ = carry
    # The best an alive hypothesis can still score: its log probability only falls, and
    # the normaliser is largest at max_len.
    best_alive = alive_lp[:, 0] / _length_norm(max_len, length_penalty)
    worst_finished = jnp.where(fin_flag[:, -1], fin_score[:, -1], NEG_INF)
    can_improve = jnp.any(best_alive > worst_finished)
    return (t < max_len) & can_improve

  alive_lp = jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  init = (jnp.int32(0), jnp.full((b, k, max_len), pad_id, jnp.int32), alive_lp,
          jnp.full((b, k, max_len), pad_id, jnp.int32), jnp.full((b, k), NEG_INF, jnp.float32),
          jnp.zeros((b, k), bool), state)
  t, alive_seq, alive_lp, fin_seq, fin_score, fin_flag, _ = jax.lax.while_loop(
      cond, body, init)
  # Examples with nothing finished return their alive hypotheses.
  none = ~jnp.any(fin_flag, axis=1)
  alive_score = alive_lp / _length_norm(t.astype(jnp.float32), length_penalty)
  tokens = jnp.where(none[:, None, None], alive_seq, fin_seq)
  scores = jnp.where(none[:, None], alive_score, fin_score)
  return tokens, scores
