"""Translation (`python -m luna_jax.data prepare_translation`, or the offline reordering
task generated on first use): an encoder-decoder trained with label-smoothed
cross-entropy, validated and tested by the BLEU of beam-searched output. Its keys:
translation_dir and the `translation` block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from luna_jax import errors, registry
from luna_jax.data import translation as data_translation
from luna_jax.decoding import SEARCHES
from luna_jax.models.seq2seq import CONVENTIONS, SHARE_EMBEDDINGS, Seq2SeqModel, start_token
from luna_jax.training import model_config, translation_eval
from luna_jax.training.objectives import Translation as TranslationObjective
from luna_jax.training.workloads.base import Devices, Workload, register_workload


class Translation(Workload):
  """task=translation: parallel text in config.translation_dir."""

  name = "translation"
  objectives = ("seq2seq",)
  uses_rows = False  # token batches (translation.max_tokens), not batch_size x max_len

  def task_names(self) -> tuple[str, ...]:
    return ("translation",)

  def add_config(self, c) -> None:
    # A folder made by `python -m luna_jax.data prepare_translation` (or generated on
    # first use, translation.generate).
    c.translation_dir = ""
    c.translation = t = ml_collections.ConfigDict()
    t.generate = 0  # > 0: generate the offline reordering task (data/toy_translation.py)
    #                 with this many training pairs into translation_dir when it is empty
    t.generate_eval = 500  # ... and this many validation and test pairs each
    t.vocab_size = 8000  # joint SentencePiece pieces when generating (and what a compile-
    #                       only run assumes when translation_dir is not prepared)
    t.max_source_len = 256  # tokens per source, EOS included
    t.max_target_len = 256  # tokens per target, EOS included
    t.too_long = "truncate"  # a longer pair: truncate (counted in the summary) | error
    t.max_tokens = 4096  # tokens per batch (rows x padded length), over all devices
    t.decoder_layers = 6  # decoder layers (model.num_layers: the encoder's)
    t.decoder_self_mixer = ""  # ablations: the decoder layers' self-mixing from another
    t.decoder_cross_mixer = ""  #   mixer without P, or their cross-attention ("": model.name)
    t.share_embeddings = "all"  # all (source, target, output) | decoder | none
    t.label_smoothing = 0.1
    t.select = "loss"  # the best checkpoint by validation loss | bleu
    t.beam_size = 4  # generation (validation BLEU, test BLEU, translate.py)
    t.search = "fairseq"  # fairseq's SequenceGenerator, the recipes' search | gnmt
    #                       (luna_jax/decoding.py says how they differ)
    t.length_penalty = 0.6  # fairseq: score = sum log p / m ** lp; gnmt: divided by
    #                         ((5 + m) / 6) ** lp (m tokens, EOS included)
    t.min_len = 1  # tokens before EOS at least (EOS is banned before; 1: no empty output)
    t.max_len_a = 1.2  # each sentence: at most int(a * its source length (EOS included)
    t.max_len_b = 10  #   + b) tokens before EOS, and at most max_target_len - 1
    t.val_bleu_sentences = 500  # validation BLEU on the first N pairs (0: all, -1: none)
    t.conventions = "luna_jax"  # luna_jax | fairseq: positions from fairseq's padding
    #                             index + 1, a zero padding row without lookup gradient,
    #                             EOS as the decoder's first input (models/seq2seq.py)

  def check(self, config, devices: Devices) -> None:
    m, t = config.model, config.translation
    errors.require(bool(config.translation_dir), "task=translation needs translation_dir, "
                   "a folder made by `python -m luna_jax.data prepare_translation`.")
    spec = registry.get_mixer(m.name)
    errors.require(not spec.not_causal_because, f"model.name={m.name!r} cannot be a "
                   f"decoder: {spec.not_causal_because}")
    errors.require(not m.causal, "model.causal is for language models; a translation "
                   "model's encoder is bidirectional and its decoder causal.")
    errors.require(t.too_long in data_translation.TOO_LONG, f"translation.too_long="
                   f"{t.too_long!r} is not one of {data_translation.TOO_LONG}.")
    errors.require(t.share_embeddings in SHARE_EMBEDDINGS, f"translation.share_embeddings="
                   f"{t.share_embeddings!r} is not one of {SHARE_EMBEDDINGS}.")
    errors.require(t.select in ("loss", "bleu"), f"translation.select={t.select!r} is not "
                   "one of 'loss', 'bleu'.")
    errors.require(t.select != "bleu" or t.val_bleu_sentences >= 0, "translation.select="
                   "bleu needs validation BLEU: set translation.val_bleu_sentences >= 0.")
    for name in ("max_source_len", "max_target_len", "max_tokens", "decoder_layers",
                 "beam_size"):
      errors.require(t[name] > 0, f"translation.{name} must be positive, got {t[name]}.")
    errors.require(0 <= t.label_smoothing < 1, f"translation.label_smoothing="
                   f"{t.label_smoothing} must be in [0, 1).")
    errors.require(t.search in SEARCHES, f"translation.search={t.search!r} is not one of "
                   f"{SEARCHES}.")
    errors.require(0 <= t.min_len < t.max_target_len, f"translation.min_len={t.min_len} "
                   f"must be in [0, max_target_len - 1 = {t.max_target_len - 1}] (EOS "
                   "needs a position).")
    for role in ("decoder_self_mixer", "decoder_cross_mixer"):
      other = t[role]
      errors.require(not other or other in registry.mixer_names(), f"translation.{role}="
                     f"{other!r} is not a mixer ({', '.join(registry.mixer_names())}).")
      errors.require(not other or other == m.name
                     or registry.get_mixer(other).decoder_p is None, f"translation.{role}="
                     f"{other!r}: only a mixer without P can stand in for part of a "
                     f"{m.name!r} decoder.")
    errors.require(t.conventions in CONVENTIONS, f"translation.conventions="
                   f"{t.conventions!r} is not one of {CONVENTIONS}.")

  def prepare_vocabulary(self, config, sync) -> None:
    """Generates the offline translation task into translation_dir on first use when
    translation.generate > 0 (its vocabulary is the SentencePiece model trained here)."""
    t = config.translation
    if not t.generate or not config.translation_dir:
      return
    if jax.process_index() == 0 and not data_translation.is_prepared(config.translation_dir):
      data_translation.generate_and_prepare(config.translation_dir, t.generate,
                                            t.generate_eval, t.vocab_size, config.seed)
    sync("translation_generated")

  def source(self, config, compile_only: bool = False) -> data_translation.ParallelSource:
    t = config.translation
    assumed = None
    if compile_only and not data_translation.is_prepared(config.translation_dir):
      assumed = t.vocab_size  # the vocabulary's size is all the programs need
    return data_translation.ParallelSource(
        config.translation_dir, t.max_source_len, t.max_target_len, t.max_tokens,
        too_long=t.too_long, vocab_size=assumed)

  def build_model(self, config, source):
    m, t = config.model, config.translation
    encoder = model_config.encoder_settings(config)
    normalize_before = encoder["normalize_before"]
    if normalize_before is None:
      normalize_before = registry.get_mixer(m.name).normalize_before
    decoder = dict(encoder, num_layers=t.decoder_layers, normalize_before=normalize_before,
                   ffn_activation="relu", self_mixer=t.decoder_self_mixer or None,
                   cross_mixer=t.decoder_cross_mixer or None)
    del decoder["causal"]
    return Seq2SeqModel(
        vocab_size=source.vocab.size, max_source_len=t.max_source_len,
        max_target_len=t.max_target_len, d_model=m.d_model, dropout=m.dropout,
        share_embeddings=t.share_embeddings, init_style=m.init_style,
        conventions=t.conventions,
        encoder=dict(encoder, ffn_activation="relu"), decoder=decoder,
        dtype=model_config.DTYPES[m.dtype])

  def objective(self, config, source):
    t = config.translation
    start = start_token(t.conventions, bos_id=source.vocab.cls_id,
                        eos_id=source.vocab.eos_id)
    return TranslationObjective(bos_id=start, label_smoothing=t.label_smoothing,
                                select=t.select)

  def example_inputs(self, config, source) -> tuple:
    return (jnp.ones((1, 8), jnp.int32),) * 2  # (source, target)

  def extra_metrics(self, trainer, params, split: str, validation: bool) -> dict:
    """BLEU of the generated translations (validation: of the first
    translation.val_bleu_sentences pairs; none when it is -1). A test pass (and eval.py)
    translates the whole split and the lead process writes its translations to
    WORKDIR/SPLIT_translations.jsonl."""
    run = trainer.run
    limit = run.config.translation.val_bleu_sentences if validation else 0
    if limit < 0:
      return {}
    path = None
    if not validation and run.lead:
      path = run.workdir / translation_eval.TRANSLATIONS_FILE.format(split=split)
    return translation_eval.bleu_metrics(trainer, params, split, limit,
                                         translations_path=path)

  def extra_programs(self, trainer, batch: dict) -> list:
    """Beam search over the longest bucket's sources."""
    run = trainer.run
    max_len = translation_eval.generation_length(run.config, batch["source"].shape[1])
    generate = translation_eval.generator(run)
    return [("generate", lambda p, s: generate(p, s, max_len),
             (trainer.abstract_state.params, batch["source"]))]

  def summary_extras(self, run, test: dict) -> dict:
    """Copying the source's BLEU (the floor a model must beat), how BLEU was computed
    (sacreBLEU's signature, the tokenised BLEU's method), the file of test translations
    and how many pairs of each split did not fit the model."""
    tgt = run.source.provenance()["tgt"]
    return {"copy_bleu": test["copy_bleu"],
            "bleu_signature": translation_eval.bleu_signature(translation_eval.SACREBLEU),
            "tokenized_bleu_method": translation_eval.tokenized_bleu_method(tgt),
            "test_translations": translation_eval.TRANSLATIONS_FILE.format(split="test"),
            "test_truncated_pairs": {s: run.source.pairs(s).truncated
                                     for s in ("train", "validation", "test")}}


register_workload(Translation())
