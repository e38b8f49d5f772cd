"""Language modelling of a prepared corpus (`python -m luna_jax.data prepare_corpus`):
masked (mlm, the default) or causal (clm) pre-training. Its keys: corpus_dir and
pack_documents.
"""

from __future__ import annotations

from luna_jax import errors, registry
from luna_jax.data.corpus import CorpusSource
from luna_jax.training import model_config
from luna_jax.training.objectives import LanguageModelling
from luna_jax.training.workloads.base import (Devices, Workload, check_rows, objective_name,
                                              register_workload)


class LanguageModel(Workload):
  """task=corpus: a masked or causal language model of config.corpus_dir's documents."""

  name = "language_model"
  objectives = ("mlm", "clm")

  def task_names(self) -> tuple[str, ...]:
    return ("corpus",)

  def add_config(self, c) -> None:
    c.corpus_dir = ""  # a folder made by `python -m luna_jax.data prepare_corpus`
    c.pack_documents = False  # several documents per row, kept apart by segment ids
    #                           (mixers that allow it: transformer); False: one per row

  def check(self, config, devices: Devices) -> None:
    errors.require(objective_name(config, self) in self.objectives, "a corpus has no "
                   "labels: set objective=mlm (bidirectional) or objective=clm (with "
                   "model.causal=True).")
    errors.require(bool(config.corpus_dir), "task=corpus needs corpus_dir, a folder made "
                   "by `python -m luna_jax.data prepare_corpus`.")
    check_rows(config, devices)
    if config.pack_documents:
      reason = registry.get_mixer(config.model.name).no_segments_because
      errors.require(not reason, f"pack_documents=True needs a mixer that keeps the "
                     f"documents of a row apart; model.name={config.model.name!r} cannot: "
                     f"{reason} Set pack_documents=False (one document per row).")

  def source(self, config, compile_only: bool = False) -> CorpusSource:
    del compile_only
    return CorpusSource(config.corpus_dir, config.max_len, config.add_cls,
                        config.pack_documents)

  def build_model(self, config, source: CorpusSource):
    return model_config.language_model(config, source.vocab)

  def objective(self, config, source: CorpusSource):
    return LanguageModelling.of(objective_name(config, self), source.vocab, config.mlm)


register_workload(LanguageModel())
