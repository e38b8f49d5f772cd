"""Encoder-decoder translation models over the mixer registry, and their generation.

    source -> sqrt(d) E[s] + sinusoidal positions -> Dropout -> Encoder (any mixer)
    target -> sqrt(d) E[t] + sinusoidal positions -> Dropout -> Decoder -> logits h E^T

as fairseq's translation models compute it (Vaswani et al. 2017, Sec. 3; Ma et al. 2021,
Sec. 4.3; Wu et al. 2019, Sec. 5). A decoder layer is

    X_S = SelfMix(X)                 the mixer's own layer, causal, without its FFN
    X_C, P' = CrossAttn(X_S, P; M)   encoder-decoder attention over the encoder output M
    X'  = FFN block(X_C)

each sub-block with its residual and LayerNorm (post-LN by default, as fairseq's). The
cross-attention is the mixer's (`MixerSpec.cross_attention`): Luna's is Luna attention
whose pack over M updates P (the decoder's first P is the encoder's final P; causal
self-attention leaves P as it is, as the authors' LunaDecoderLayer); every other mixer
uses softmax attention. P depends on the source alone, so decoding never lets P see a
target token.

Token ids: 0 is padding, 1..V-3 the shared (joint) vocabulary's pieces, then BOS (the
decoder's first input) and EOS (`luna_jax.data.vocab.Vocab`). Embeddings are shared by
source, target and output ("all", needs the joint vocabulary), by target and output
("decoder"), or not at all ("none").

Conventions (`Seq2SeqModel.conventions`): "luna_jax" (the default) counts positions from 0,
initialises the padding row like every other and starts the decoder from BOS. "fairseq"
follows fairseq's translation models, so that one of theirs converts exactly (same
logits for the same weights, its vocabulary rows permuted to these ids):
- positions as `utils.make_positions`: real tokens count fairseq_padding_idx + 1,
  + 2, ... (fairseq's dictionaries pad at 1), padding takes fairseq_padding_idx, whose
  sinusoidal row is zero (`SinusoidalPositionalEmbedding`, `PositionalEmbedding`);
- the padding row of each embedding starts at zero and its lookups send it no gradient
  (`Embedding` in fairseq/models/transformer.py and luna.py: nn.Embedding(padding_idx)
  with that row zeroed). A tied output projection still trains it as fairseq's does;
- the decoder's first input is EOS (`prev_output_tokens` = EOS y_1 .. y_{T-1}, as
  `collate(move_eos_to_beginning=True)` makes them; the search starts from EOS too).
Either way the positions are sinusoidal, as in the authors' Luna and fairseq's Transformer
and LightConv translation models, which learn positions only when asked
(`--encoder-learned-pos`; the authors' WMT recipe does not ask).

Generation (`generate`) runs the decoder step by step through its caches inside one
jitted `lax.while_loop` (`luna_jax.decoding`), greedy or beam search.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common, decoding, registry
from luna_jax.encoder import Encoder
from luna_jax.layers import LayerBase

Array = common.Array
SHARE_EMBEDDINGS = ("all", "decoder", "none")
CONVENTIONS = ("luna_jax", "fairseq")  # Seq2SeqModel.conventions (module docstring)
PAD_ID = 0


class DecoderLayer(LayerBase):
  """Causal self-mixing (the mixer's layer without its FFN), encoder-decoder attention,
  FFN (module docstring). ReLU FFN unless ffn_activation says otherwise."""

  mixer: str = "luna"
  settings: Any = None  # the mixer's settings object; None: its defaults
  layer_index: int = 0
  self_mixer: Optional[str] = None  # ablations (Decoder): the self-mixing's mixer ...
  cross_mixer: Optional[str] = None  # ... and the cross-attention's; None: `mixer`

  @nn.compact
  def __call__(self, x_BxTxD, p_BxLxD, *, memory_BxMxD, memory_mask_BxM, mask_BxT=None,
               p_mask_BxL=None, deterministic: bool = True, prime: bool = False):
    """prime (decode mode): compute and cache what the cross-attention reuses at every
    step (its source-only tensors and the P it returns), skipping the rest; then each
    decoding step reads them from the cache instead of recomputing them."""
    spec = registry.get_mixer(self.mixer)
    settings = spec.settings() if self.settings is None else self.settings
    self_spec, self_settings = spec, settings
    if self.self_mixer not in (None, self.mixer):  # another mixer's defaults
      self_spec = registry.get_mixer(self.self_mixer)
      self_settings = self_spec.settings()
    cross_name = self.cross_mixer or self.mixer
    cross_spec = registry.get_mixer(cross_name)
    base = dict(num_heads=self.num_heads, ffn_dim=self.ffn_dim, dropout=self.dropout,
                attention_dropout=self.attention_dropout,
                activation_dropout=self.activation_dropout,
                normalize_before=self.normalize_before, init_style=self.init_style,
                dtype=self.dtype, param_dtype=self.param_dtype)
    x, p = x_BxTxD, p_BxLxD
    if not prime:  # (self-mixing never changes P)
      own = self_settings
      if self_spec.decoder_self_settings is not None:
        own = self_spec.decoder_self_settings(self_settings)
      self_mixing = self_spec.layer(
          **base, causal=True, decode=self.decode, feed_forward=False, name="self_mixing",
          **self_spec.fields_for_layer(own, self.layer_index))
      x, p = self_mixing(x, p, mask_BxN=mask_BxT, p_mask_BxL=p_mask_BxL,
                         deterministic=deterministic)

    cross = registry.cross_attention(cross_name)(
        num_heads=self.num_heads, settings=settings,
        attention_dropout=self.attention_dropout, init_style=self.init_style,
        dtype=self.dtype, param_dtype=self.param_dtype, name="cross_attention")
    cached = self.decode and not prime and self.has_variable("cache", "cross_static")
    x_in, p_in = x, p
    if self.normalize_before:
      x_in = self.norm("cross_norm")(x)
      if cross_spec.cross_attention is not None and p is not None and not cached:
        p_in = self.norm("cross_p_norm")(p)
    static = self.get_variable("cache", "cross_static") if cached else None
    y_x, y_p, static = cross(x_in, p_in, memory_BxMxD=memory_BxMxD,
                             memory_mask_BxM=memory_mask_BxM, p_mask_BxL=p_mask_BxL,
                             deterministic=deterministic, static=static)
    x, p = self.residual_pair(x, y_x, p, y_p, x_norm="cross_norm", p_norm="cross_p_norm",
                              deterministic=deterministic)
    if self.decode:
      if cached:
        p = self.get_variable("cache", "cross_p")
      elif self.is_mutable_collection("cache"):  # init (shapes) or prime (values)
        self.put_variable("cache", "cross_static", static)
        self.put_variable("cache", "cross_p", p)
    if prime:
      return x, p
    return self.feed_forward_block(x, deterministic, activation="relu"), p


class Decoder(Encoder):
  """`num_layers` decoder layers of the mixer named `mixer` (its causal form).

  Attributes: the Encoder's (mixer_options: the mixer's settings; normalize_before None
  takes the mixer's default; `causal` is ignored: a decoder is always causal), with a
  ReLU FFN by default; decode=True steps through the 'cache' collection.
  """

  ffn_activation: Optional[str] = "relu"
  # Ablations: the layers' causal self-mixing, or their cross-attention, from another
  # mixer, one without a P of its own (e.g. a Luna decoder with softmax self-attention);
  # None: `mixer`'s. The other mixer takes its default settings.
  self_mixer: Optional[str] = None
  cross_mixer: Optional[str] = None

  @nn.compact
  def __call__(self, y_BxTxD, *, memory_BxMxD, memory_mask_BxM, p_BxLxD=None,
               mask_BxT=None, deterministic: bool = True, prime: bool = False) -> Array:
    """y: embedded target inputs (in decode mode: the next T tokens); memory: the encoder
    output and its mask; p: the encoder's final P (mixers with P); prime: fill the
    layers' cross-attention caches (see DecoderLayer). Returns (B, T, D)."""
    spec = registry.get_mixer(self.mixer)
    if spec.not_causal_because:
      raise ValueError(f"mixer {self.mixer!r} cannot decode: {spec.not_causal_because}")
    if self.decode and spec.no_decode_because:
      raise ValueError(f"mixer {self.mixer!r} cannot decode step by step: "
                       f"{spec.no_decode_because}")
    for role, other in (("self_mixer", self.self_mixer), ("cross_mixer", self.cross_mixer)):
      if other in (None, self.mixer):
        continue
      if registry.get_mixer(other).decoder_p is not None:
        raise ValueError(f"{role}={other!r}: only a mixer without P can stand in for part "
                         f"of a {self.mixer!r} decoder.")
      if role == "self_mixer" and registry.get_mixer(other).not_causal_because:
        raise ValueError(f"self_mixer={other!r} cannot be causal: "
                         f"{registry.get_mixer(other).not_causal_because}")
    d = y_BxTxD.shape[-1]
    run = registry.RunShape(max_len=None, num_layers=self.num_layers, d_model=d,
                            num_heads=self.num_heads, causal=True)
    settings = registry.make_settings(self.mixer, self.mixer_options, run)
    p, p_mask_BxL = (None, None)
    if spec.decoder_p is not None:
      if p_BxLxD is None:
        raise ValueError(f"the {self.mixer!r} decoder needs the encoder's P.")
      p, p_mask_BxL = spec.decoder_p(settings, p_BxLxD, memory_mask_BxM)
    normalize_before = (spec.normalize_before if self.normalize_before is None
                        else self.normalize_before)
    x = y_BxTxD.astype(self.dtype)
    for i in range(self.num_layers):
      x, p = DecoderLayer(
          mixer=self.mixer, settings=settings, layer_index=i, self_mixer=self.self_mixer,
          cross_mixer=self.cross_mixer, num_heads=self.num_heads,
          ffn_dim=self.ffn_dim, dropout=self.dropout,
          attention_dropout=self.attention_dropout,
          activation_dropout=self.activation_dropout,
          normalize_before=normalize_before, decode=self.decode,
          init_style=self.init_style, ffn_activation=self.ffn_activation,
          dtype=self.dtype, param_dtype=self.param_dtype, name=f"layer_{i}")(
              x, p, memory_BxMxD=memory_BxMxD, memory_mask_BxM=memory_mask_BxM,
              mask_BxT=mask_BxT, p_mask_BxL=p_mask_BxL, deterministic=deterministic,
              prime=prime)
    if normalize_before:
      x = common.layer_norm("final_norm", self.dtype, self.param_dtype)(x)
    return x


class Seq2SeqModel(nn.Module):
  """The encoder-decoder model (module docstring).

  Attributes:
    vocab_size: ids of the (joint) vocabulary, padding, BOS and EOS included.
    max_source_len / max_target_len: the longest source and target (EOS included); a
      longer input raises.
    d_model: width; dropout: embedding dropout.
    share_embeddings: "all", "decoder" or "none" (module docstring).
    encoder: keyword arguments of `luna_jax.Encoder` (mixer, num_layers, ...).
    decoder: keyword arguments of `Decoder`.
    conventions: "luna_jax" or "fairseq": positions, padding row and the decoder's first
      input (module docstring).
    fairseq_padding_idx: with conventions="fairseq", the padding index of the fairseq
      dictionary being followed (Dictionary.pad(), 1 in fairseq): real tokens' positions
      count from it + 1. Token ids stay this library's (padding 0).
    decode: the decoder steps through its caches (see `generate`).
  """

  vocab_size: int
  max_source_len: int
  max_target_len: int
  d_model: int
  dropout: float = 0.1
  share_embeddings: str = "all"
  init_style: str = "xavier"
  conventions: str = "luna_jax"
  fairseq_padding_idx: int = 1
  encoder: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  decoder: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  decode: bool = False
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  def setup(self):
    if self.share_embeddings not in SHARE_EMBEDDINGS:
      raise ValueError(f"share_embeddings={self.share_embeddings!r} is not one of "
                       f"{SHARE_EMBEDDINGS}.")
    if self.conventions not in CONVENTIONS:
      raise ValueError(f"conventions={self.conventions!r} is not one of {CONVENTIONS}.")
    if self.fairseq_padding_idx < 0:
      raise ValueError(f"fairseq_padding_idx={self.fairseq_padding_idx} must be >= 0.")
    init = nn.initializers.normal(self.d_model**-0.5)  # fairseq's N(0, d^-1/2)
    if self.conventions == "fairseq":
      init = _padding_row_zero(init)
    embed = lambda name: nn.Embed(  # noqa: E731
        self.vocab_size, self.d_model, embedding_init=init, dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    self.source_embed = embed("source_embed")
    if self.share_embeddings != "all":
      self.target_embed = embed("target_embed")
    if self.share_embeddings == "none":
      self.output_proj = nn.Dense(
          self.vocab_size, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
          kernel_init=nn.initializers.normal(self.d_model**-0.5), name="output_proj")
    self.embed_dropout = nn.Dropout(self.dropout)
    self.encoder_stack = Encoder(**self.encoder, init_style=self.init_style,
                                 dtype=self.dtype, param_dtype=self.param_dtype,
                                 name="encoder")
    self.decoder_stack = Decoder(**self.decoder, decode=self.decode,
                                 init_style=self.init_style, dtype=self.dtype,
                                 param_dtype=self.param_dtype, name="decoder")
    if self.decode:
      self.position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))

  def _target_embed(self) -> nn.Embed:
    return self.source_embed if self.share_embeddings == "all" else self.target_embed

  def decoder_start_id(self, bos_id: int, eos_id: int) -> int:
    """The decoder's first input: BOS, or EOS under fairseq's conventions."""
    return start_token(self.conventions, bos_id=bos_id, eos_id=eos_id)

  def _embed(self, embed: nn.Embed, tokens_BxT: Array, *, deterministic: bool,
             max_len: int, offset=None) -> Array:
    """sqrt(d) E[tokens] + positions (`_positions`), dropout. Under fairseq's conventions
    the lookups of padding pass no gradient to its row (nn.Embedding(padding_idx))."""
    e_BxTxD = embed(tokens_BxT)
    if self.conventions == "fairseq":
      e_BxTxD = jnp.where((tokens_BxT == PAD_ID)[..., None], jax.lax.stop_gradient(e_BxTxD),
                          e_BxTxD)
    positions = self._positions(tokens_BxT, max_len, offset)
    x = self.d_model**0.5 * e_BxTxD + positions.astype(self.dtype)
    return self.embed_dropout(x, deterministic=deterministic)

  def _positions(self, tokens_BxT: Array, max_len: int, offset) -> Array:
    """(1 or B, T, D) sinusoidal positions: 0, 1, ... (offset, offset + 1, ... when
    decoding); under fairseq's conventions those of `fairseq_positions` (decoding: the
    offset's, as fairseq's incremental step, which counts every token fed)."""
    t, d = tokens_BxT.shape[1], self.d_model
    if self.conventions == "luna_jax":
      if offset is None:
        return common.sinusoidal_positions(t, d)[None]
      return jax.lax.dynamic_slice_in_dim(common.sinusoidal_positions(max_len, d), offset,
                                          t)[None]
    pad = self.fairseq_padding_idx
    table_PxD = common.sinusoidal_positions(max_len + pad + 1, d).at[pad].set(0.0)
    if offset is None:
      return table_PxD[fairseq_positions(tokens_BxT, pad)]
    return jax.lax.dynamic_slice_in_dim(table_PxD, offset + pad + 1, t)[None]

  def encode(self, source_BxS: Array, *, deterministic: bool = True) -> dict:
    """{"memory": (B, S, D), "memory_mask": (B, S) True at real tokens, "p": (B, L, D)
    for mixers with P}."""
    if source_BxS.shape[-1] > self.max_source_len:
      raise ValueError(f"sources have {source_BxS.shape[-1]} tokens but the model allows "
                       f"max_source_len={self.max_source_len}; truncate them "
                       "(translation.too_long=truncate) or raise max_source_len.")
    mask_BxS = source_BxS != PAD_ID
    x = self._embed(self.source_embed, source_BxS, deterministic=deterministic,
                    max_len=self.max_source_len)
    memory, p = self.encoder_stack(x, mask_BxN=mask_BxS, deterministic=deterministic)
    out = {"memory": memory, "memory_mask": mask_BxS}
    if p is not None:
      out["p"] = p
    return out

  def decode_logits(self, target_in_BxT: Array, encoded: dict, *,
                    deterministic: bool = True) -> Array:
    """Logits (B, T, V) in at least float32 for decoder inputs S y_1 ... y_{T-1}, S the
    `decoder_start_id` (in decode mode: the next T inputs, after those already fed)."""
    t = target_in_BxT.shape[-1]
    offset = None
    if self.decode:
      offset = self.position.value
      self.position.value = offset + t
    elif t > self.max_target_len:
      raise ValueError(f"targets have {t} tokens but the model allows max_target_len="
                       f"{self.max_target_len}; truncate them or raise max_target_len.")
    embed = self._target_embed()
    y = self._embed(embed, target_in_BxT, deterministic=deterministic,
                    max_len=self.max_target_len, offset=offset)
    h = self.decoder_stack(
        y, memory_BxMxD=encoded["memory"], memory_mask_BxM=encoded["memory_mask"],
        p_BxLxD=encoded.get("p"), mask_BxT=None if self.decode else target_in_BxT != 0,
        deterministic=deterministic)
    logits = (self.output_proj(h) if self.share_embeddings == "none" else embed.attend(h))
    return logits.astype(common.softmax_dtype(self.dtype))

  def prime_cache(self, encoded: dict) -> None:
    """Decode mode, with the 'cache' mutable: computes each decoder layer's source-only
    cross-attention tensors and P once (see `initial_cache`)."""
    rows = encoded["memory"].shape[0]
    self.decoder_stack(jnp.zeros((rows, 1, self.d_model), self.dtype),
                       memory_BxMxD=encoded["memory"], memory_mask_BxM=encoded["memory_mask"],
                       p_BxLxD=encoded.get("p"), prime=True)

  def __call__(self, source_BxS: Array, target_in_BxT: Array, *,
               deterministic: bool = True) -> Array:
    """Teacher-forced logits (B, T, V)."""
    encoded = self.encode(source_BxS, deterministic=deterministic)
    return self.decode_logits(target_in_BxT, encoded, deterministic=deterministic)


