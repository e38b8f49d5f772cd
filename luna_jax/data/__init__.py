"""LRA data: official-format readers, generators, tfds builders and grain pipelines.

    python -m luna_jax.data prepare TASK --data_dir DIR   # see prepare.py
"""

from luna_jax.data.pipeline import InputConfig, data_source, make_dataset, to_tokens
from luna_jax.data.prepare import (describe_provenance, generated_sizes, is_prepared, prepare,
                                   read_provenance)
from luna_jax.data.readers import DataFormatError
from luna_jax.data.tasks import TASK_NAMES, Task, get_task, majority_rate

__all__ = ["DataFormatError", "InputConfig", "TASK_NAMES", "Task", "data_source",
           "describe_provenance", "generated_sizes", "get_task", "is_prepared", "majority_rate", "make_dataset",
           "prepare", "read_provenance", "to_tokens"]
