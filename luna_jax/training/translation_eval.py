"""BLEU of a translation model's generated output on a split, with sacrebleu.

Sources are read in the split's token batches, translated by jitted beam (or greedy)
search through the decoder's caches (`luna_jax.models.seq2seq.generate`, at most
a * source length + b tokens), detokenised by the SentencePiece model and scored with
sacrebleu's corpus BLEU (its default 13a tokenisation) against the raw reference
sentences. `copy_bleu` scores the raw source sentences as if they were translations: the
floor a model must beat. `tokenized_bleu` is BLEU as the WMT'14 En-De papers report it:
on tokenised text, German compounds split (`paper_tokens`), as multi-bleu.perl scores.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re

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


TRANSLATIONS_FILE = "{split}_translations.jsonl"  # in the workdir, per split tested
# sacreBLEU's settings: its defaults (13a tokenisation of detokenised text, case-sensitive,
# exponential smoothing), as reported with the signature in summary.json.
SACREBLEU: dict = {}
# BLEU as multi-bleu.perl computes it, on text tokenised beforehand (`paper_tokens`):
# whitespace-split tokens, case-sensitive, no smoothing (0 when an n-gram order has no
# match).
TOKENIZED: dict = {"tokenize": "none", "smooth_method": "none"}
# German compounds split as tensor2tensor's get_ende_bleu.sh and fairseq's
# compound_split_bleu.sh do (perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g').
_COMPOUND = re.compile(r"(\S)-(\S)")


def corpus_bleu(hypotheses: list[str], references: list[str], settings: dict) -> float:
  """sacrebleu's corpus BLEU with one reference per hypothesis."""
  from sacrebleu.metrics import BLEU

  return BLEU(**settings).corpus_score(hypotheses, [references]).score


def bleu_signature(settings: dict) -> str:
  """sacreBLEU's signature of BLEU with these settings and one reference per sentence,
  e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0."""
  from sacrebleu.metrics import BLEU

  bleu = BLEU(**settings)
  bleu.corpus_score(["a"], [["a"]])  # sacrebleu knows nrefs, and signs, after a score
  return str(bleu.get_signature())


def splits_compounds(tgt: str) -> bool:
  """Whether the target language is German, whose compounds the papers split."""
  return tgt.lower().replace("_", "-").split("-")[0] in ("de", "deu", "ger", "german")


@functools.cache
def _tokenizer_13a():
  from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

  return Tokenizer13a()


def paper_tokens(sentence: str, tgt: str) -> str:
  """sentence as the published WMT'14 En-De BLEU tokenises it: sacrebleu's 13a tokeniser
  (mteval-v13a, standing in for the Moses tokenizer, not installed here), then for a
  German target each hyphen between two non-spaces split off as ##AT##-##AT##."""
  tokens = _tokenizer_13a()(sentence)
  if splits_compounds(tgt):
    tokens = _COMPOUND.sub(r"\1 ##AT##-##AT## \2", tokens)
  return tokens


def tokenized_bleu(hypotheses: list[str], references: list[str], tgt: str) -> float:
  """BLEU as the papers report it (`paper_tokens` on both sides, then `TOKENIZED`)."""
  return corpus_bleu([paper_tokens(h, tgt) for h in hypotheses],
                     [paper_tokens(r, tgt) for r in references], TOKENIZED)


def tokenized_bleu_method(tgt: str) -> str:
  """How `tokenized_bleu` is computed for target language tgt, in words."""
  import sacrebleu

  compounds = (", then compound splitting s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g (German "
               "target)" if splits_compounds(tgt) else "")
  return (f"hypotheses and references tokenised by sacrebleu {sacrebleu.__version__}'s 13a "
          f"tokeniser (mteval-v13a; no Moses tokenizer installed){compounds}; BLEU on the "
          f"tokens as multi-bleu.perl: {bleu_signature(TOKENIZED)}")


def write_translations(path, records: list[dict]) -> None:
  """JSON lines, one {"index", "source", "reference", "hypothesis"} record per pair. JSON
  escapes line breaks, and U+0085, U+2028 and U+2029 are escaped too, so no line splitter
  can cut a record in two; each record names its pair, so nothing relies on line order."""
  text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
  for char in ("\x85", "\u2028", "\u2029"):
    text = text.replace(char, f"\\u{ord(char):04x}")  # only inside strings: valid JSON
  pathlib.Path(path).write_text(text, encoding="utf-8", newline="")


def bleu_metrics(trainer, params, split: str, limit: int = 0, *,
                 translations_path=None) -> dict:
  """{"bleu" (sacreBLEU), "tokenized_bleu" (as the papers), "copy_bleu", "bleu_sentences"}
  on the split (its first `limit` pairs). The split's raw sources and references must be
  as many as its pairs (else the folder is inconsistent: TranslationDataError).
  translations_path: where to write each pair's source, reference and hypothesis
  (`write_translations`)."""
  run = trainer.run
  sources, refs = run.source.raw_pairs(split)
  hypotheses = translate_split(run, params, split, limit, trainer.to_global)
  tokenizer = run.source.tokenizer()
  order = sorted(hypotheses)
  hyps = [tokenizer.decode(hypotheses[i]) for i in order]
  chosen_refs = [refs[i] for i in order]
  if translations_path is not None:
    write_translations(translations_path, [
        {"index": i, "source": sources[i], "reference": refs[i], "hypothesis": h}
        for i, h in zip(order, hyps, strict=True)])
  return {"bleu": corpus_bleu(hyps, chosen_refs, SACREBLEU),
          "tokenized_bleu": tokenized_bleu(hyps, chosen_refs, run.source.provenance()["tgt"]),
          "copy_bleu": corpus_bleu([sources[i] for i in order], chosen_refs, SACREBLEU),
          "bleu_sentences": float(len(order))}
