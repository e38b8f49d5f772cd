"""Byte-level AAN document retrieval with Luna: the reference settings of the Luna LRA runs.

Prepare once from the LRA release (tsv_data/new_aan_pairs.*.tsv):
    python -m luna_jax.data prepare retrieval --data_dir ~/lra_data --release_dir ~/lra_release
Full run (two towers sharing one encoder; CLS vectors concatenated as in Luna,
--config.model.pair_combination=nli for [u, v, u*v, u-v]):
    python train.py --config configs/lra_retrieval.py --workdir runs/retrieval
  Published (Luna paper, test accuracy): Luna-16 79.38, Luna-256 79.56. Not yet reproduced here.
CPU variant:
    python train.py --config configs/lra_retrieval.py:cpu --workdir runs/retrieval_cpu
"""

from luna_jax.training.config import base_config
from luna_jax.training.variants import apply_variant

# The authors' --save-interval-updates: validate (and keep the best checkpoint) every 2,000
# updates.
EVAL_EVERY = 2000


def get_config(variant: str = ""):
  c = base_config()
  c.task = "retrieval"
  c.max_len = 4002  # per document: 4K bytes + CLS + EOS
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 4, 128, 4, 512, 512
  m.dropout, m.attention_dropout = 0.1, 0.1
  o = c.optimizer
  o.learning_rate, o.warmup_steps, o.weight_decay = 5e-4, 8000, 1e-4
  c.batch_size, c.num_train_steps = 32, 20000
  c.eval_every = c.checkpoint_every = EVAL_EVERY  # tied, as fairseq saves at each validation
  return apply_variant(c, variant, VARIANTS, __file__)


def cpu(c):
  """512 bytes per document, a 2-layer width-64 model, 400 steps."""
  m, o = c.model, c.optimizer
  c.max_len = 512
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 2, 64, 4, 128, 128
  o.learning_rate, o.warmup_steps = 1e-3, 100
  c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 400, 20, 100, 100
  c.max_eval_batches = 16


VARIANTS = {"cpu": cpu}
