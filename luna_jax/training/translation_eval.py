"""BLEU of a translation model's generated output on a split, with sacrebleu.

Sources are read in the split's token batches, translated by jitted beam (or greedy)
search through the decoder's caches (`luna_jax.models.seq2seq.generate`, at most
a * source length + b tokens), detokenised by the SentencePiece model and scored with
sacrebleu's corpus BLEU (its default 13a tokenisation) against the raw reference
sentences. `copy_bleu` scores the raw source sentences as if they were translations: the
floor a model must beat.
"""

from __future__ import annotations

import jax
import numpy as np

from luna_jax.models import seq2seq


def generation_length(config, source_len: int) -> int:
  """The output buffer (tokens per row, EOS included) for sources padded to `source_len`:
  one more than the largest per-sentence cap (`seq2seq.length_cap`) of any source that
  fits. It only fixes the shapes: each sentence stops at its own cap (`generator`)."""
  t = config.translation
  return 1 + max(seq2seq.length_cap(n, t.max_len_a, t.max_len_b, t.max_target_len - 1)
                 for n in range(source_len + 1))


# id(model) -> (model, its jitted generator): compiled once per model and shape. The model
# is kept in the value, so its id is not reused while the entry lives.
_GENERATORS: dict = {}


def generator(run):
  """run's jitted (params, source_BxS, max_len) -> tokens (B, max_len), max_len from
  `generation_length`. Each row's cap on the tokens before EOS comes from its own source
  alone (`seq2seq.caps_from_sources`: int(max_len_a * its length, EOS included,
  + max_len_b), at most max_target_len - 1), so a row's translation does not depend on
  the other pairs of its batch (a long reference widens a bucket, not a cap)."""
  t = run.config.translation
  options = dict(search=t.search, beam_size=t.beam_size,
                 length_penalty=float(t.length_penalty), min_len=t.min_len)
  a, b = float(t.max_len_a), float(t.max_len_b)
  key = (id(run.model), a, b, *options.items())
  if key not in _GENERATORS:
    model, vocab = run.model, run.source.vocab

    def generate(params, source_BxS, max_len):
      caps_B = seq2seq.caps_from_sources(source_BxS, a, b, model.max_target_len - 1)
      return seq2seq.generate(model, params, source_BxS, max_len=max_len,
                              bos_id=vocab.cls_id, eos_id=vocab.eos_id, max_len_B=caps_B,
                              **options)

    _GENERATORS[key] = (model, jax.jit(generate, static_argnums=2))
  return _GENERATORS[key][1]


def to_host(a) -> np.ndarray:
  """A global array as a NumPy array on every process (all rows)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))
  return np.asarray(a)


def translate_split(run, params, split: str, limit: int = 0, to_global=None) -> dict:
  """{pair index: generated token ids (up to EOS, excluded)} for the split's pairs
  (the first `limit` of them; 0: all). to_global: batch dict -> global arrays. The
  batch's padded width sets the buffer (`generation_length`); each pair's cap comes from
  its own source (`generator`)."""
  generate = generator(run)
  eos = run.source.vocab.eos_id
  out = {}
  for batch in run.dataset(split, num_epochs=1, shuffle=False):
    if limit and not np.any((batch["index"] >= 0) & (batch["index"] < limit)):
      continue
    source = {"source": batch["source"], "index": batch["index"]}
    if to_global is not None:
      source = to_global(source)
    tokens = to_host(generate(params, source["source"],
                             generation_length(run.config, batch["source"].shape[1])))
    indices = to_host(source["index"])
    for index, row in zip(indices, tokens, strict=True):
      if index < 0 or (limit and index >= limit):
        continue
      row = [int(x) for x in row]
      out[int(index)] = row[:row.index(eos)] if eos in row else [x for x in row if x]
  return out


def bleu_metrics(trainer, params, split: str, limit: int = 0) -> dict:
  """{"bleu", "copy_bleu", "bleu_sentences"} on the split (its first `limit` pairs)."""
  import sacrebleu

  run = trainer.run
  hypotheses = translate_split(run, params, split, limit, trainer.to_global)
  tokenizer = run.source.tokenizer()
  order = sorted(hypotheses)
  refs = run.source.raw_sentences(split, "target")
  sources = run.source.raw_sentences(split, "source")
  hyps = [tokenizer.decode(hypotheses[i]) for i in order]
  chosen_refs = [refs[i] for i in order]
  return {"bleu": sacrebleu.corpus_bleu(hyps, [chosen_refs]).score,
          "copy_bleu": sacrebleu.corpus_bleu([sources[i] for i in order],
                                             [chosen_refs]).score,
          "bleu_sentences": float(len(order))}
