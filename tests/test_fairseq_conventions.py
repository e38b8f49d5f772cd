"""fairseq's conventions (`Seq2SeqModel(conventions="fairseq")`), so that a fairseq translation
model converts exactly: with the same weights the model gives the logits of a float64 NumPy
transcription of fairseq's forward, run in fairseq's own ids (<s> 0, <pad> 1, </s> 2, then
the pieces) with the embedding rows permuted to them. Also: the padding rows, decoding from
EOS, the config key, and Luna's cross-attention pack heads (the authors'
decoder_projected_attention_heads) apart from the causal self-attention's heads.

The transcription (fairseq/models/transformer.py, luna.py and lightconv.py of fairseq and
fairseq-apollo): tokens sqrt(d) E[t] plus SinusoidalPositionalEmbedding at
utils.make_positions (padding_idx + 1, + 2, ...; the padding row zero); the decoder reads
prev_output_tokens = EOS y_1 .. y_{n-1} (collate with move_eos_to_beginning=True); Luna's
first P is sqrt(d) P + sinusoidal positions 0..l-1; the layers are the float64 references
of tests/numpy_reference.py.
"""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from luna_jax.models import seq2seq
from luna_jax.training import objectives
from tests import numpy_reference as ref
from tests.helpers import prefix_mask, random_mask, rel_err

F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
VOCAB, BOS, EOS = 12, 10, 11  # ours: 0 padding, 1..9 pieces, 10 BOS, 11 EOS
B, S, T, D, H, L, LAYERS = 3, 7, 6, 8, 2, 3, 2
# fairseq's Dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3, then the symbols. Our id i is
# fairseq's TO_FAIRSEQ[i]: padding 1, BOS 0, EOS 2, piece k at k + 2.
FS_BOS, FS_PAD, FS_EOS = 0, 1, 2
TO_FAIRSEQ = np.array([FS_PAD] + [k + 2 for k in range(1, BOS)] + [FS_BOS, FS_EOS])
LUNA = {"proj_len": L, "p_style": "seq2seq", "chunk_size": 2}

CASES = {
    "transformer": dict(mixer="transformer", pre_ln=True, share="all", options={}),
    "luna": dict(mixer="luna", pre_ln=False, share="decoder", options=LUNA),
    "luna_pack_heads": dict(mixer="luna", pre_ln=True, share="none",
                            options=dict(LUNA, tied_kv=True, pack_heads=4)),
    "lightconv": dict(mixer="lightconv", pre_ln=False, share="all",
                      options={"kernel_sizes": (3, 5)}),
}


def _model(case, conventions="fairseq", dtypes=None, dropout=0.0):
  stack = dict(mixer=case["mixer"], num_layers=LAYERS, num_heads=H, ffn_dim=16,
               dropout=dropout, attention_dropout=dropout, normalize_before=case["pre_ln"],
               mixer_options=case["options"])
  return seq2seq.Seq2SeqModel(
      vocab_size=VOCAB, max_source_len=S + 2, max_target_len=T + 2, d_model=D,
      dropout=dropout, share_embeddings=case["share"], conventions=conventions,
      encoder=dict(stack, ffn_activation="relu"), decoder=stack, **(dtypes or F64))


def _pairs(seed, src_lengths=(S, 4, 2), tgt_lengths=(T, 3, 5)):
  """Right-padded sources and targets in our ids, each ending with EOS (a source of 2
  tokens leaves a P row masked)."""
  rng = np.random.default_rng(seed)
  source, target = np.zeros((B, S), np.int32), np.zeros((B, T), np.int32)
  for rows, lengths in ((source, src_lengths), (target, tgt_lengths)):
    for b, n in enumerate(lengths):
      rows[b, :n - 1] = rng.integers(1, BOS, n - 1)
      rows[b, n - 1] = EOS
  return source, target


def _decoder_inputs(model, target):
  return seq2seq.shift_right(jnp.asarray(target), model.decoder_start_id(BOS, EOS))