def _padding_row_zero(init: nn.initializers.Initializer) -> nn.initializers.Initializer:
  """`init` with the padding row (id 0) set to zero: fairseq's Embedding."""

  def zeroed(key, shape, dtype=jnp.float32):
    return init(key, shape, dtype).at[PAD_ID].set(0)

  return zeroed


def fairseq_positions(tokens_BxT: Array, padding_idx: int) -> Array:
  """fairseq's utils.make_positions over this library's ids (padding 0): the n-th real
  token of a row has position padding_idx + n (n from 1, left padding skipped), padding
  has padding_idx."""
  real_BxT = (tokens_BxT != PAD_ID).astype(jnp.int32)
  return jnp.cumsum(real_BxT, axis=1) * real_BxT + padding_idx


def start_token(conventions: str, *, bos_id: int, eos_id: int) -> int:
  """The decoder's first input under `conventions`: BOS, or EOS for fairseq's."""
  if conventions not in CONVENTIONS:
    raise ValueError(f"conventions={conventions!r} is not one of {CONVENTIONS}.")
  return eos_id if conventions == "fairseq" else bos_id


def shift_right(target_BxT: Array, bos_id: int) -> Array:
  """Decoder inputs: bos_id (the model's `decoder_start_id`), then the targets without
  their last position (padding stays 0 after the end)."""
  return jnp.concatenate([jnp.full_like(target_BxT[:, :1], bos_id), target_BxT[:, :-1]],
                         axis=1) * jnp.concatenate(
                             [jnp.ones_like(target_BxT[:, :1]), target_BxT[:, :-1] != 0],
                             axis=1).astype(target_BxT.dtype)


