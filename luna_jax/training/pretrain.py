"""Self-pre-training (Amos et al., "Never Train from Scratch", ICLR 2024) in one run:
pre-train the task's encoder on its own training inputs (labels unused) with masked or
causal language modelling in WORKDIR/pretrain, then train the classifier from those
weights in WORKDIR (`init_from`). Both stages resume: a finished pre-training stage
(its summary.json at the configured steps) is not run again.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from luna_jax.training.run import SUMMARY_FILE, workdir_path

PRETRAIN_DIR = "pretrain"


def pretraining_config(config):
  """The pre-training stage of `config` (config.pretrain's objective, steps and rates)."""
  p = config.pretrain
  pre = config.copy_and_resolve_references()
  pre.objective = p.objective
  pre.num_train_steps = p.num_train_steps
  if p.learning_rate:
    pre.optimizer.learning_rate = p.learning_rate
  if p.warmup_steps >= 0:
    pre.optimizer.warmup_steps = p.warmup_steps
  if p.eval_every:
    pre.eval_every = p.eval_every
  pre.pretrain.objective = ""
  return pre


def finetuning_config(config, pretrain_workdir):
  """The classification stage: `config` started from the pre-trained workdir."""
  ft = config.copy_and_resolve_references()
  ft.pretrain.objective = ""
  ft.init_from = str(pretrain_workdir)
  return ft


def pretrain_then_finetune(config, workdir, train: Callable, *,
                           step_callback: Optional[Callable] = None) -> dict:
  """Runs both stages with `train` (train_and_evaluate); the summary is the fine-tuning
  run's with the pre-training summary under "pretrain"."""
  pre_dir = workdir_path(workdir) / PRETRAIN_DIR
  pre = pretraining_config(config)
  done = pre_dir / SUMMARY_FILE
  if done.is_file() and json.loads(done.read_text()).get("steps") == pre.num_train_steps:
    pre_summary = json.loads(done.read_text())
    print(f"Pre-training already finished in {pre_dir}.", flush=True)
  else:
    print(f"Pre-training ({pre.objective}, {pre.num_train_steps} steps) in {pre_dir}.",
          flush=True)
    pre_summary = train(pre, pre_dir, step_callback=step_callback)
  summary = train(finetuning_config(config, pre_dir), workdir, step_callback=step_callback,
                  extra_summary={"pretrain": pre_summary})
  return summary
