"""LRA data: official-format readers, generators, tfds builders and grain pipelines.

    python -m luna_jax.data prepare TASK --data_dir DIR   # see prepare.py
"""

from luna_jax.data.pipeline import InputConfig, data_source, make_dataset, to_tokens
from luna_jax.data.prepare import is_prepared, prepare
from luna_jax.data.readers import DataFormatError
from luna_jax.data.tasks import TASK_NAMES, Task, get_task, majority_rate

__all__ = ["DataFormatError", "InputConfig", "TASK_NAMES", "Task", "data_source",
           "get_task", "is_prepared", "majority_rate", "make_dataset", "prepare", "to_tokens"]
