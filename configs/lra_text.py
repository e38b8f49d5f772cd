"""Byte-level IMDb (Text) with Luna: the reference settings of the Luna LRA runs.

Prepare once (downloads aclImdb_v1.tar.gz, or --source manual --manual_dir DIR):
    python -m luna_jax.data prepare text --data_dir ~/lra_data
Full run (Luna-16; --config.model.luna.proj_len=128 or 256 for Luna-128/256):
    python train.py --config configs/lra_text.py --workdir runs/text
  Published (Luna paper, test accuracy): Luna-16 65.74, Luna-256 65.78. Not yet reproduced here.
CPU variant (same data, 1K bytes, a small model; minutes on 2 cores):
    python train.py --config configs/lra_text.py:cpu --workdir runs/text_cpu
"""

from luna_jax.training.config import base_config
from luna_jax.training.variants import apply_variant

# The authors' --save-interval-updates: validate (and keep the best checkpoint) every 100
# updates.
EVAL_EVERY = 100


def get_config(variant: str = ""):
  c = base_config()
  c.task = "text"
  c.max_len = 4002  # 4K bytes + CLS + EOS (Luna: 4002 positions)
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 4, 256, 4, 1024, 1024
  m.dropout, m.attention_dropout = 0.3, 0.3
  m.init_style = "bert"
  o = c.optimizer
  o.learning_rate, o.warmup_steps, o.weight_decay = 5e-5, 8000, 1e-4
  c.batch_size, c.num_train_steps = 32, 20000
  c.eval_every = c.checkpoint_every = EVAL_EVERY  # tied, as fairseq saves at each validation
  return apply_variant(c, variant, VARIANTS, __file__)


def cpu(c):
  """1K bytes, a 2-layer width-64 model, 400 steps."""
  m, o = c.model, c.optimizer
  c.max_len = 1024
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 2, 64, 4, 128, 128
  m.dropout = m.attention_dropout = 0.1
  o.learning_rate, o.warmup_steps = 1e-3, 100
  c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 400, 20, 100, 100
  c.max_eval_batches = 16


VARIANTS = {"cpu": cpu}
