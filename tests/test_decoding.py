"""Greedy and beam search on models whose next-token distribution depends on the whole
prefix (so a wrongly reordered state shows): the GNMT search against exhaustive search,
fairseq's search against a step-by-step transcription of fairseq's SequenceGenerator."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luna_jax import decoding

V, EOS, BOS, PAD = 5, 1, 4, 0  # tokens 1..3 can be generated; 4 is BOS only
M = 97  # prefix codes modulo M
GNMT = dict(search="gnmt", min_len=0)  # the search as it was: EOS allowed at once


def _table(seed):
  logits = np.random.default_rng(seed).normal(size=(M, V)) * 2.0
  logits[:, [PAD, BOS]] = -1e4  # never generated
  return jax.nn.log_softmax(jnp.asarray(logits), axis=-1)


def _code(code, token, multiplier=7, modulus=M):
  """The next prefix code: a rolling hash of the tokens so far."""
  return (code * multiplier + token + 1) % modulus


def _step(table, multiplier=7):
  """A step function whose log-probabilities are the table's row of the prefix code."""
  def step(state, tokens_R):
    code = _code(state, tokens_R, multiplier, table.shape[0])
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
        length_penalty=length_penalty, **GNMT))(jnp.zeros((64,), jnp.int32))
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
                                  bos_id=BOS, eos_id=EOS, **GNMT)
  beam, _ = decoding.beam_search(_step(table), state, batch=batch, beam_size=1, max_len=12,
                                 bos_id=BOS, eos_id=EOS, length_penalty=0.0, **GNMT)
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
                                 beam_size=4, max_len=12, bos_id=BOS, eos_id=EOS, **GNMT)
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

  kw = dict(max_len=max_len, bos_id=BOS, eos_id=EOS, **GNMT)
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


# fairseq's search against a transcription of SequenceGenerator, on a model whose padding
# and BOS hold real probability (so banning them after the log-softmax shows).
V2, BOS2 = 10, 9  # EOS = 1, PAD = 0; tokens 2..8 free (7, enough for 2k candidates, k <= 3)
M2 = 1009


def _full_table(seed):
  """(M2, V2) float32 log-softmax over every id, padding and BOS included."""
  logits = np.random.default_rng(seed).normal(size=(M2, V2)) * 1.5
  logits -= logits.max(-1, keepdims=True)
  return (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)


def _code2(code, token):
  return _code(code, token, 31, M2)


def _step2(table):
  return _step(table, 31)


def _fairseq_reference(table, code0, *, beam, cap, min_len, lenpen):
  """One sentence under SequenceGenerator._generate with search.BeamSearch (fairseq), step
  by step, in plain Python: [(score, tokens ending in EOS)], best first.

  Step `step` writes token step + 1 of the hypothesis. The model's full log-softmax, then
  padding and BOS to -inf; at step >= cap only EOS, else before min_len no EOS. The
  candidates: each alive hypothesis's cumulative score plus each token's log prob (at
  step 0 only the first beam), the 2 * beam best. Those among the first `beam` that end
  in EOS with a finite score are finalised in that order while fewer than `beam` are,
  scored cumulative / (step + 1) ** lenpen. The sentence ends once `beam` are finalised
  or at step == cap; else the first `beam` candidates not ending in EOS (finite) live on.
  Scores add in float32, as the search's buffers."""
  alive = [(np.float32(0.0), (), code0)]
  finalized = []
  for step in range(cap + 1):
    candidates = []
    for score, tokens, code in alive:
      code = _code2(code, tokens[-1] if tokens else BOS2)
      lprobs = table[code].copy()
      lprobs[[PAD, BOS2]] = -np.inf
      if step >= cap:
        eos_lp = lprobs[EOS]
        lprobs[:] = -np.inf
        lprobs[EOS] = eos_lp
      elif step < min_len:
        lprobs[EOS] = -np.inf
      for token in range(V2):
        candidates.append((np.float32(score + lprobs[token]), tokens + (token,), code))
    candidates.sort(key=lambda c: -c[0])  # stable; the tables make no exact ties
    candidates = candidates[:2 * beam]
    for score, tokens, _ in candidates[:beam]:
      if tokens[-1] == EOS and score > -np.inf and len(finalized) < beam:
        finalized.append((float(score) / (step + 1) ** lenpen, tokens))
    if len(finalized) == beam or step == cap:
      break
    alive = [c for c in candidates if not (c[1][-1] == EOS and c[0] > -np.inf)][:beam]
  return sorted(finalized, key=lambda h: h[0], reverse=True)


def _fairseq_search(beam, lenpen, min_len, max_len, greedy=False):
  """jitted (table, codes (B,), caps (B,)) -> (tokens (B, beam, max_len), scores)."""
  kw = dict(max_len=max_len, bos_id=BOS2, eos_id=EOS, banned=(PAD, BOS2), min_len=min_len,
            search="fairseq")

  def run(table, codes, caps):
    b = codes.shape[0]
    if greedy:
      tokens = decoding.greedy_search(_step2(table), codes, batch=b, max_len_B=caps, **kw)
      return tokens[:, None], None
    return decoding.beam_search(_step2(table), jnp.repeat(codes, beam), batch=b,
                                beam_size=beam, length_penalty=lenpen, max_len_B=caps, **kw)

  return jax.jit(run)


