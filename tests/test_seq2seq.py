"""The encoder-decoder model: decoder layers against float64 NumPy references, step-by-step
decoding against the full pass for every decoder mixer, source padding, generation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luna_jax import common
from luna_jax.models import seq2seq
from tests import numpy_reference as ref
from tests.helpers import prefix_mask, random_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
B, T, M, L, D, H = 2, 6, 7, 3, 8, 2


def _layer_inputs(seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, T, D))
  p = rng.normal(size=(B, L, D))
  memory = rng.normal(size=(B, M, D))
  return rng, x, p, memory, prefix_mask([M, 4], M)


def _layer(mixer, settings, pre_ln, **kw):
  return seq2seq.DecoderLayer(mixer=mixer, settings=settings, num_heads=H, ffn_dim=12,
                              normalize_before=pre_ln, **F64, **kw)


@pytest.mark.parametrize("pre_ln", [False, True])
@pytest.mark.parametrize("tied", [False, True])
def test_luna_decoder_layer_matches_the_reference(pre_ln, tied):
  from luna_jax.mixers.luna import LunaSettings

  rng, x, p, memory, memory_mask = _layer_inputs(int(pre_ln) + 2 * int(tied))
  p_mask = random_mask(rng, B, L)
  layer = _layer("luna", LunaSettings(proj_len=L, tied_kv=tied, chunk_size=2), pre_ln)
  kw = dict(memory_BxMxD=memory, memory_mask_BxM=memory_mask, p_mask_BxL=p_mask)
  params = layer.init(jax.random.key(0), x, p, **kw)["params"]
  y, p_out = layer.apply({"params": params}, x, p, **kw)
  want_y, want_p = ref.luna_decoder_layer(ref.to_np(params), x, p, memory, memory_mask,
                                          p_mask, H, tied, pre_ln)
  assert rel_err(y, want_y) < 1e-10
  assert rel_err(p_out, want_p) < 1e-10


def test_transformer_decoder_layer_matches_the_reference():
  _, x, _, memory, memory_mask = _layer_inputs(5)
  layer = _layer("transformer", None, True)
  kw = dict(memory_BxMxD=memory, memory_mask_BxM=memory_mask)
  params = layer.init(jax.random.key(1), x, None, **kw)["params"]
  y, p_out = layer.apply({"params": params}, x, None, **kw)
  assert p_out is None
  want = ref.transformer_decoder_layer(ref.to_np(params), x, memory, memory_mask, H)
  assert rel_err(y, want) < 1e-10


@pytest.mark.parametrize("mixer", ["lightconv", "dynamicconv"])
def test_convolution_decoder_layer_matches_the_reference(mixer):
  from luna_jax.mixers.convolution import ConvSettings

  _, x, _, memory, memory_mask = _layer_inputs(6)
  layer = _layer(mixer, ConvSettings(kernel_sizes=(3,)), False)
  kw = dict(memory_BxMxD=memory, memory_mask_BxM=memory_mask)
  params = layer.init(jax.random.key(2), x, None, **kw)["params"]
  y, _ = layer.apply({"params": params}, x, None, **kw)
  want = ref.conv_decoder_layer(ref.to_np(params), x, memory, memory_mask, H, 3,
                                mixer == "dynamicconv")
  assert rel_err(y, want) < 1e-10


def test_a_luna_layer_with_softmax_self_and_cross_attention_is_the_transformer_layer():
  """The ablation options (`DecoderLayer.self_mixer`, `cross_mixer`) build exactly the
  named mixer's parts, and P passes through untouched."""
  from luna_jax.mixers.luna import LunaSettings

  rng, x, p, memory, memory_mask = _layer_inputs(7)
  layer = _layer("luna", LunaSettings(proj_len=L, chunk_size=2), True,
                 self_mixer="transformer", cross_mixer="transformer")
  kw = dict(memory_BxMxD=memory, memory_mask_BxM=memory_mask,
            p_mask_BxL=random_mask(rng, B, L))
  params = layer.init(jax.random.key(1), x, p, **kw)["params"]
  y, p_out = layer.apply({"params": params}, x, p, **kw)
  np.testing.assert_array_equal(p_out, p)
  want = ref.transformer_decoder_layer(ref.to_np(params), x, memory, memory_mask, H)
  assert rel_err(y, want) < 1e-10


def test_a_decoder_refuses_a_stand_in_with_its_own_p():
  stack = dict(_model("transformer").decoder, self_mixer="luna")
  model = _model("transformer").clone(decoder=stack)
  with pytest.raises(ValueError, match="self_mixer='luna': only a mixer without P"):
    model.init(jax.random.key(0), _tokens(0, 2, 5), _tokens(1, 2, 4))


