"""ListOps with Luna: the reference settings of the Luna LRA runs.

Full run (Luna-16; add --config.model.luna.proj_len=128 or 256 for Luna-128/256):
    python train.py --config configs/lra_listops.py --workdir runs/listops
  Published (Luna paper, test accuracy): Luna-16 37.43, Luna-128 38.01, Luna-256 37.98.
  Not yet reproduced here: that needs 5k steps at 2001 tokens on an accelerator.

CPU variant (the README's main job; generates ListOps on first use, no download):
    python train.py --config configs/lra_listops.py:cpu
  Measured: test accuracy 0.330 against a majority-class rate of 0.178, 1 min 35 s on a
  2-core CPU, generating the data included (docs/lra.md gives the run).

Self-pre-trained CPU variant (500 MLM steps on the training inputs, then the cpu variant's
500 steps from that encoder):
    python train.py --config configs/lra_listops.py:cpu_spt --workdir runs/listops_spt
  Measured (on the data of the earlier, sequential ListOps generator, with BERT init):
  masked-token test perplexity 11.98, then test accuracy 0.182 (the majority class) in
  2 min 45 s: at this budget pre-training does not help (see docs/pretraining.md).
"""

from luna_jax.training.config import base_config
from luna_jax.training.variants import apply_variant, self_pretrained

# The authors' --save-interval-updates: validate (and keep the best checkpoint) every 20
# updates.
EVAL_EVERY = 20


def get_config(variant: str = ""):
  c = base_config()
  c.task = "listops"
  c.max_len = 2001  # ListOps < 2000 tokens + CLS + EOS (Luna: 2001 positions)
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 1, 512, 8, 2048, 2048
  m.dropout, m.attention_dropout = 0.1, 0.1
  m.init_style = "bert"
  o = c.optimizer
  o.learning_rate, o.warmup_steps, o.weight_decay = 1e-4, 1000, 1e-4
  c.batch_size, c.num_train_steps = 32, 5000
  # Tied: the latest checkpoint then always holds the best-so-far record (fairseq saves both).
  c.eval_every = c.checkpoint_every = EVAL_EVERY
  return apply_variant(c, variant, VARIANTS, __file__)


def cpu(c):
  """5,000 generated examples at 512 tokens, a 2-layer width-64 model, 500 steps."""
  m, o = c.model, c.optimizer
  c.generate_examples = 5000
  c.generate_eval_examples = 500
  c.data_dir = "~/lra_data_cpu"  # the small generated set, apart from the full one
  c.max_len = 512  # truncated: the root operator (position 1) still fixes much of the label
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 2, 64, 4, 128, 128
  m.dropout = m.attention_dropout = 0.0  # a short run on 5k examples: no regularisation
  # At width 64 the reference's N(0, 0.02) init keeps this run at the majority class
  # (seeds 0, 1, 2; also with lr 1e-3 or 1,000 steps); xavier leaves the plateau with
  # each of those seeds (test accuracy 0.330, 0.338, 0.360).
  m.init_style = "xavier"
  o.learning_rate, o.warmup_steps = 3e-3, 50
  c.batch_size, c.num_train_steps = 32, 500
  c.log_every, c.eval_every, c.checkpoint_every = 20, 100, 100
  c.max_eval_batches = 16


VARIANTS = {"cpu": cpu, "cpu_spt": self_pretrained(cpu, steps=500)}
