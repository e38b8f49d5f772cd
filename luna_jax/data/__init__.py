"""LRA data: one record per task (`tasks`), reading prepared datasets (`prepared`,
`pipeline`) and building them (`build`, with the `builders`, readers and generators;
`ensure` generates on first use).

    python -m luna_jax.data prepare TASK --data_dir DIR   # see build.py

Reading never imports the build code; `prepare` loads it on first use.

  tasks                one Task record per LRA task (`register_task`): vocabulary, splits,
                       release files, generator, archive
  source               the contract of a run's data source (vocab, batches, batch_spec,
                       provenance)
  prepared, pipeline   the read path: a prepared dataset -> grain batches (no build code,
                       no TensorFlow); `TaskSource`, an LRA task as a run's data source
  build, builders      the build path: `prepare` and the tfds builders
  readers              readers of the official formats, with file-and-line errors
  vocab                the fixed vocabularies (0 is padding everywhere)
  the generators       ListOps, and Pathfinder / Path-X (drawing as the original does), run
                       on every core in order (`parallel`)
  text                 the tokenisers and folder records corpora and parallel text share
  corpus               text corpora for language modelling: reading, tokenising, rows,
                       `CorpusSource`
  translation          parallel text: preparing, pairs, token batches from length buckets,
                       `ParallelSource`
  toy_translation      the generated reordering task of the offline translation runs
  __main__             `python -m luna_jax.data prepare | prepare_corpus |
                       prepare_translation`
"""

import importlib

from luna_jax.data.ensure import ensure_prepared
from luna_jax.data.prepared import data_source, describe_provenance, is_prepared, read_provenance
from luna_jax.data.readers import DataFormatError
from luna_jax.data.tasks import Task, generated_sizes, get_task, register_task, task_names

__all__ = ["DataFormatError", "InputConfig", "Task", "data_source",
           "describe_provenance", "ensure_prepared", "generated_sizes", "get_task",
           "is_prepared", "make_dataset", "prepare", "read_provenance",
           "register_task", "task_names", "to_tokens"]


_PIPELINE = ("InputConfig", "make_dataset", "to_tokens")


def __getattr__(name: str):
  """The pipeline (grain), `prepare` and the build modules, imported on first use: a
  generator's worker process imports this package, and needs none of them."""
  if name in _PIPELINE:
    return getattr(importlib.import_module(f"{__name__}.pipeline"), name)
  if name == "prepare":
    return importlib.import_module(f"{__name__}.build").prepare
  if name in ("build", "builders"):
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
