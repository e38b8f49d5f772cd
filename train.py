"""Trains a model on an LRA task.

    python train.py --config configs/lra_text.py --workdir runs/text [--config.x=y ...]
    python train.py          # Luna on generated ListOps, the cpu variant (minutes on a laptop)

Several processes (a pod or several GPU hosts): pass --coordinator_address, --num_processes
and --process_id to each, or --distributed to let jax.distributed.initialize() detect them.

Compile only, for a TPU slice that is not here (needs the libtpu package, no TPU):
    python train.py --config configs/lra_text.py --compile_topology v5e-8 --workdir W
prints per-chip memory, FLOPs and compile time, writes W/compile_report.json and exits
with status 3 when the config does not fit (`luna_jax.training.aot`).

Exit status: 0 done; 2 a user error (one "error:" line: a bad config, a workdir in use or
not writable, a failed checkpoint save, ...); 75 stopped by SIGTERM or SIGINT after saving
a checkpoint (rerun the same command to resume); 130 a second Ctrl-C, at once.
"""

import sys

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
_COMPILE_TOPOLOGY = flags.DEFINE_string(
    "compile_topology", None, "compile only, for this TPU slice (MaxText's names: v5e-8, "
    "v4-8, v6e-8, v5e-16, ...) and report per-chip memory; needs libtpu, not a TPU")
_COMPILE_SLICES = flags.DEFINE_integer("compile_topology_num_slices", 1,
                                       "slices of --compile_topology")
EXIT_DOES_NOT_FIT = 3


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax

  if _COMPILE_TOPOLOGY.value:
    return compile_only()

  if _NUM_PROCESSES.value > 1:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()
  from luna_jax import cli
  from luna_jax.training import preemption, train_and_evaluate

  config = cli.config_value(_CONFIG)
  workdir = _WORKDIR.value or f"runs/{config.task}_{config.model.name}"
  try:
    train_and_evaluate(config, workdir)
  except preemption.Interrupted as e:
    print(e, flush=True)
    sys.exit(preemption.EXIT_INTERRUPTED)


def compile_only():
  import jax
  from ml_collections import config_flags

  from luna_jax import cli
  from luna_jax.training import aot

  jax.config.update("jax_platforms", "cpu")  # trace here; libtpu compiles for the slice
  config = cli.config_value(_CONFIG)
  workdir = _WORKDIR.value or f"runs/{config.task}_{config.model.name}"
  report = aot.report(config, _COMPILE_TOPOLOGY.value, _COMPILE_SLICES.value, workdir,
                      config_name=config_flags.get_config_filename(flags.FLAGS["config"]))
  print(aot.describe(report))
  print(f"Report: {workdir}/{aot.REPORT_FILE}")
  if not report["fits"]:
    sys.exit(EXIT_DOES_NOT_FIT)


if __name__ == "__main__":
  from luna_jax import cli

  cli.run(main)