def test_sinusoidal_positions_follow_fairseq():
  np.testing.assert_allclose(common.sinusoidal_positions(9, 8), ref.sinusoidal(9, 8),
                             atol=1e-6)


OPTIONS = {"transformer": {}, "luna": {"proj_len": 3, "p_style": "seq2seq", "chunk_size": 2},
           "lightconv": {"kernel_sizes": (3, 4)}, "dynamicconv": {"kernel_sizes": (2, 3)}}
VOCAB, BOS, EOS = 12, 10, 11


def _model(mixer, share="all", pre_ln=False):
  stack = dict(mixer=mixer, num_layers=2, num_heads=2, ffn_dim=16, dropout=0.0,
               attention_dropout=0.0, normalize_before=pre_ln, mixer_options=OPTIONS[mixer])
  return seq2seq.Seq2SeqModel(vocab_size=VOCAB, max_source_len=9, max_target_len=8,
                              d_model=8, dropout=0.0, share_embeddings=share,
                              encoder=dict(stack, ffn_activation="relu"), decoder=stack,
                              **F64)


def _tokens(seed, b, n, pad_from=None):
  tokens = np.random.default_rng(seed).integers(1, BOS, (b, n))
  if pad_from is not None:
    tokens[1, pad_from:] = 0
  return jnp.asarray(tokens, jnp.int32)


HYBRIDS = {"luna+softmax-self": dict(self_mixer="transformer"),
           "luna+softmax-cross": dict(cross_mixer="transformer")}


@pytest.mark.parametrize("mixer", list(OPTIONS) + list(HYBRIDS))
def test_decoding_step_by_step_equals_the_full_pass(mixer):
  """One token per call, then several per call, through the caches of every layer; the
  cross-attention's source-only tensors are computed once, before the first step. The
  hybrids are Luna decoders with one part softmax attention (the ablation options)."""
  model = _model(mixer.split("+")[0], share="decoder" if mixer == "luna" else "all",
                 pre_ln=mixer == "transformer")
  if mixer in HYBRIDS:
    model = model.clone(decoder=dict(model.decoder, **HYBRIDS[mixer]))
  source, target = _tokens(0, 2, 9, pad_from=5), _tokens(1, 2, 8)
  params = model.init(jax.random.key(3), source, target)["params"]
  full = model.apply({"params": params}, source, target)
  encoded = model.apply({"params": params}, source, method=seq2seq.Seq2SeqModel.encode)
  decoder = model.clone(decode=True)
  cache, pieces = seq2seq.initial_cache(model, params, encoded, 2, 8), []
  # The steps read the encoder output's projections from the cache, never the output.
  stepped = dict(encoded, memory=jnp.zeros_like(encoded["memory"]))
  for start, stop in [(0, 1), (1, 2), (2, 5), (5, 8)]:
    logits, state = decoder.apply({"params": params, "cache": cache}, target[:, start:stop],
                                  stepped, method=seq2seq.Seq2SeqModel.decode_logits,
                                  mutable=["cache"])
    cache = state["cache"]
    pieces.append(logits)
  assert rel_err(jnp.concatenate(pieces, axis=1), full) < 1e-10


@pytest.mark.parametrize("mixer", list(OPTIONS))
def test_source_padding_changes_nothing(mixer):
  model = _model(mixer, share="none")
  source, target = _tokens(2, 2, 6, pad_from=4), _tokens(3, 2, 5)
  params = model.init(jax.random.key(4), source, target)["params"]
  short = model.apply({"params": params}, source, target)
  padded = model.apply({"params": params}, jnp.pad(source, ((0, 0), (0, 3))), target)
  assert rel_err(padded, short) < 1e-10


def test_a_target_position_sees_no_later_target_token():
  model = _model("luna")
  source, target = _tokens(4, 2, 7), _tokens(5, 2, 8)
  params = model.init(jax.random.key(5), source, target)["params"]
  before = model.apply({"params": params}, source, target)
  after = model.apply({"params": params}, source, target.at[:, 5:].set(3))
  np.testing.assert_allclose(after[:, :5], before[:, :5], rtol=1e-12, atol=1e-12)
  assert not np.allclose(after[:, 5:], before[:, 5:])


