"""Trains a model on an LRA task.

    python train.py --config configs/lra_text.py --workdir runs/text [--config.x=y ...]
    python train.py          # Luna on generated ListOps, the cpu variant (minutes on a laptop)

Several processes (a pod or several GPU hosts): pass --coordinator_address, --num_processes
and --process_id to each, or --distributed to let jax.distributed.initialize() detect them.
"""

from absl import flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/lra_listops.py:cpu", "configuration file (file.py or file.py:VARIANT)",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics and summary; resumed "
                               "if it holds a checkpoint (default runs/<task>_<mechanism>)")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "processes in a multi-host run")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "this process's index")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() "
                                 "with auto-detection (Cloud TPU pods, SLURM)")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax

  if _NUM_PROCESSES.value > 1:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()
  from luna_jax import cli
  from luna_jax.training import train_and_evaluate

  config = cli.config_value(_CONFIG)
  workdir = _WORKDIR.value or f"runs/{config.task}_{config.model.name}"
  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  from luna_jax import cli

  cli.run(main)
