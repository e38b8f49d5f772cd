"""Grayscale CIFAR-10 as a 1,024-pixel sequence (Image) with Luna: the Luna LRA settings.

Prepare once (downloads cifar-10-binary.tar.gz, or --source manual --manual_dir DIR):
    python -m luna_jax.data prepare image --data_dir ~/lra_data
Full run:
    python train.py --config configs/lra_image.py --workdir runs/image
  Published (Luna paper, test accuracy): Luna-16 46.39, Luna-256 47.86. Not yet reproduced here.
Pixels are tokens v + 1, so black pixels are not padding (LRA's input > 0 mask made them
padding). Sequences are 1,024 pixels + CLS + EOS = 1,026 positions (Luna used 1,024).
CPU variant:
    python train.py --config configs/lra_image.py:cpu --workdir runs/image_cpu
"""

from luna_jax.training.config import base_config
from luna_jax.training.variants import apply_variant

TRAIN_EXAMPLES = 45_000  # CIFAR-10 train[:90%]
BATCH_SIZE = 256
# The authors validate (and keep the best checkpoint) once per epoch: ceil(45,000 / 256) =
# 176 updates (fairseq ends an epoch with a partial batch; our batches run on across
# epochs, so 176 steps are one epoch and 56 examples).
STEPS_PER_EPOCH = -(-TRAIN_EXAMPLES // BATCH_SIZE)


def get_config(variant: str = ""):
  c = base_config()
  c.task = "image"
  c.max_len = 1026  # 1,024 pixels + CLS + EOS
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 1, 64, 8, 128, 128
  m.dropout, m.attention_dropout = 0.3, 0.1
  o = c.optimizer
  o.learning_rate, o.warmup_steps, o.weight_decay = 5e-3, 4000, 0.0
  c.batch_size, c.num_train_steps = BATCH_SIZE, 35000
  c.eval_every = c.checkpoint_every = STEPS_PER_EPOCH  # tied: fairseq saves at each validation
  return apply_variant(c, variant, VARIANTS, __file__)


def cpu(c):
  """A narrower model, batch 32 and 400 steps."""
  m, o = c.model, c.optimizer
  m.d_model, m.num_heads, m.ffn_dim, m.classifier_hidden = 32, 4, 64, 64
  o.learning_rate, o.warmup_steps = 1e-3, 100
  c.batch_size, c.num_train_steps = 32, 400
  c.log_every, c.eval_every, c.checkpoint_every, c.max_eval_batches = 20, 100, 100, 16


VARIANTS = {"cpu": cpu}