def _as_hypotheses(tokens_KxT, scores_K):
  """[(score, tokens up to EOS)] of the filled slots."""
  out = []
  for seq, score in zip(np.asarray(tokens_KxT), np.asarray(scores_K), strict=True):
    if score == -np.inf:
      assert (seq == PAD).all()
      continue
    end = list(seq).index(EOS)
    assert (seq[end + 1:] == PAD).all()
    out.append((float(score), tuple(int(x) for x in seq[:end + 1])))
  return out


@pytest.mark.parametrize("beam", [1, 2, 3])
@pytest.mark.parametrize("lenpen,min_len", [(0.0, 1), (0.6, 0), (1.0, 2), (2.0, 1)])
def test_fairseq_search_equals_the_transcription_of_sequence_generator(beam, lenpen, min_len):
  """Identical tokens and scores for every sentence, each with its own random cap (0 to
  max_len - 1: an immediate forced EOS up to the whole buffer)."""
  max_len, batch = 9, 8
  search = _fairseq_search(beam, lenpen, min_len, max_len)
  lengths = set()
  for seed in range(3):
    rng = np.random.default_rng(100 + seed)
    table = _full_table(seed)
    codes = rng.integers(0, M2, batch)
    caps = rng.integers(0, max_len, batch)
    tokens, scores = search(jnp.asarray(table), jnp.asarray(codes, jnp.int32),
                            jnp.asarray(caps, jnp.int32))
    for row in range(batch):
      want = _fairseq_reference(table, int(codes[row]), beam=beam, cap=int(caps[row]),
                                min_len=min_len, lenpen=lenpen)
      got = _as_hypotheses(tokens[row], scores[row])
      assert [h[1] for h in got] == [h[1] for h in want], (seed, row)
      np.testing.assert_allclose([h[0] for h in got], [h[0] for h in want], rtol=1e-6)
      assert all(len(h[1]) - 1 <= caps[row] for h in got)  # the cap excludes the EOS
      assert all(len(h[1]) - 1 >= min(min_len, caps[row]) for h in got)
      lengths.update(len(h[1]) for h in got)
  assert len(lengths) > 2  # hypotheses of many lengths were compared


@pytest.mark.parametrize("lenpen", [0.0, 2.0])
def test_a_fairseq_beam_of_one_is_greedy_search_for_any_length_penalty(lenpen):
  max_len, batch = 9, 8
  rng = np.random.default_rng(5)
  table, codes = _full_table(5), rng.integers(0, M2, batch)
  caps = rng.integers(0, max_len, batch)
  args = (jnp.asarray(table), jnp.asarray(codes, jnp.int32), jnp.asarray(caps, jnp.int32))
  beam, _ = _fairseq_search(1, lenpen, 1, max_len)(*args)
  greedy, _ = _fairseq_search(1, lenpen, 1, max_len, greedy=True)(*args)
  np.testing.assert_array_equal(beam, greedy)
  for row in range(batch):  # and greedy is the transcription's beam of one
    (_, want), = _fairseq_reference(table, int(codes[row]), beam=1, cap=int(caps[row]),
                                    min_len=1, lenpen=lenpen)
    assert tuple(int(x) for x in greedy[row, 0, :len(want)]) == want


def test_fairseq_and_gnmt_searches_differ_where_their_rules_do():
  """Same model, beam, length penalty, min_len and caps: GNMT cuts hypotheses at the cap
  without EOS (fairseq forces it), normalises by ((5 + m) / 6) ** lp and keeps searching
  after k have finished, so some best hypotheses differ."""
  max_len, batch, beam, lenpen = 9, 16, 3, 1.0
  rng = np.random.default_rng(9)
  table, codes = _full_table(9), rng.integers(0, M2, batch)
  caps = rng.integers(1, 4, batch)  # short caps: many hypotheses are still alive there
  kw = dict(batch=batch, beam_size=beam, max_len=max_len, bos_id=BOS2, eos_id=EOS,
            length_penalty=lenpen, min_len=1, max_len_B=jnp.asarray(caps, jnp.int32),
            banned=(PAD, BOS2))
  state = jnp.repeat(jnp.asarray(codes, jnp.int32), beam)
  fair, _ = decoding.beam_search(_step2(jnp.asarray(table)), state, search="fairseq", **kw)
  gnmt, _ = decoding.beam_search(_step2(jnp.asarray(table)), state, search="gnmt", **kw)
  fair, gnmt = np.asarray(fair[:, 0]), np.asarray(gnmt[:, 0])
  assert all(EOS in row for row in fair)
  assert any(EOS not in row for row in gnmt)  # cut at the cap, without EOS
  # GNMT's cap counts the EOS: its rows end within cap + 1 tokens, as fairseq's.
  for row in range(batch):
    assert (fair[row, caps[row] + 1:] == PAD).all() and (gnmt[row, caps[row] + 1:] == PAD).all()
  ended = [r for r in range(batch) if EOS in gnmt[r]]
  assert any(not np.array_equal(fair[r], gnmt[r]) for r in ended)  # not only the EOS
