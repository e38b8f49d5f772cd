"""LRA data: one record per task (`tasks`), reading prepared datasets (`prepared`,
`pipeline`) and building them (`build`, with the `builders`, readers and generators;
`ensure` generates on first use).

    python -m luna_jax.data prepare TASK --data_dir DIR   # see build.py

Reading never imports the build code; `prepare` loads it on first use.
"""

import importlib

from luna_jax.data.ensure import ensure_prepared
from luna_jax.data.prepared import data_source, describe_provenance, is_prepared, read_provenance
from luna_jax.data.readers import DataFormatError
from luna_jax.data.tasks import (TASK_NAMES, Task, generated_sizes, get_task, majority_rate,
                                 register_task, task_names)

__all__ = ["DataFormatError", "InputConfig", "TASK_NAMES", "Task", "data_source",
           "describe_provenance", "ensure_prepared", "generated_sizes", "get_task",
           "is_prepared", "majority_rate", "make_dataset", "prepare", "read_provenance",
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