def initial_cache(model: Seq2SeqModel, params, encoded: dict, rows: int, max_len: int):
  """The decoder's caches before the first step, for `rows` rows and up to max_len steps:
  the self-mixing caches empty (zeros; their shapes traced, nothing computed), and each
  layer's cross-attention tensors that depend on the source alone (the memory's keys and
  values; Luna's unpack keys and values and its P) computed once from `encoded`."""
  decoder = model.clone(decode=True)
  tokens = jnp.zeros((rows, max_len), jnp.int32)
  shapes = jax.eval_shape(
      lambda e: decoder.init(jax.random.key(0), tokens, e, method=Seq2SeqModel.decode_logits),
      encoded)
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])
  _, state = decoder.apply({"params": params, "cache": cache}, encoded,
                           method=Seq2SeqModel.prime_cache, mutable=["cache"])
  return state["cache"]


# Cache entries that depend on the source alone (DecoderLayer's): they never change while
# decoding, and every beam of an example holds the same ones.
STATIC_CACHE = ("cross_static", "cross_p")


def split_cache(cache) -> tuple[dict, dict]:
  """(the entries a step changes, the source-only STATIC_CACHE entries), as two nested
  dicts; `merge_cache` puts them back together."""
  changing, static = {}, {}
  for key, value in cache.items():
    if key in STATIC_CACHE:
      static[key] = value
    elif isinstance(value, Mapping):
      changing[key], inner = split_cache(value)
      if inner:
        static[key] = inner
    else:
      changing[key] = value
  return changing, static