# --- fairseq's forward, in fairseq's ids -------------------------------------------------


def _make_positions(tokens):
  """utils.make_positions: the n-th real token of a row has padding_idx + n."""
  real = tokens != FS_PAD
  return np.cumsum(real, axis=1) * real + FS_PAD


def _sinusoids(n):
  """fairseq's sinusoid tables (SinusoidalPositionalEmbedding.get_embedding, and luna.py's
  get_sinusoidal_positional_embedding) are float32 (torch.float) buffers, cast to the
  model's dtype: float32-rounded values even in a float64 model."""
  return ref.sinusoidal(n, D).astype(np.float32).astype(np.float64)


def _embed(table, tokens):
  """sqrt(d) E[tokens] + SinusoidalPositionalEmbedding(tokens), its padding_idx row zero."""
  positions = _sinusoids(tokens.shape[1] + FS_PAD + 1)
  positions[FS_PAD] = 0.0
  return math.sqrt(D) * table[tokens] + positions[_make_positions(tokens)]


def _prev_output_tokens(target):
  """collate(..., move_eos_to_beginning=True), right padding: EOS, then each target
  without its final EOS."""
  prev = np.full_like(target, FS_PAD)
  for b, row in enumerate(target):
    n = int((row != FS_PAD).sum())
    assert row[n - 1] == FS_EOS
    prev[b, 0] = FS_EOS
    prev[b, 1:n] = row[:n - 1]
  return prev


def _fairseq_rows(table):
  """(V, D) rows in our ids -> the same rows at fairseq's ids."""
  out = np.zeros_like(table)
  out[TO_FAIRSEQ] = table
  return out


def fairseq_logits(params, case, source, target):
  """A fairseq translation model's logits (B, T, V) over its ids for fairseq-id sources
  and targets; params are the luna_jax model's (float64 NumPy), their vocabulary rows
  moved to fairseq's ids."""
  mixer, pre_ln, opts = case["mixer"], case["pre_ln"], case["options"]
  src_table = _fairseq_rows(params["source_embed"]["embedding"])
  tgt_table = (src_table if case["share"] == "all"
               else _fairseq_rows(params["target_embed"]["embedding"]))
  out_table = (tgt_table if case["share"] != "none"
               else _fairseq_rows(params["output_proj"]["kernel"].T))
  enc, dec = params["encoder"], params["decoder"]
  mask = source != FS_PAD
  x = _embed(src_table, source)
  p = p_mask = None
  tied, pack = opts.get("tied_kv", False), opts.get("pack_heads", 0) or H
  if mixer == "luna":  # LunaEncoder.forward_projected_embedding, dynamic projection
    p = np.broadcast_to(math.sqrt(D) * enc["p_embed"] + _sinusoids(L), (B, L, D))
    p_mask = np.arange(L)[None, :] < mask.sum(-1)[:, None]
  for i in range(LAYERS):
    layer = enc[f"layer_{i}"]
    if mixer == "transformer":
      x = ref.transformer_layer(layer, x, mask, H, False, ffn=ref.relu_feed_forward)
    elif mixer == "luna":
      x, p = ref.luna_layer(layer, x, p, mask, p_mask, H, pack, tied, pre_ln,
                            ffn=ref.relu_feed_forward)
    else:
      x = ref.conv_layer(layer, x, mask, H, opts["kernel_sizes"][i], False, False)
  if pre_ln:
    x = ref.layer_norm(x, enc["final_norm"])
    if p is not None:
      p = ref.layer_norm(p, enc["final_p_norm"])
  y = _embed(tgt_table, _prev_output_tokens(target))
  for i in range(LAYERS):
    layer = dec[f"layer_{i}"]
    if mixer == "transformer":
      y = ref.transformer_decoder_layer(layer, y, x, mask, H)
    elif mixer == "luna":
      y, p = ref.luna_decoder_layer(layer, y, p, x, mask, p_mask, H, tied, pre_ln,
                                    pack_heads=pack)
    else:
      y = ref.conv_decoder_layer(layer, y, x, mask, H, opts["kernel_sizes"][i], False)
  if pre_ln:
    y = ref.layer_norm(y, dec["final_norm"])
  return y @ out_table.T


