"""Greedy and beam search against exhaustive search on a model whose next-token
distribution depends on the whole prefix (so a wrongly reordered state shows)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luna_jax import decoding

V, EOS, BOS, PAD = 5, 1, 4, 0  # tokens 1..3 can be generated; 4 is BOS only
M = 97  # prefix codes modulo M


def _table(seed):
  logits = np.random.default_rng(seed).normal(size=(M, V)) * 2.0
  logits[:, [PAD, BOS]] = -1e4  # never generated
  return jax.nn.log_softmax(jnp.asarray(logits), axis=-1)


def _code(code, token):
  return (code * 7 + token + 1) % M


def _step(table):
  def step(state, tokens_R):
    code = _code(state, tokens_R)
    return table[code], code
  return step


def _logp(table, seq):
  code, total = np.zeros((), np.int64), 0.0
  last = BOS
  for tok in seq:
    code = _code(code, last)
    total += float(table[code, tok])
    last = tok
  return total


def _best_by_search(table, max_len, length_penalty):
  best = (-np.inf, None)
  for m in range(1, max_len + 1):
    for body in itertools.product((2, 3), repeat=m - 1):
      seq = (*body, EOS)
      score = _logp(table, seq) / ((5 + m) / 6) ** length_penalty
      best = max(best, (score, seq))
  return best


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_best(length_penalty):
  """With a beam wider than the number of prefixes, beam search is exhaustive."""
  max_len = 5
  for seed in range(3):
    table = _table(seed)
    tokens, scores = jax.jit(lambda s, t=table: decoding.beam_search(
        _step(t), s, batch=1, beam_size=64, max_len=max_len, bos_id=BOS, eos_id=EOS,
        length_penalty=length_penalty))(jnp.zeros((64,), jnp.int32))
    # The searched space: tokens 2, 3 and EOS (token 1 before the end would end it).
    want_score, want_seq = _best_by_search(table, max_len, length_penalty)
    got = [int(t) for t in tokens[0, 0] if t != PAD]
    assert tuple(got) == want_seq, (seed, got, want_seq)
    np.testing.assert_allclose(float(scores[0, 0]), want_score, rtol=1e-5)
    assert np.all(np.diff(np.asarray(scores[0])) <= 1e-6)  # best first


def test_beam_of_one_is_greedy_and_finished_hypotheses_stay_finished():
  table = _table(7)
  batch = 4
  state = jnp.asarray(np.arange(batch) * 11, jnp.int32)  # different prefixes per row
  greedy = decoding.greedy_search(_step(table), state, batch=batch, max_len=12,
                                  bos_id=BOS, eos_id=EOS)
  beam, _ = decoding.beam_search(_step(table), state, batch=batch, beam_size=1, max_len=12,
                                 bos_id=BOS, eos_id=EOS, length_penalty=0.0)
  np.testing.assert_array_equal(beam[:, 0], greedy)
  # Greedy by hand.
  for row in range(batch):
    code, last, want = int(state[row]), BOS, []
    for _ in range(12):
      code = _code(code, last)
      last = int(np.argmax(table[code]))
      want.append(last)
      if last == EOS:
        break
    got = [int(t) for t in greedy[row]]
    assert got[:len(want)] == want and all(t == PAD for t in got[len(want):])
  wide, _ = decoding.beam_search(_step(table), jnp.repeat(state, 4), batch=batch,
                                 beam_size=4, max_len=12, bos_id=BOS, eos_id=EOS)
  for seq in np.asarray(wide).reshape(-1, 12):
    ends = np.flatnonzero(seq == EOS)
    if len(ends):  # nothing after the first EOS but padding
      assert (seq[ends[0] + 1:] == PAD).all()


def _toy_lm(mixer):
  """A causal encoder between a token embedding and its transpose (float64)."""
  import luna_jax

  options = {"luna": {"proj_len": 3}, "lightconv": {"kernel_size": 3}}.get(mixer, {})
  enc = luna_jax.Encoder(mixer=mixer, num_layers=2, num_heads=2, ffn_dim=16, causal=True,
                         mixer_options=options, dtype=jnp.float64, param_dtype=jnp.float64)
  rng = np.random.default_rng(3)
  emb = jnp.asarray(rng.normal(size=(V, 8)))
  pos = jnp.asarray(rng.normal(size=(16, 8)) * 0.3)
  params = enc.init(jax.random.key(0), jnp.zeros((1, 16, 8)))
  return enc, params, emb, pos


@pytest.mark.parametrize("mixer", ["luna", "lightconv", "transformer"])
def test_search_through_decoding_caches_equals_rerunning_the_prefix(mixer):
  """Greedy and beam search stepping the encoder's decoding cache (reordered by beam
  search) give the tokens of stepping a model that re-encodes the whole prefix."""
  enc, params, emb, pos = _toy_lm(mixer)
  dec = enc.clone(decode=True)
  batch, beam, max_len = 2, 3, 10

  def cached(rows):
    cache = dec.init(jax.random.key(0), jnp.zeros((rows, max_len, 8)))["cache"]

    def step(state, tokens_R):
      cache, t = state
      x = (emb[tokens_R] + pos[t][None, :])[:, None]
      (y, _), new = dec.apply({**params, "cache": cache}, x, mutable=["cache"])
      return jax.nn.log_softmax(y[:, 0] @ emb.T), (new["cache"], t + 1)

    return step, (cache, jnp.int32(0))

  def rerun(rows):
    def step(state, tokens_R):
      history, t = state
      history = history.at[:, t].set(tokens_R)
      x = emb[history] + pos[None, :max_len]
      y, _ = enc.apply(params, x)  # causal: positions after t do not matter
      return jax.nn.log_softmax(y[:, t] @ emb.T), (history, t + 1)

    return step, (jnp.zeros((rows, max_len), jnp.int32), jnp.int32(0))

  kw = dict(max_len=max_len, bos_id=BOS, eos_id=EOS)
  outs = {}
  for name, make in (("cached", cached), ("rerun", rerun)):
    step, state = make(batch)
    greedy = jax.jit(lambda s, f=step: decoding.greedy_search(f, s, batch=batch, **kw))(state)
    step, state = make(batch * beam)
    tokens, scores = jax.jit(lambda s, f=step: decoding.beam_search(
        f, s, batch=batch, beam_size=beam, **kw))(state)
    outs[name] = (greedy, tokens, scores)
  for a, b in zip(outs["cached"], outs["rerun"], strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
  assert len(set(map(tuple, np.asarray(outs["cached"][1]).reshape(-1, max_len)))) > 1
