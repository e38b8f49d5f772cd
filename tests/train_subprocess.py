"""Runs train_and_evaluate in a fresh process: argv = config JSON, workdir
[, coordinator address, number of processes, process id]. Used by test_training.py."""

import json
import sys

import jax
from absl import logging

logging.set_verbosity(logging.WARNING)

if len(sys.argv) > 3:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))

import ml_collections  # noqa: E402

from luna_jax.training import train_and_evaluate  # noqa: E402

config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
workdir = sys.argv[2]
print(f"devices: {jax.device_count()} processes: {jax.process_count()}", flush=True)
train_and_evaluate(config, workdir)