@pytest.mark.parametrize("search,min_len", [("gnmt", 0), ("fairseq", 1), ("fairseq", 3)])
def test_greedy_generation_equals_rerunning_the_prefix(search, min_len):
  """Greedy search through the caches gives the tokens of taking the argmax of a full
  teacher-forced pass over the prefix at every step, under the search's rules (fairseq:
  no EOS before min_len, EOS forced at each row's cap); a beam of one gives the same."""
  model = _model("luna")
  source = _tokens(6, 2, 9, pad_from=6)
  params = model.init(jax.random.key(6), source, _tokens(7, 2, 8))["params"]
  caps = np.asarray([7, 4]) if search == "fairseq" else np.asarray([7, 7])
  kw = dict(max_len=8, bos_id=BOS, eos_id=EOS, search=search, min_len=min_len,
            max_len_B=jnp.asarray(caps))
  greedy = jax.jit(lambda p, s: seq2seq.generate(model, p, s, **kw))(params, source)
  beam1 = jax.jit(lambda p, s: seq2seq.generate(model, p, s, beam_size=1, **kw))(params, source)
  np.testing.assert_array_equal(greedy, beam1)
  # The prefix padded to 8 tokens: a position never sees the padding after it.
  full = jax.jit(lambda prefix: model.apply({"params": params}, source, prefix))
  prefix = np.zeros((2, 8), np.int32)
  prefix[:, 0] = BOS
  want = np.zeros((2, 8), np.int32)
  done = np.zeros(2, bool)
  for t in range(8):
    logits = np.asarray(full(jnp.asarray(prefix))[:, t]).copy()
    logits[:, [0, BOS]] = -np.inf
    if t < min_len:
      logits[:, EOS] = -np.inf
    if search == "fairseq":  # only EOS at the cap
      logits[t >= caps] = np.where(np.arange(VOCAB) == EOS, 0.0, -np.inf)
    token = np.where(done, 0, np.argmax(logits, -1))
    want[:, t] = token
    done |= (token == EOS) | (t >= caps)
    if t + 1 < 8:
      prefix[:, t + 1] = np.where(done, 0, token)
  np.testing.assert_array_equal(greedy, want)
  if search == "fairseq":
    assert (want == EOS).sum() == 2 and (want[1, 5:] == 0).all()


@pytest.mark.parametrize("search", ["fairseq", "gnmt"])
def test_beam_search_through_the_caches_equals_rerunning_the_prefix(search):
  """Beam search reorders every cache by parent beam: its hypotheses equal those of a
  step function that re-runs the whole prefix through the full model at each step.
  Padding and BOS: GNMT's masked before the log-softmax, fairseq's banned after it."""
  from luna_jax import decoding

  model = _model("luna")
  source = _tokens(8, 2, 9, pad_from=4)
  params = model.init(jax.random.key(7), source, _tokens(9, 2, 8))["params"]
  k, max_len = 3, 8
  never, banned = ((0, BOS), ()) if search == "gnmt" else ((), (0, BOS))
  kw = dict(batch=2, beam_size=k, max_len=max_len, bos_id=BOS, eos_id=EOS, length_penalty=1.0,
            search=search, banned=banned, max_len_B=jnp.asarray([7, 5]))
  rows = jnp.repeat(source, k, axis=0)

  def rerun(state, tokens_R):
    prefix_RxT, t = state
    prefix_RxT = prefix_RxT.at[:, t].set(tokens_R)
    logits = model.apply({"params": params}, rows, prefix_RxT)[:, t].astype(jnp.float32)
    if never:
      logits = jnp.where(jnp.isin(jnp.arange(VOCAB), jnp.asarray(never)), common.MASK_VALUE,
                         logits)
    return jax.nn.log_softmax(logits, axis=-1), (prefix_RxT, t + 1)

  want, want_scores = jax.jit(lambda: decoding.beam_search(
      rerun, (jnp.zeros((2 * k, max_len), jnp.int32), jnp.int32(0)), **kw))()
  encoded = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0),
                         model.apply({"params": params}, source,
                                     method=seq2seq.Seq2SeqModel.encode))
  changing, static = seq2seq.split_cache(
      seq2seq.initial_cache(model, params, encoded, 2 * k, max_len))
  assert static and "cross_static" not in str(jax.tree_util.tree_structure(changing))
  got, got_scores = jax.jit(lambda: decoding.beam_search(
      seq2seq.step_function(model, params, encoded, never, static), changing, **kw))()
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)  # float32 sums
  assert (np.asarray(got)[1, :, 6:] == 0).all()  # the second example's cap: 5 + EOS