@pytest.mark.parametrize("name", list(CASES))
def test_the_model_gives_a_fairseq_models_logits(name):
  """At every target token (the loss's positions). The padding rows are made non-zero
  first, as a tied output projection leaves them after fairseq training: the conversion
  holds for any weights."""
  case = CASES[name]
  source, target = _pairs(0)
  model = _model(case)
  params = model.init(jax.random.key(0), source, target)["params"]
  rng = np.random.default_rng(1)
  for table in ("source_embed", "target_embed"):
    if table in params:
      params[table]["embedding"] = params[table]["embedding"].at[0].set(rng.normal(size=D))
  got = np.asarray(model.apply({"params": params}, source, _decoder_inputs(model, target)))
  want = fairseq_logits(ref.to_np(params), case, TO_FAIRSEQ[source], TO_FAIRSEQ[target])
  want = want[..., TO_FAIRSEQ]  # back to our ids
  real = target != 0
  assert rel_err(got[real], want[real]) < 1e-12
  # luna_jax's conventions (positions from 0, BOS first) give other logits.
  default = model.clone(conventions="luna_jax")
  other = default.apply({"params": params}, source, _decoder_inputs(default, target))
  assert rel_err(np.asarray(other)[real], want[real]) > 1e-3


def test_left_padded_sources_give_the_same_logits():
  """fairseq pads sources on the left (left_pad_source=True); positions count real tokens
  from padding_idx + 1 either way."""
  model = _model(CASES["luna"])
  source, target = _pairs(2)
  lengths = (source != 0).sum(-1)
  left = np.zeros_like(source)
  for b, n in enumerate(lengths):
    left[b, S - n:] = source[b, :n]
  params = model.init(jax.random.key(2), source, target)["params"]
  inputs = _decoder_inputs(model, target)
  right_logits = model.apply({"params": params}, source, inputs)
  left_logits = model.apply({"params": params}, left, inputs)
  real = target != 0
  assert rel_err(np.asarray(left_logits)[real], np.asarray(right_logits)[real]) < 1e-12


def test_decoding_step_by_step_counts_positions_as_fairseq():
  """The decode-mode positions (fairseq's incremental step: padding_idx + steps so far)
  equal the full pass's at every real input, and greedy search starts from EOS."""
  model = _model(CASES["luna"])
  source, target = _pairs(3)
  params = model.init(jax.random.key(3), source, target)["params"]
  inputs = _decoder_inputs(model, target)
  assert np.all(np.asarray(inputs)[:, 0] == EOS)
  full = model.apply({"params": params}, source, inputs)
  encoded = model.apply({"params": params}, source, method=seq2seq.Seq2SeqModel.encode)
  decoder = model.clone(decode=True)
  cache, pieces = seq2seq.initial_cache(model, params, encoded, B, T), []
  for start, stop in [(0, 1), (1, 3), (3, T)]:
    logits, state = decoder.apply({"params": params, "cache": cache}, inputs[:, start:stop],
                                  encoded, method=seq2seq.Seq2SeqModel.decode_logits,
                                  mutable=["cache"])
    cache = state["cache"]
    pieces.append(logits)
  real = np.asarray(inputs) != 0
  stepped = np.asarray(jnp.concatenate(pieces, axis=1))
  assert rel_err(stepped[real], np.asarray(full)[real]) < 1e-12

  max_len = 5
  # GNMT's rules with min_len 0: plain argmax at every step, what the rerun below takes.
  greedy = jax.jit(lambda p, s: seq2seq.generate(model, p, s, max_len=max_len, bos_id=BOS,
                                                 eos_id=EOS, search="gnmt", min_len=0))(
      params, source)
  rerun = jax.jit(lambda prefix: model.apply({"params": params}, source, prefix))
  prefix = np.zeros((B, max_len), np.int32)
  prefix[:, 0] = EOS
  done = np.zeros(B, bool)
  for t in range(max_len):
    logits = np.asarray(rerun(jnp.asarray(prefix))[:, t]).copy()
    logits[:, [0, BOS]] = -np.inf
    token = np.where(done, 0, np.argmax(logits, -1))
    np.testing.assert_array_equal(np.asarray(greedy)[:, t], token)
    done |= token == EOS
    if t + 1 < max_len:
      prefix[:, t + 1] = np.where(done, 0, token)


