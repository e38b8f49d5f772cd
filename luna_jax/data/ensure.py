"""Generating a task's data on first use (`ensure_prepared`).

It looks for the prepared folder (`prepared`) and imports the build code (`build`, the
tfds builders) only when it has to generate, so a run on prepared data never loads that
code. It belongs to the build side: it and `build` import `prepared`, which imports
neither of them.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Optional

from luna_jax.data.prepared import dataset_folder, is_prepared, not_prepared_error
from luna_jax.data.tasks import Task, get_task


def ensure_prepared(
    task: Task | str,
    data_dir,
    *,
    generate: int = 0,
    num_eval_examples: Optional[int] = None,
    seed: int = 0,
    progress: bool = True,
    lead: bool = True,
    barrier: Optional[Callable[[], None]] = None,
) -> pathlib.Path:
  """The task's dataset folder, generated on first use if allowed; else the error with
  the exact prepare command.

  Args:
    generate: training examples to generate when the task is not prepared and its
      record has a generator (ListOps, Pathfinder); 0 never generates.
    num_eval_examples: validation and test examples each (see `generated_sizes`).
    lead: this process generates. With several processes on one shared data_dir,
      pass True to one of them only.
    barrier: called by every process after the lead's generation whenever `generate`
      applies (prepared or not, so all processes call it alike), e.g. a multi-host sync.
  """
  task = get_task(task) if isinstance(task, str) else task
  data_dir = pathlib.Path(data_dir).expanduser()
  if generate > 0 and task.generator is not None:
    if lead and not is_prepared(task, data_dir):
      print(f"{task.generator.title} is not prepared in {data_dir}: generating {generate} "
            f"training examples (seed {seed}) ...", flush=True)
      from luna_jax.data.build import prepare  # only generating needs the build code

      prepare(task, data_dir, source="generate", num_examples=generate,
              num_eval_examples=num_eval_examples, seed=seed, progress=progress)
    if barrier is not None:
      barrier()
  if not is_prepared(task, data_dir):
    raise not_prepared_error(task, data_dir)
  return dataset_folder(task, data_dir)
