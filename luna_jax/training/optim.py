"""AdamW with the reference schedules."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def learning_rate_schedule(o, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up from warmup_init_lr to learning_rate over warmup_steps, then
  inverse-sqrt decay (fairseq: lr * sqrt(warmup / step)) or cosine to zero."""
  warmup = max(1, o.warmup_steps)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32) + 1.0  # fairseq counts updates from 1
    warm = o.warmup_init_lr + (o.learning_rate - o.warmup_init_lr) * step / warmup
    if o.schedule == "inverse_sqrt":
      decay = o.learning_rate * jnp.sqrt(warmup / step)
    else:
      progress = jnp.clip((step - warmup) / max(1, num_train_steps - warmup), 0.0, 1.0)
      decay = 0.5 * o.learning_rate * (1 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup, warm, decay)

  return schedule


def make_optimizer(o, num_train_steps: int) -> optax.GradientTransformation:
  adamw = optax.adamw(learning_rate_schedule(o, num_train_steps), b1=o.b1, b2=o.b2,
                      eps=o.eps, weight_decay=o.weight_decay)
  if o.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), adamw)
  return adamw