def _all_positions_loss(model, source, inputs):
  """A loss over every position, padding included, so padding's lookups get a gradient
  wherever they are not cut (the translation loss never reads padded positions)."""

  def of_logits(logits):
    return jnp.sum(jax.nn.log_softmax(logits, axis=-1)[..., 3])

  def loss(params):
    return of_logits(model.apply({"params": params}, source, inputs))

  return loss, of_logits


def test_the_padding_rows_start_at_zero_and_stay_there():
  """fairseq's Embedding: the padding row zero at init, and nn.Embedding(padding_idx)
  sends it no gradient from its lookups, so an AdamW step leaves it at zero (untied
  embeddings). Every other row is initialised as under luna_jax's conventions."""
  case = dict(CASES["luna"], share="none")
  model, default = _model(case), _model(case, conventions="luna_jax")
  source, target = _pairs(4)
  params = model.init(jax.random.key(4), source, target)["params"]
  default_params = default.init(jax.random.key(4), source, target)["params"]
  tables = ("source_embed", "target_embed")
  for name in tables:
    table = np.asarray(params[name]["embedding"])
    assert not table[0].any() and np.asarray(default_params[name]["embedding"])[0].any()
    np.testing.assert_array_equal(table[1:], np.asarray(default_params[name]["embedding"])[1:])

  loss, _ = _all_positions_loss(model, source, _decoder_inputs(model, target))
  grads = jax.jit(jax.grad(loss))(params)
  for name in tables:
    assert not np.asarray(grads[name]["embedding"])[0].any()
  default_loss, _ = _all_positions_loss(default, source, _decoder_inputs(default, target))
  assert np.asarray(jax.jit(jax.grad(default_loss))(params)["target_embed"]["embedding"])[0].any()

  optimizer = optax.adamw(1e-2, weight_decay=0.1)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  stepped = optax.apply_updates(params, updates)
  for name in tables:
    before, after = np.asarray(params[name]["embedding"]), np.asarray(stepped[name]["embedding"])
    assert not after[0].any()
    assert (after[1:] != before[1:]).any()


def test_a_tied_output_projection_trains_the_padding_row_as_fairseqs_does():
  """fairseq ties output_projection.weight to embed_tokens.weight, so the padding row gets
  the output layer's gradient sum_{b,t} dL/dlogit[b, t, pad] h[b, t] (h the decoder's
  output) and nothing from its lookups."""
  model = _model(CASES["transformer"])  # share_embeddings="all"
  source, target = _pairs(5)
  params = model.init(jax.random.key(5), source, target)["params"]
  for conventions, exact in (("fairseq", True), ("luna_jax", False)):
    m = model.clone(conventions=conventions)
    inputs = _decoder_inputs(m, target)
    loss, of_logits = _all_positions_loss(m, source, inputs)
    row = jax.jit(jax.grad(loss))(params)["source_embed"]["embedding"][0]
    logits, state = m.apply({"params": params}, source, inputs, capture_intermediates=True,
                            mutable=["intermediates"])
    h_BxTxD = state["intermediates"]["decoder"]["__call__"][0]
    want = jnp.einsum("bt,btd->d", jax.grad(of_logits)(logits)[..., 0], h_BxTxD)
    assert (rel_err(row, want) < 1e-12) == exact


