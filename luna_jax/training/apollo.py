"""Apollo (Ma 2020, "Apollo: An Adaptive Parameter-wise Diagonal Quasi-Newton Method for
Nonconvex Stochastic Optimization"), as an optax transformation: the optimiser of the Luna
authors' WMT runs (examples/luna/README.wmt.md in XuezheMax/fairseq-apollo).

A transcription of the authors' PyTorch `Apollo.step` (fairseq/optim/apollo.py; the same
class is optim/apollo.py in XuezheMax/apollo and fairseq/optim/apollo.py in
facebookresearch/mega). Per parameter tensor p with gradient g, at update t = 1, 2, ...
(m, B, d: the state `exp_avg_grad`, `approx_hessian` and `update`, all zeros at first):

    lr_t   = init_lr + (base_lr - init_lr) (t - 1) / warmup   while t - 1 < warmup,
             else the learning rate (a float or the schedule's value at t - 1)
    g      = g + weight_decay p                          (weight_decay_type "L2" only)
    alpha  = (1 - beta) / (1 - beta^t)                   (the bias correction)
    dg     = g - m;   m = m + alpha dg
    bound  = max |dg| ("belief") | sigma ("constant"; eps becomes eps / sigma)
    d      = d / (||d||_4 + eps);   v = d * d            (the previous update, normalised)
    B      = B + v (-alpha sum(dg / (||d||_4 + eps) * d) - sum(B * v))
    D      = max(|B|, bound)  (+ eps / alpha for "belief")
    d      = m / D  (+ weight_decay p, or weight_decay / mean(D) p for "stable")
    p      = p - lr_t d

Sums, norms and means run over the whole tensor (one leaf of the parameter tree, as one
torch parameter). `sigma` is the constant bound: 0.01 in the authors' later file (the
one with `rebound`); their earlier fairseq-apollo file, without `rebound`, clamps |B| at 1
and keeps eps as given, which is exactly `sigma=1.0`. The warm-up inside Apollo (`warmup`,
`init_lr`) is that of the later file; the WMT recipe warms up in its learning-rate
scheduler instead (warmup=0 here, `optim.learning_rate_schedule`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

REBOUNDS = ("constant", "belief")
WEIGHT_DECAY_TYPES = ("L2", "decoupled", "stable")


class ApolloState(NamedTuple):
  """count: the updates made; the other fields are trees shaped as the parameters."""

  count: jax.Array
  exp_avg_grad: optax.Updates
  approx_hessian: optax.Updates
  update: optax.Updates


def default_weight_decay_type(rebound: str) -> str:
  """The file's default when weight_decay_type is None: L2 with the constant bound,
  decoupled with the belief bound."""
  return "L2" if rebound == "constant" else "decoupled"


def check(*, learning_rate: float, beta: float, eps: float, rebound: str, sigma: float,
          warmup: int, init_lr: float, weight_decay: float,
          weight_decay_type: Optional[str]) -> None:
  """The file's argument checks (ValueError), plus sigma > 0."""
  if not learning_rate > 0:
    raise ValueError(f"Apollo's learning rate must be positive, got {learning_rate}.")
  if not eps >= 0:
    raise ValueError(f"Apollo's eps must be >= 0, got {eps}.")
  if not 0 <= beta < 1:
    raise ValueError(f"Apollo's beta must be in [0, 1), got {beta}.")
  if rebound not in REBOUNDS:
    raise ValueError(f"Apollo's rebound={rebound!r} is not one of {REBOUNDS}.")
  if not sigma > 0:
    raise ValueError(f"Apollo's sigma (the constant bound) must be positive, got {sigma}.")
  if not warmup >= 0:
    raise ValueError(f"Apollo's warmup must be >= 0, got {warmup}.")
  if not 0 <= init_lr <= learning_rate:
    raise ValueError(f"Apollo's init_lr must be in [0, learning rate {learning_rate}], got "
                     f"{init_lr}.")
  if not weight_decay >= 0:
    raise ValueError(f"Apollo's weight_decay must be >= 0, got {weight_decay}.")
  if weight_decay_type is not None and weight_decay_type not in WEIGHT_DECAY_TYPES:
    raise ValueError(f"Apollo's weight_decay_type={weight_decay_type!r} is not one of "
                     f"{WEIGHT_DECAY_TYPES}.")


def warmup_learning_rate(learning_rate: Union[float, optax.Schedule], *, warmup: int,
                         init_lr: float, base_lr: float) -> Callable:
  """The learning rate Apollo applies at update count c (0-based): the file's linear
  warm-up from init_lr to base_lr while c < warmup, then `learning_rate` (its value at c
  where it is a schedule, as fairseq's scheduler sets the group's lr each update)."""

  def schedule(count):
    c = jnp.asarray(count, float)  # float64 where x64 is enabled
    outer = learning_rate(count) if callable(learning_rate) else learning_rate
    outer = jnp.asarray(outer, float)
    if warmup <= 0:
      return outer
    warm = (base_lr - init_lr) * c / warmup + init_lr
    return jnp.where(c < warmup, warm, outer)

  return schedule


