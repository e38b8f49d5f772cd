"""The kinds of run, one module each (`base.Workload`): the LRA tasks (`lra`), language
modelling of a corpus (`language_model`) and translation (`translation`). Importing this
package registers them; `workload_of(config)` is the one that runs config.task.
"""

from luna_jax.training.workloads.base import (Devices, Workload, objective_name,
                                              register_workload, task_names,
                                              unregister_workload, workload_of, workloads)
from luna_jax.training.workloads import lra, language_model, translation  # noqa: F401  isort: skip

__all__ = ["Devices", "Workload", "objective_name", "register_workload", "task_names",
           "unregister_workload", "workload_of", "workloads"]