def test_caps_come_from_each_source_alone():
  """int(a * length + b) of each row's real length (EOS included, padding not), at most
  the limit, at least 0; the same for any padded width and any other row."""
  source = np.zeros((4, 12), np.int32)
  for row, length in enumerate([1, 5, 9, 12]):
    source[row, :length - 1], source[row, length - 1] = 3, EOS
  for a, b, limit in [(1.2, 10, 255), (1.2, 10, 15), (0.5, -3, 100), (0.0, 4, 7)]:
    want = [max(0, min(limit, int(a * n + b))) for n in (1, 5, 9, 12)]
    np.testing.assert_array_equal(seq2seq.caps_from_sources(source, a, b, limit), want)
    wider = np.pad(source[:2], ((0, 0), (0, 20)))
    np.testing.assert_array_equal(seq2seq.caps_from_sources(wider, a, b, limit), want[:2])
    assert [seq2seq.length_cap(n, a, b, limit) for n in (1, 5, 9, 12)] == want


def _eval_run(model, batches, **translation):
  """A stand-in for a training run: what translation_eval reads of one."""
  import types

  import ml_collections

  settings = dict(max_target_len=model.max_target_len, search="fairseq", beam_size=2,
                  length_penalty=0.6, min_len=1, max_len_a=1.0, max_len_b=0)
  config = ml_collections.ConfigDict({"translation": {**settings, **translation}})
  vocab = types.SimpleNamespace(cls_id=BOS, eos_id=EOS)
  return types.SimpleNamespace(
      config=config, model=model, source=types.SimpleNamespace(vocab=vocab),
      dataset=lambda split, num_epochs, shuffle: iter(batches[split]))


def test_a_long_reference_in_the_batch_changes_no_hypothesis():
  """Two batches of the same pairs, but in one a third pair's long target puts them in
  a wider bucket: translate_split gives the other pairs the same hypotheses (each cap
  comes from its own source). A cap from the padded width, as before, changes them."""
  from luna_jax.training import translation_eval

  model = _model("transformer")
  params = model.init(jax.random.key(12), _tokens(13, 2, 9), _tokens(14, 2, 8))["params"]
  sources = [[3, 5, EOS], [4, 4, 6, EOS], [7, EOS]]
  narrow, wide = np.zeros((3, 4), np.int32), np.zeros((3, 9), np.int32)
  for row, ids in enumerate(sources):
    narrow[row, :len(ids)] = wide[row, :len(ids)] = ids
  index = np.arange(3, dtype=np.int32)
  batches = {"short": [{"source": narrow[:2], "index": index[:2]}],
             "long": [{"source": wide, "index": index}]}  # pair 2's target needs 9
  for search in ("fairseq", "gnmt"):
    run = _eval_run(model, batches, search=search)
    short = translation_eval.translate_split(run, params, "short")
    long = translation_eval.translate_split(run, params, "long")
    assert short == {i: long[i] for i in (0, 1)}
    # a = 1, b = 0: at most a source's length before EOS (GNMT: or cut one later)
    assert all(len(short[i]) <= len(sources[i]) + (search == "gnmt") for i in (0, 1))
    assert translation_eval.generation_length(run.config, 9) == 8  # buffer: 7 + EOS
  # The old rule: one length per batch, min(max_target_len, a * padded width + b), so 4
  # or 8 tokens here, EOS included.
  kw = dict(bos_id=BOS, eos_id=EOS, beam_size=2, length_penalty=0.6, search="gnmt",
            min_len=0)
  old_short = seq2seq.generate(model, params, jnp.asarray(narrow[:2]), max_len=4, **kw)
  old_long = seq2seq.generate(model, params, jnp.asarray(wide), max_len=8, **kw)
  assert not np.array_equal(np.pad(np.asarray(old_short), ((0, 0), (0, 4))),
                            np.asarray(old_long)[:2])


def test_too_long_inputs_raise_a_clear_error():
  model = _model("transformer")
  source = _tokens(10, 2, 9)
  params = model.init(jax.random.key(8), source, _tokens(11, 2, 8))["params"]
  with pytest.raises(ValueError, match="max_source_len=9"):
    model.apply({"params": params}, _tokens(12, 2, 10), _tokens(11, 2, 8))
  with pytest.raises(ValueError, match="max_target_len=8"):
    model.apply({"params": params}, source, _tokens(11, 2, 9))


def test_shift_right_starts_with_bos_and_keeps_padding():
  target = jnp.asarray([[5, 6, EOS, 0], [7, EOS, 0, 0]])
  np.testing.assert_array_equal(seq2seq.shift_right(target, BOS),
                                [[BOS, 5, 6, EOS], [BOS, 7, EOS, 0]])
