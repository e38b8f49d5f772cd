"""Greedy and beam-search generation with fixed shapes in one `lax.while_loop`.

Both drive a step function over decoding state that the caller owns (a model's decoding
caches, or anything else):

    step_fn(state, tokens_R) -> (log_probs_RxV, state)

R rows (batch B for greedy, B * k for a beam of k), one new token each; log_probs are
log-softmax over the vocabulary. The state is a pytree whose leaves have R rows in front.
Beam search reorders it by each surviving hypothesis's parent after every step.

Lengths. The output buffer holds `max_len` tokens per row (static: it fixes the shapes).
Each row b may have its own cap `max_len_B[b]` (default max_len - 1, at most that): the
tokens it may generate before its EOS, so its output takes at most cap + 1 positions.
(fairseq takes one cap per batch, from the padded source width; per-row caps, as
`luna_jax.models.seq2seq.caps_from_sources` gives, keep a row's output independent of
the rest of its batch.)

Two searches (`search`):

"fairseq", the rules of fairseq's SequenceGenerator (fairseq/sequence_generator.py,
`SequenceGenerator._generate`, with `search.BeamSearch.step`), which the recipes evaluate:
  - `banned` ids (padding, BOS) get log probability -inf after the full log-softmax (so
    the other tokens keep their probabilities, not renormalised);
  - EOS is banned at the steps before `min_len` (default 1: no empty output), and at the
    cap's step only EOS is allowed: every hypothesis ends with EOS, after at most cap
    tokens (a cap below min_len wins: fairseq refuses that case);
  - each step takes the 2k best continuations (by summed log probability) of the k alive
    hypotheses (at the first step, of one). Those ending in EOS among the k best are
    finished, in rank order, while the example has fewer than k finished; the first k
    others stay alive;
  - a finished hypothesis of m tokens, EOS included, scores sum(log p) / m ** lp
    (length_penalty lp; 0: summed log probability);
  - an example is done once it has k finished hypotheses, or at its cap's step; it returns
    them best first (ties in finishing order).
  A beam of one is then greedy search, for any length penalty.

"gnmt", the earlier search here (Wu et al. 2016):
  - banned ids get a large negative log probability after the step (`generate` masks them
    before the log-softmax instead, renormalising the rest); EOS is banned before min_len;
  - a row runs for cap + 1 steps at most and nothing forces EOS: a hypothesis that has not
    ended by then is cut there;
  - the finished set is the k best by sum(log p) / ((5 + m) / 6) ** lp, where an EOS among
    the k best continuations finishes a hypothesis, and a later, better one replaces the
    worst finished;
  - the search stops once no alive hypothesis can beat the worst finished one (an exact
    test for lp = 0; otherwise with the most favourable normaliser, at the cap); an example
    with nothing finished returns its alive hypotheses, without EOS.
  A beam of one is greedy search only for lp = 0: otherwise a longer hypothesis can still
  replace the first finished one.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]
NEG_INF = -1e9  # the GNMT search's "impossible" (finite, so its arithmetic stays finite)
SEARCHES = ("fairseq", "gnmt")


def check_search(search: str) -> None:
  if search not in SEARCHES:
    raise ValueError(f"search={search!r} is not one of {SEARCHES}.")


def _row_caps(max_len_B, batch: int, max_len: int) -> jax.Array:
  """(B,) int32 caps on the tokens before EOS: max_len_B, or max_len - 1, clipped to
  [0, max_len - 1] (the buffer keeps a position for the EOS)."""
  if max_len_B is None:
    return jnp.full((batch,), max_len - 1, jnp.int32)
  caps_B = jnp.asarray(max_len_B).astype(jnp.int32)
  if caps_B.shape != (batch,):
    raise ValueError(f"max_len_B has shape {caps_B.shape}, want ({batch},).")
  return jnp.clip(caps_B, 0, max_len - 1)


def _apply_rules(log_probs_BxKxV, t, caps_B, *, eos_id: int, min_len: int,
                 banned: tuple[int, ...], force_eos: bool, impossible: float):
  """The step's log probs (float32) with `banned` ids, EOS before min_len and (force_eos)
  everything but EOS at each row's cap set to `impossible`. At a cap below min_len the
  cap wins (EOS is allowed there)."""
  lp = log_probs_BxKxV.astype(jnp.float32)  # scores accumulate in float32
  ids_1x1xV = jnp.arange(lp.shape[-1])[None, None, :]
  if banned:
    lp = jnp.where(jnp.isin(ids_1x1xV, jnp.asarray(banned)), impossible, lp)
  at_cap_B = t >= caps_B
  no_eos_B = jnp.broadcast_to(t < min_len, caps_B.shape)
  if force_eos:
    no_eos_B = no_eos_B & ~at_cap_B
    lp = jnp.where(at_cap_B[:, None, None] & (ids_1x1xV != eos_id), impossible, lp)
  return jnp.where(no_eos_B[:, None, None] & (ids_1x1xV == eos_id), impossible, lp)


def greedy_search(step_fn: StepFn, state, *, batch: int, max_len: int, bos_id: int,
                  eos_id: int, pad_id: int = 0, search: str = "fairseq", min_len: int = 1,
                  max_len_B: Optional[jax.Array] = None,
                  banned: tuple[int, ...] = ()) -> jax.Array:
  """(B, max_len) tokens: the most probable allowed token at each step, under the
  search's rules (module docstring: min_len, banned ids, and each row's cap, where
  "fairseq" forces EOS and "gnmt" cuts the row). After EOS or the cap a row holds pad_id,
  and its state keeps being stepped with pad_id (the shapes stay fixed)."""
  check_search(search)
  caps_B = _row_caps(max_len_B, batch, max_len)
  fairseq = search == "fairseq"

  def body(carry):
    t, last_R, done_R, out_BxT, state = carry
    log_probs, state = step_fn(state, last_R)
    log_probs = _apply_rules(log_probs[:, None], t, caps_B, eos_id=eos_id, min_len=min_len,
                             banned=banned, force_eos=fairseq,
                             impossible=-jnp.inf if fairseq else NEG_INF)[:, 0]
    token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    token = jnp.where(done_R, pad_id, token)
    out_BxT = out_BxT.at[:, t].set(token)
    return t + 1, token, done_R | (token == eos_id) | (t >= caps_B), out_BxT, state

  def cond(carry):
    t, _, done_R, _, _ = carry
    return (t < max_len) & ~jnp.all(done_R)

  init = (jnp.int32(0), jnp.full((batch,), bos_id, jnp.int32), jnp.zeros((batch,), bool),
          jnp.full((batch, max_len), pad_id, jnp.int32), state)
  return jax.lax.while_loop(cond, body, init)[3]


def _gnmt_length_norm(length, length_penalty: float):
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


def _take(a_BxN, index_BxM):
  """a[b, index[b, m]] along axis 1, for (B, N) and (B, N, T) arrays."""
  if a_BxN.ndim == 3:
    index_BxM = index_BxM[..., None]
  return jnp.take_along_axis(a_BxN, index_BxM, axis=1)


def _expand(step_fn: StepFn, state, carry_beams, *, t, k: int, bos_id: int, rules):
  """One step of the k alive hypotheses per example: (the 2k best continuations' summed
  log probs (B, 2k), parents (B, 2k), tokens (B, 2k), sequences (B, 2k, max_len), the
  stepped state, in the old beam order)."""
  alive_seq, alive_lp = carry_beams
  b = alive_seq.shape[0]
  last = jax.lax.dynamic_index_in_dim(alive_seq, jnp.maximum(t - 1, 0), axis=2,
                                      keepdims=False)
  last = jnp.where(t == 0, bos_id, last).reshape(b * k)
  log_probs, state = step_fn(state, last)
  log_probs_BxKxV = rules(log_probs.reshape(b, k, -1))
  vocab = log_probs_BxKxV.shape[-1]
  cand_BxKxV = alive_lp[..., None] + log_probs_BxKxV
  top_lp, top_index = jax.lax.top_k(cand_BxKxV.reshape(b, k * vocab), 2 * k)
  parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
  seq_2k = _take(alive_seq, parent)
  seq_2k = jax.lax.dynamic_update_index_in_dim(seq_2k, token, t, axis=2)
  return top_lp, parent, token, seq_2k, state


def beam_search(step_fn: StepFn, state, *, batch: int, beam_size: int, max_len: int,
                bos_id: int, eos_id: int, pad_id: int = 0, length_penalty: float = 1.0,
                search: str = "fairseq", min_len: int = 1,
                max_len_B: Optional[jax.Array] = None, banned: tuple[int, ...] = ()):
  """Beam search under fairseq's or GNMT's rules (module docstring). `state` has
  B * beam_size rows, example-major (rows b k .. b k + k - 1 belong to example b), all
  equal at the start. max_len_B: each example's cap on the tokens before EOS (None:
  max_len - 1 for all); banned: ids never generated (module docstring).

  Returns (tokens (B, k, max_len), scores (B, k)), best first. Tokens end with EOS, then
  pad_id (under "gnmt", hypotheses cut at the cap have no EOS). Under "fairseq" a slot
  left empty (fewer than k hypotheses could finish) scores -inf.
  """
  check_search(search)
  caps_B = _row_caps(max_len_B, batch, max_len)
  kw = dict(step_fn=step_fn, state=state, b=batch, k=beam_size, max_len=max_len,
            bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, length_penalty=length_penalty,
            min_len=min_len, caps_B=caps_B, banned=tuple(banned))
  return _fairseq_beam(**kw) if search == "fairseq" else _gnmt_beam(**kw)


def _fairseq_beam(*, step_fn, state, b, k, max_len, bos_id, eos_id, pad_id, length_penalty,
                  min_len, caps_B, banned):
  """fairseq's SequenceGenerator with search.BeamSearch, in fixed shapes: finished
  hypotheses fill k slots per example in finishing order; `done` freezes an example."""

  def rules(t):
    return lambda lp: _apply_rules(lp, t, caps_B, eos_id=eos_id, min_len=min_len,
                                   banned=banned, force_eos=True, impossible=-jnp.inf)

  def body(carry):
    t, alive_seq, alive_lp, fin_seq, fin_score, fin_count, done, state = carry
    top_lp, parent, token, seq_2k, state = _expand(
        step_fn, state, (alive_seq, alive_lp), t=t, k=k, bos_id=bos_id, rules=rules(t))
    rank = jnp.arange(2 * k)[None, :]
    # fairseq's eos_mask: candidates ending in EOS with a finite score, at any rank.
    ends = (token == eos_id) & (top_lp > -jnp.inf)
    # Finished: those among the k best, in rank order, while the example has room.
    new = ends & (rank < k) & ~done[:, None]
    slot = fin_count[:, None] + jnp.cumsum(new, axis=1) - 1
    new = new & (slot < k)
    fills_Bx2KxK = new[..., None] & (slot[..., None] == jnp.arange(k)[None, None, :])
    filled = jnp.any(fills_Bx2KxK, axis=1)  # (B, k) slots written now
    source = jnp.argmax(fills_Bx2KxK, axis=1)  # (B, k) the candidate each one takes
    score = top_lp / (t + 1.0) ** length_penalty  # m = t + 1 tokens, EOS included
    fin_seq = jnp.where(filled[..., None], _take(seq_2k, source), fin_seq)
    fin_score = jnp.where(filled, _take(score, source), fin_score)
    fin_count = fin_count + jnp.sum(new, axis=1, dtype=jnp.int32)
    done = done | (fin_count >= k) | (t >= caps_B)
    # Alive: the k best candidates that do not end in EOS.
    _, keep = jax.lax.top_k(-jnp.where(ends, 2 * k + rank, rank), k)
    state = _gather_beams(state, _take(parent, keep), b, k)
    return (t + 1, _take(seq_2k, keep), _take(top_lp, keep), fin_seq, fin_score, fin_count,
            done, state)

  def cond(carry):
    t, done = carry[0], carry[6]
    return (t < max_len) & ~jnp.all(done)

  # At the first step only the first beam has candidates (the others start at -inf).
  alive_lp = jnp.tile(jnp.asarray([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (b, 1))
  empty = jnp.full((b, k, max_len), pad_id, jnp.int32)
  init = (jnp.int32(0), empty, alive_lp, empty, jnp.full((b, k), -jnp.inf, jnp.float32),
          jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool), state)
  out = jax.lax.while_loop(cond, body, init)
  fin_seq, fin_score = out[3], out[4]
  order = jnp.argsort(-fin_score, axis=1, stable=True)  # best first, ties in finishing order
  return _take(fin_seq, order), _take(fin_score, order)


def _gnmt_beam(*, step_fn, state, b, k, max_len, bos_id, eos_id, pad_id, length_penalty,
               min_len, caps_B, banned):
  """The GNMT-style search (module docstring); example b runs while t <= caps_B[b]."""
  limit_B = (caps_B + 1).astype(jnp.float32)  # the most tokens a hypothesis can reach

  def rules(t):
    return lambda lp: _apply_rules(lp, t, caps_B, eos_id=eos_id, min_len=min_len,
                                   banned=banned, force_eos=False, impossible=NEG_INF)

  def body(carry):
    (t, alive_seq, alive_lp, fin_seq, fin_score, fin_flag, state) = carry
    top_lp, parent, token, seq_2k, state = _expand(
        step_fn, state, (alive_seq, alive_lp), t=t, k=k, bos_id=bos_id, rules=rules(t))
    running_B = t <= caps_B
    ends = token == eos_id
    # A hypothesis finishes only when its EOS ranks among the k best continuations;
    # lower-ranked EOS ones are dropped.
    rank = jnp.arange(2 * k)[None, :]
    is_eos = ends & (rank < k) & (top_lp > NEG_INF / 2) & running_B[:, None]
    # Alive: the k best that do not end here.
    new_alive_lp, keep = jax.lax.top_k(jnp.where(ends, NEG_INF, top_lp), k)
    new_alive_seq = _take(seq_2k, keep)
    state = _gather_beams(state, _take(parent, keep), b, k)
    # Finished: the k best of the old finished and the ones that end here.
    score = jnp.where(is_eos, top_lp / _gnmt_length_norm(t + 1.0, length_penalty), NEG_INF)
    all_score = jnp.concatenate([fin_score, score], axis=1)
    new_fin_score, best = jax.lax.top_k(all_score, k)
    new_fin_seq = _take(jnp.concatenate([fin_seq, seq_2k], axis=1), best)
    new_fin_flag = _take(jnp.concatenate([fin_flag, is_eos], axis=1), best)
    run = running_B[:, None]  # an example past its cap keeps what it had
    return (t + 1, jnp.where(run[..., None], new_alive_seq, alive_seq),
            jnp.where(run, new_alive_lp, alive_lp),
            jnp.where(run[..., None], new_fin_seq, fin_seq),
            jnp.where(run, new_fin_score, fin_score), jnp.where(run, new_fin_flag, fin_flag),
            state)

  def cond(carry):
    t, _, alive_lp, _, fin_score, fin_flag, _ = carry
    # The best an alive hypothesis can still score: its log probability only falls, and
    # the normaliser is largest at the cap.
    best_alive = alive_lp[:, 0] / _gnmt_length_norm(limit_B, length_penalty)
    worst_finished = jnp.where(fin_flag[:, -1], fin_score[:, -1], NEG_INF)
    can_improve = (best_alive > worst_finished) & (t <= caps_B)
    return (t < max_len) & jnp.any(can_improve)

  alive_lp = jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  init = (jnp.int32(0), jnp.full((b, k, max_len), pad_id, jnp.int32), alive_lp,
          jnp.full((b, k, max_len), pad_id, jnp.int32), jnp.full((b, k), NEG_INF, jnp.float32),
          jnp.zeros((b, k), bool), state)
  t, alive_seq, alive_lp, fin_seq, fin_score, fin_flag, _ = jax.lax.while_loop(
      cond, body, init)
  # Examples with nothing finished return their alive hypotheses.
  none = ~jnp.any(fin_flag, axis=1)
  steps_B = jnp.minimum(t.astype(jnp.float32), limit_B)
  alive_score = alive_lp / _gnmt_length_norm(steps_B, length_penalty)[:, None]
  tokens = jnp.where(none[:, None, None], alive_seq, fin_seq)
  scores = jnp.where(none[:, None], alive_score, fin_score)
  return tokens, scores
