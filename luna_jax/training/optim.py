"""The optimiser a config describes: AdamW (the default) or Apollo (`apollo`, the Luna
authors' WMT optimiser), its learning-rate schedule and gradient clipping.

Schedules (optimizer.schedule), as fairseq's --lr-scheduler:
  inverse_sqrt  linear warm-up, then lr * sqrt(warmup / step)
  cosine        linear warm-up, then half a cosine to 0 at the last step
  milestone     fairseq-apollo's milestone scheduler: linear warm-up, then the lr times
                gamma once the update count reaches each milestone
Clipping (optimizer.grad_clip_norm > 0; optimizer.clip_mode, fairseq-apollo's
--clip-mode): "total" scales all gradients by one factor so that their global norm is at
most the bound (optax.clip_by_global_norm); "each" bounds each parameter's gradient norm
on its own (fairseq-apollo's utils.clip_param_grad_norm_).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from luna_jax.training.apollo import apollo, warmup_learning_rate

OPTIMIZERS = ("adamw", "apollo")
SCHEDULES = ("inverse_sqrt", "cosine", "milestone")
CLIP_MODES = ("total", "each")


def scheduler(o, num_train_steps: int) -> optax.Schedule:
  """The schedule of optimizer.schedule, the lr fairseq's scheduler sets for each
  update (what Apollo's own warm-up, if any, overrides: `learning_rate_schedule`)."""
  if o.schedule == "milestone":
    return milestone_schedule(o.learning_rate, warmup=o.warmup_steps,
                              warmup_init_lr=o.warmup_init_lr, milestones=o.milestones,
                              gamma=o.gamma)
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


def milestone_schedule(learning_rate: float, *, warmup: int, warmup_init_lr: float,
                       milestones, gamma: float) -> optax.Schedule:
  """fairseq-apollo's MilestoneScheduler (fairseq/optim/lr_scheduler/
  milestone_lr_scheduler.py): the lr of update c + 1 is what its step_update(c) sets
  after c updates. While c <= warmup: warmup_init_lr + c * (lr - warmup_init_lr) /
  warmup (no warm-up: lr from the start); after, the lr the warm-up ended on, times
  gamma at each milestone m with warmup < m <= c (the scheduler multiplies its last lr;
  a milestone inside the warm-up never fires)."""
  if warmup <= 0:
    warmup_init_lr, step_size = learning_rate, 0.0
  else:
    warmup_init_lr = max(warmup_init_lr, 0.0)  # the scheduler's: a negative start is 0
    step_size = (learning_rate - warmup_init_lr) / warmup
  decays = sorted(m for m in set(milestones) if m > warmup)

  def schedule(count):
    c = jnp.asarray(count, float)
    warm = warmup_init_lr + c * step_size
    after = jnp.asarray(warmup_init_lr + max(warmup, 0) * step_size, float)
    for m in decays:  # one multiplication per milestone passed, as the scheduler's
      after = jnp.where(c >= m, after * gamma, after)
    return jnp.where(c <= warmup, warm, after)

  return schedule


def learning_rate_schedule(o, num_train_steps: int) -> optax.Schedule:
  """The learning rate the optimiser applies at each update count (0-based): the
  scheduler's, with Apollo's own warm-up where optimizer.apollo.warmup_steps > 0."""
  schedule = scheduler(o, num_train_steps)
  if o.get("name", "adamw") != "apollo" or o.apollo.warmup_steps <= 0:
    return schedule
  return warmup_learning_rate(schedule, warmup=o.apollo.warmup_steps,
                              init_lr=_apollo_init_lr(o), base_lr=o.learning_rate)


def _apollo_init_lr(o) -> float:
  return o.apollo.init_lr if o.apollo.init_lr >= 0 else o.learning_rate / 1000


def clip_each_by_norm(max_norm: float) -> optax.GradientTransformation:
  """Each leaf's gradient times min(1, max_norm / (its L2 norm + 1e-6)), as fairseq-
  apollo's clip_param_grad_norm_ (the norm in float32 at least)."""

  def update(updates, state, params=None):
    del params

    def clip(g):
      norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.promote_types(g.dtype, jnp.float32)))))
      coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
      return (g * coef).astype(g.dtype)

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _clipping(o):
  if o.grad_clip_norm <= 0:
    return None
  if o.get("clip_mode", "total") == "each":
    return clip_each_by_norm(o.grad_clip_norm)
  return optax.clip_by_global_norm(o.grad_clip_norm)


def make_optimizer(o, num_train_steps: int) -> optax.GradientTransformation:
  """optimizer.name's transformation, after gradient clipping where it is on."""
  if o.get("name", "adamw") == "apollo":
    a = o.apollo
    opt = apollo(scheduler(o, num_train_steps), beta=a.beta, eps=a.eps, rebound=a.rebound,
                 sigma=a.sigma, warmup=a.warmup_steps, init_lr=_apollo_init_lr(o),
                 base_lr=o.learning_rate, weight_decay=o.weight_decay,
                 weight_decay_type=a.weight_decay_type or None)
  else:
    opt = optax.adamw(learning_rate_schedule(o, num_train_steps), b1=o.b1, b2=o.b2,
                      eps=o.eps, weight_decay=o.weight_decay)
  clip = _clipping(o)
  return optax.chain(clip, opt) if clip is not None else opt
