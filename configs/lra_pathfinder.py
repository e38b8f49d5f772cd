"""Pathfinder (32 x 32, hard subset) with Luna: the reference settings of the Luna LRA runs.

Prepare once, from the LRA release or generated (no download):
    python -m luna_jax.data prepare pathfinder32 --data_dir ~/lra_data --release_dir ~/lra_release
    python -m luna_jax.data prepare pathfinder32 --data_dir ~/lra_data      # 200k generated
Full run:
    python train.py --config configs/lra_pathfinder.py --workdir runs/pathfinder
  Published (Luna paper, test accuracy): Luna-16 78.36, Luna-256 78.55. Not yet reproduced here.
CPU variant (generate a small set first):
    python -m luna_jax.data prepare pathfinder32 --data_dir ~/lra_data_cpu --num_examples 4000
    python train.py --config configs/lra_pathfinder.py:cpu --workdir runs/pathfinder_cpu
"""

from luna_jax.training.config import base_config


def get_config(variant: str = ""):
  c = base_config()
  c.task = "pathfinder32"
  c.max_len = 1026  # 1,024 pixels + CLS + EOS
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 1, 128, 4, 128, 256
  m.dropout, m.attention_dropout = 0.2, 0.1
  m.pooling = "mean"
  o = c.optimizer
  o.learning_rate, o.warmup_steps, o.weight_decay = 1e-3, 4000, 0.0
  c.batch_size, c.num_train_steps = 512, 62500
  c.eval_every = c.checkpoint_every = 2500
  if variant == "cpu":
    c.data_dir = "~/lra_data_cpu"
    m.d_model, m.ffn_dim, m.classifier_hidden = 32, 64, 64
    c.batch_size, c.num_train_steps = 32, 400
    o.warmup_steps = 100
    c.log_every, c.eval_every, c.checkpoint_every, c.max_eval_batches = 20, 100, 100, 16
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of lra_pathfinder.py; known: cpu")
  m.linformer.max_len = c.max_len
  return c
