"""Translating raw sentences with a trained workdir's model (translate.py's engine)."""

from __future__ import annotations

import numpy as np

from luna_jax import errors
from luna_jax.data import translation
from luna_jax.training import translation_eval
from luna_jax.training.workloads.translation import Translation


def translate_sentences(trainer, params, sentences: list[str], rows: int = 32
                        ) -> tuple[list[str], int]:
  """(translations in the input order, how many sources were truncated to fit the
  model's max_source_len). Sentences are sorted by length and batched in the lengths of
  the training buckets, so few shapes compile. An empty (or blank) sentence translates to
  "" without the model, which would make up a translation of nothing."""
  filled = [i for i, s in enumerate(sentences) if s.strip()]
  if len(filled) < len(sentences):
    out, truncated = translate_sentences(trainer, params, [sentences[i] for i in filled],
                                         rows)
    translations = [""] * len(sentences)
    for i, translated in zip(filled, out, strict=True):
      translations[i] = translated
    return translations, truncated
  run = trainer.run
  if not isinstance(run.workload, Translation):
    raise errors.ConfigError(f"{run.workdir} holds a {run.config.objective} run "
                             f"(task={run.config.task}), not a translation model.")
  t = run.config.translation
  tokenizer = run.source.tokenizer()
  eos = run.source.vocab.eos_id
  pieces = [tokenizer.encode(s) for s in sentences]
  truncated = sum(len(ids) + 1 > t.max_source_len for ids in pieces)
  encoded = [np.append(ids[:t.max_source_len - 1], eos) for ids in pieces]
  buckets = translation.bucket_lengths(t.max_source_len)
  rows = max(rows // trainer.rows_multiple, 1) * trainer.rows_multiple
  generate = translation_eval.generator(run)
  order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
  out = [""] * len(encoded)
  for start in range(0, len(order), rows):
    chunk = order[start:start + rows]
    length = buckets[int(np.searchsorted(buckets, max(len(encoded[i]) for i in chunk)))]
    source = np.zeros((rows, length), np.int32)
    for r, i in enumerate(chunk):
      source[r, :len(encoded[i])] = encoded[i]
    batch = trainer.to_global({"source": source})
    tokens = translation_eval.to_host(generate(params, batch["source"],
                                              translation_eval.generation_length(
                                                  run.config, length)))
    for r, i in enumerate(chunk):
      row = [int(x) for x in tokens[r]]
      out[i] = tokenizer.decode(row[:row.index(eos)] if eos in row else row)
  return out, truncated