def merge_cache(changing, static) -> dict:
  merged = dict(changing)
  for key, value in static.items():
    merged[key] = merge_cache(changing[key], value) if key in changing else value
  return merged


def step_function(model: Seq2SeqModel, params, encoded: dict,
                  never: tuple[int, ...] = (0,), static: Optional[dict] = None):
  """decoding.StepFn over the decoder's caches: (cache, tokens (R,)) -> (log probs (R, V),
  cache), with the encoder output of the R rows closed over; ids in `never` get a
  -inf-like logit before the log-softmax, which renormalises the others (the GNMT search's
  way; fairseq's search passes none here and bans them after, `decoding.beam_search`'s
  `banned`). static: the cache's source-only entries (`split_cache`), closed over too, so
  that the state a beam search reorders after every step holds only what the steps
  change."""
  decoder = model.clone(decode=True)
  banned_V = jnp.zeros((model.vocab_size,), bool).at[jnp.asarray(never, jnp.int32)].set(True)

  def step(cache, tokens_R):
    full = cache if static is None else merge_cache(cache, static)
    logits, variables = decoder.apply({"params": params, "cache": full}, tokens_R[:, None],
                                      encoded, method=Seq2SeqModel.decode_logits,
                                      mutable=["cache"])
    logits_RxV = logits[:, 0].astype(jnp.float32)
    if never:
      logits_RxV = jnp.where(banned_V, common.MASK_VALUE, logits_RxV)
    cache = variables["cache"] if static is None else split_cache(variables["cache"])[0]
    return jax.nn.log_softmax(logits_RxV, axis=-1), cache

  return step