def test_the_translation_config_chooses_the_conventions():
  from configs import wmt14_en_de
  from luna_jax import errors
  from luna_jax.data.vocab import Vocab
  from luna_jax.training.workloads import Devices, workload_of

  c = wmt14_en_de.get_config("cpu")
  assert c.translation.conventions == "luna_jax"
  c.translation_dir = "unused"
  c.translation.conventions = "fairseq"
  workload, devices = workload_of(c), Devices(1)
  workload.check(c, devices)
  source = types.SimpleNamespace(vocab=Vocab(9))
  assert workload.build_model(c, source).conventions == "fairseq"
  assert workload.objective(c, source).bos_id == source.vocab.eos_id
  c.translation.conventions = "luna_jax"
  assert workload.objective(c, source).bos_id == source.vocab.cls_id
  c.translation.conventions = "torch"
  with pytest.raises(errors.ConfigError, match="translation.conventions='torch'"):
    workload.check(c, devices)
  with pytest.raises(ValueError, match="conventions='torch'"):
    _model(CASES["transformer"], conventions="torch").init(
        jax.random.key(0), *_pairs(0))


# --- Luna's cross-attention pack heads ---------------------------------------------------


@pytest.mark.parametrize("pre_ln", [False, True])
def test_a_luna_decoder_layer_packs_with_its_own_heads(pre_ln):
  """pack_heads reaches the cross-attention's pack (4 heads here, 2 elsewhere) and not the
  causal self-attention, as the authors' LunaDecoderLayer."""
  from luna_jax.mixers.luna import LunaSettings

  rng = np.random.default_rng(6 + int(pre_ln))
  m = 5
  x, p, memory = (rng.normal(size=(B, n, D)) for n in (T, L, m))
  memory_mask, p_mask = prefix_mask([m, 3, 1], m), random_mask(rng, B, L)
  layer = seq2seq.DecoderLayer(mixer="luna", settings=LunaSettings(proj_len=L, pack_heads=4,
                                                                   chunk_size=2),
                               num_heads=H, ffn_dim=12, normalize_before=pre_ln, **F64)
  kw = dict(memory_BxMxD=memory, memory_mask_BxM=memory_mask, p_mask_BxL=p_mask)
  params = layer.init(jax.random.key(6), x, p, **kw)["params"]
  y, p_out = layer.apply({"params": params}, x, p, **kw)
  args = (ref.to_np(params), x, p, memory, memory_mask, p_mask, H, False, pre_ln)
  want_y, want_p = ref.luna_decoder_layer(*args, pack_heads=4)
  assert rel_err(y, want_y) < 1e-10 and rel_err(p_out, want_p) < 1e-10
  same_heads_y, _ = ref.luna_decoder_layer(*args)
  assert rel_err(y, same_heads_y) > 1e-6


def test_a_luna_translation_model_with_its_own_pack_heads_trains():
  """One AdamW step of the translation objective (float32) lowers the loss; a causal
  Luna language model still refuses pack_heads != num_heads (its only attention is
  causal)."""
  import luna_jax

  model = _model(CASES["luna_pack_heads"], conventions="luna_jax",
                 dtypes=dict(dtype=jnp.float32, param_dtype=jnp.float32))
  source, target = _pairs(8)
  batch = {"source": jnp.asarray(source), "target": jnp.asarray(target),
           "weight": jnp.ones((B,), jnp.float32)}
  params = model.init(jax.random.key(8), source, target)["params"]
  objective = objectives.Translation(bos_id=model.decoder_start_id(BOS, EOS))

  def loss(params, train):
    sums = objective.sums(model, params, batch, jax.random.key(9), train=train)
    return sums["loss_sum"] / sums["count"]

  before, grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, True)
  optimizer = optax.adamw(1e-3)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  after = jax.jit(loss, static_argnums=1)(optax.apply_updates(params, updates), True)
  assert np.isfinite(float(before)) and float(after) < float(before)
  with pytest.raises(ValueError, match="pack_heads=4 != num_heads=2"):
    luna_jax.Encoder(num_heads=H, causal=True, mixer_options={"pack_heads": 4}).init(
        jax.random.key(0), jnp.ones((1, 4, D)))
