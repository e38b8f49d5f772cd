"""Path-X (Pathfinder 128 x 128, hard subset, 16,386 positions) with Luna.

There is no Luna reference for Path-X (every model of the LRA paper stays at chance, 50%);
this uses the Pathfinder-32 settings at the longer length: batch 256, 62,500 steps and a
validation every epoch (160,000 / 256 = 625 steps; the same 80/10/10 split of 200,000).
Prepare once, from the LRA release or generated:
    python -m luna_jax.data prepare pathx --data_dir ~/lra_data --release_dir ~/lra_release
Full run:
    python train.py --config configs/lra_pathx.py --workdir runs/pathx
CPU variant (400 generated images, made in ~/lra_data_cpu on first use; demonstrates the
pipeline, not the task):
    python train.py --config configs/lra_pathx.py:cpu --workdir runs/pathx_cpu
"""

from configs import lra_pathfinder
from luna_jax.training.variants import apply_variant


def get_config(variant: str = ""):
  c = lra_pathfinder.get_config()
  c.task = "pathx"
  c.max_len = 128 * 128 + 2  # 16,384 pixels + CLS + EOS
  return apply_variant(c, variant, VARIANTS, __file__)


def cpu(c):
  """Pathfinder's cpu variant with batch 8, 50 steps and 4 validation batches."""
  lra_pathfinder.cpu(c)
  c.generate_examples = 400  # and 50 validation and 50 test images (1/8 each)
  c.generate_eval_examples = 0
  c.batch_size, c.num_train_steps, c.max_eval_batches = 8, 50, 4
  c.log_every, c.eval_every, c.checkpoint_every = 10, 25, 25


VARIANTS = {"cpu": cpu}