def length_cap(source_len: int, a: float, b: float, limit: int) -> int:
  """The tokens a translation of a source of `source_len` tokens (its EOS included, as
  fairseq's src_tokens hold it) may have before its own EOS: int(a * source_len + b), as
  fairseq's SequenceGenerator, at most `limit` (max_target_len - 1: room for the EOS),
  at least 0."""
  return max(0, min(int(limit), int(a * source_len + b)))


def caps_from_sources(source_BxS: Array, a: float, b: float, limit: int) -> Array:
  """(B,) int32: each row's `length_cap` from its own source's real length (its
  non-padding tokens), so that no other row of the batch, nor the batch's padded width,
  changes it. Traceable: the caps of every length up to the static width are a table."""
  table = [length_cap(n, a, b, limit) for n in range(source_BxS.shape[-1] + 1)]
  return jnp.asarray(table, jnp.int32)[jnp.sum(source_BxS != 0, axis=-1)]


def generate(model: Seq2SeqModel, params, source_BxS: Array, *, max_len: int, bos_id: int,
             eos_id: int, beam_size: int = 1, length_penalty: float = 1.0,
             search: str = "fairseq", min_len: int = 1,
             max_len_B: Optional[Array] = None) -> Array:
  """Translations (B, max_len) of the sources: EOS-terminated, then padding. Greedy for
  beam_size 1, else the best hypothesis of beam search, under fairseq's rules or GNMT's
  (`search`, `luna_jax.decoding`). Jit it (fixed shapes).

  max_len: the output buffer (tokens per row, EOS included), at most the model's
  max_target_len. max_len_B: each row's cap on the tokens before its EOS (int (B,), e.g.
  `caps_from_sources`; None: max_len - 1 for every row). min_len: EOS is banned before
  this many tokens. Padding and BOS are never generated: "fairseq" sets their log
  probability to -inf after the full log-softmax, "gnmt" masks them before it. The
  decoder starts from `model.decoder_start_id` (BOS, or EOS under fairseq conventions).
  """
  if max_len > model.max_target_len:
    raise ValueError(f"max_len={max_len} exceeds the model's max_target_len="
                     f"{model.max_target_len}.")
  decoding.check_search(search)
  encoded = model.apply({"params": params}, source_BxS, method=Seq2SeqModel.encode)
  b = source_BxS.shape[0]
  never = (0, bos_id)
  step_never, banned = (never, ()) if search == "gnmt" else ((), never)
  start = model.decoder_start_id(bos_id, eos_id)
  kw = dict(max_len=max_len, bos_id=start, eos_id=eos_id, search=search, min_len=min_len,
            max_len_B=max_len_B, banned=banned)
  if beam_size == 1:
    cache, static = split_cache(initial_cache(model, params, encoded, b, max_len))
    return decoding.greedy_search(step_function(model, params, encoded, step_never, static),
                                  cache, batch=b, **kw)
  encoded = jax.tree.map(lambda a: jnp.repeat(a, beam_size, axis=0), encoded)
  cache, static = split_cache(initial_cache(model, params, encoded, b * beam_size, max_len))
  tokens, _ = decoding.beam_search(
      step_function(model, params, encoded, step_never, static), cache, batch=b,
      beam_size=beam_size, length_penalty=length_penalty, **kw)
  return tokens[:, 0]