def apollo(learning_rate: Union[float, optax.Schedule], *, beta: float = 0.9,
           eps: float = 1e-4, rebound: str = "constant", sigma: float = 0.01,
           warmup: int = 0, init_lr: Optional[float] = None,
           base_lr: Optional[float] = None, weight_decay: float = 0.0,
           weight_decay_type: Optional[str] = None) -> optax.GradientTransformation:
  """Apollo as the authors' `Apollo.step` (see the module docstring).

  Args:
    learning_rate: a float, or a schedule of the update count (0-based).
    beta: the gradient average's coefficient.
    eps: added to the 4-norm of the previous update (and, for "belief", to the bound).
    rebound: "constant" (|B| bounded below by sigma) | "belief" (by max |g - m|).
    sigma: the constant bound (0.01 in the later file; 1.0 gives the earlier file).
    warmup: updates of Apollo's own linear warm-up (0: none, the learning rate as given).
    init_lr: the warm-up's first learning rate (None: base_lr / 1000, as the file).
    base_lr: the warm-up's last learning rate (None: learning_rate, which must then be
      a float).
    weight_decay: its coefficient; all parameters decay, as the file's one group.
    weight_decay_type: "L2" (added to the gradient) | "decoupled" (added to the update)
      | "stable" (decoupled, divided by the mean of the bounded |B|); None: L2 with the
      constant bound, decoupled with the belief one (the file's default).
  """
  if base_lr is None:
    if callable(learning_rate):
      raise ValueError("Apollo with a learning-rate schedule needs base_lr (the warm-up's "
                       "target, the file's lr).")
    base_lr = float(learning_rate)
  if init_lr is None:
    init_lr = base_lr / 1000
  if weight_decay_type is None:
    weight_decay_type = default_weight_decay_type(rebound)
  check(learning_rate=base_lr, beta=beta, eps=eps, rebound=rebound, sigma=sigma,
        warmup=warmup, init_lr=init_lr, weight_decay=weight_decay,
        weight_decay_type=weight_decay_type)
  lr_at = warmup_learning_rate(learning_rate, warmup=warmup, init_lr=init_lr,
                               base_lr=base_lr)
  l2 = weight_decay != 0 and weight_decay_type == "L2"
  decoupled = weight_decay != 0 and weight_decay_type != "L2"

  def init(params):
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
    return ApolloState(count=jnp.zeros((), jnp.int32), exp_avg_grad=zeros(),
                       approx_hessian=zeros(), update=zeros())

  def update(grads, state, params=None):
    if weight_decay != 0 and params is None:
      raise ValueError("Apollo with weight decay needs the parameters.")
    if params is None:
      params = grads  # unused: no weight decay reads them
    lr = lr_at(state.count)
    t = state.count + 1

    def leaf(g, p, m, b, d):
      dtype = g.dtype
      alpha = (1 - beta) / (1 - beta ** t.astype(dtype))
      if l2:
        g = g + weight_decay * p
      delta_grad = g - m
      if rebound == "belief":
        bound, eps_t = jnp.max(jnp.abs(delta_grad)), eps
      else:
        bound, eps_t = sigma, eps / sigma
      m = m + alpha * delta_grad
      denom = jnp.sum(jnp.abs(d) ** 4) ** 0.25 + eps_t
      d = d / denom
      v_sq = d * d
      delta = jnp.sum(delta_grad / denom * d) * -alpha - jnp.sum(b * v_sq)
      b = b + v_sq * delta
      denom = jnp.maximum(jnp.abs(b), bound)
      if rebound == "belief":
        denom = denom + eps_t / alpha
      d = m / denom
      if decoupled:
        decay = weight_decay / jnp.mean(denom) if weight_decay_type == "stable" else weight_decay
        d = d + decay * p
      return (-lr.astype(dtype) * d, m, b, d)

    treedef = jax.tree.structure(grads)
    trees = (grads, params, state.exp_avg_grad, state.approx_hessian, state.update)
    per_leaf = [leaf(*xs) for xs in zip(*(treedef.flatten_up_to(x) for x in trees), strict=True)]
    updates, m, b, d = (jax.tree.unflatten(treedef, [out[i] for out in per_leaf])
                        for i in range(4))
    return updates, ApolloState(count=t, exp_avg_grad=m, approx_hessian=b, update=d)

  return optax.GradientTransformation(init, update)
