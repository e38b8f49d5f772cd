"""Apollo, the milestone schedule and per-parameter clipping against float64 NumPy
transcriptions of the authors' PyTorch code, written here step by step from the files
(not from luna_jax): fairseq/optim/apollo.py (the later file, with `rebound`, and the
earlier fairseq-apollo one, which clamps |B| at 1), fairseq/optim/lr_scheduler/
milestone_lr_scheduler.py and fairseq/utils.py's clip_param_grad_norm_."""

import jax
import numpy as np
import optax
import pytest

from luna_jax import errors
from luna_jax.training import optim
from luna_jax.training.apollo import apollo
from luna_jax.training.config import base_config, validate

STEPS = 50


class NumpyApollo:
  """Apollo.step for a list of float64 arrays. version="later": the file with `rebound`
  and `weight_decay_type` (the constant bound 0.01); "earlier": fairseq-apollo's file
  before `rebound` (|B| clamped at 1, eps unscaled, no warm-up of its own)."""

  def __init__(self, lr, *, beta=0.9, eps=1e-4, rebound="constant", warmup=0, init_lr=None,
               weight_decay=0.0, weight_decay_type=None, version="later"):
    if init_lr is None:
      init_lr = lr / 1000
    if weight_decay_type is None:
      weight_decay_type = "L2" if rebound == "constant" else "decoupled"
    self.group = dict(lr=lr, base_lr=lr, beta=beta, eps=eps, rebound=rebound,
                      warmup=warmup, init_lr=init_lr, weight_decay=weight_decay,
                      weight_decay_type=weight_decay_type)
    self.version = version
    self.state = {}

  def step(self, params, grads):
    group = self.group
    for i, (p, grad) in enumerate(zip(params, grads, strict=True)):
      state = self.state.setdefault(i, {})
      if not state:
        state["step"] = 0
        state["exp_avg_grad"] = np.zeros_like(p)
        state["approx_hessian"] = np.zeros_like(p)
        state["update"] = np.zeros_like(p)
      if state["step"] < group["warmup"]:
        curr_lr = ((group["base_lr"] - group["init_lr"]) * state["step"] / group["warmup"]
                   + group["init_lr"])
      else:
        curr_lr = group["lr"]
      if group["weight_decay"] != 0 and group["weight_decay_type"] == "L2":
        grad = grad + group["weight_decay"] * p
      beta, eps = group["beta"], group["eps"]
      exp_avg_grad, B, d_p = state["exp_avg_grad"], state["approx_hessian"], state["update"]
      state["step"] += 1
      bias_correction = 1 - beta ** state["step"]
      alpha = (1 - beta) / bias_correction
      delta_grad = grad - exp_avg_grad
      if self.version == "later":
        if group["rebound"] == "belief":
          rebound = np.max(np.abs(delta_grad))
        else:
          rebound = 0.01
          eps = eps / rebound
      exp_avg_grad += alpha * delta_grad
      denom = np.sum(np.abs(d_p) ** 4) ** 0.25 + eps
      d_p /= denom
      v_sq = d_p * d_p
      delta = np.sum(delta_grad / denom * d_p) * -alpha - np.sum(B * v_sq)
      B += v_sq * delta
      if self.version == "earlier":
        denom = np.maximum(np.abs(B), 1.0)
      elif group["rebound"] == "belief":
        denom = np.maximum(np.abs(B), rebound) + eps / alpha
      else:
        denom = np.maximum(np.abs(B), rebound)
      d_p[...] = exp_avg_grad / denom
      if group["weight_decay"] != 0 and group["weight_decay_type"] != "L2":
        if group["weight_decay_type"] == "stable":
          weight_decay = group["weight_decay"] / np.mean(denom)
        else:
          weight_decay = group["weight_decay"]
        d_p += weight_decay * p
      p -= curr_lr * d_p


def _problem():
  """A quadratic with noisy gradients on three tensors (a matrix, a vector, a scalar)."""
  rng = np.random.default_rng(0)
  shapes = [(4, 3), (3,), ()]
  draw = lambda f, s: np.asarray(f(size=s), np.float64)  # noqa: E731 (0-d arrays too)
  start = [draw(rng.normal, s) for s in shapes]
  curvature = [draw(lambda size: rng.uniform(0.1, 3.0, size=size), s) for s in shapes]
  target = [draw(rng.normal, s) for s in shapes]
  noise = [[0.3 * draw(rng.normal, s) for s in shapes] for _ in range(STEPS)]

  def grads(params, t):
    return [h * (p - x) + n
            for p, h, x, n in zip(params, curvature, target, noise[t], strict=True)]

  return start, grads


def _run_both(tx, reference):
  start, grads = _problem()
  ref_params = [p.copy() for p in start]
  params = {"w": start[0], "b": start[1], "s": start[2]}
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for t in range(STEPS):
    reference.step(ref_params, grads(ref_params, t))
    g = grads([np.asarray(params[k]) for k in ("w", "b", "s")], t)
    updates, state = update(dict(zip(("w", "b", "s"), g, strict=True)), state, params)
    params = optax.apply_updates(params, updates)
    ours = [np.asarray(params[k]) for k in ("w", "b", "s")]
    for name, a, b in zip(("w", "b", "s"), ours, ref_params, strict=True):
      scale = 1.0 + np.max(np.abs(b))
      assert np.max(np.abs(a - b)) <= 1e-12 * scale, (t, name, np.max(np.abs(a - b)))
  # The state to 1e-11 of its scale: `update` is m / max(|B|, bound) with a bound of 0.01,
  # so the last bits of m are magnified (3.7e-12 seen at worst; the parameters: 3.5e-13).
  for field in ("exp_avg_grad", "approx_hessian", "update"):
    ours = getattr(state, field)
    for i, k in enumerate(("w", "b", "s")):
      ref = reference.state[i][field]
      np.testing.assert_allclose(np.asarray(ours[k]), ref, rtol=0,
                                 atol=1e-11 * (1 + np.max(np.abs(ref))))
  assert int(state.count) == STEPS
  return ref_params


CASES = {
    "constant_L2": dict(weight_decay=1e-2),
    "constant_decoupled": dict(weight_decay=1e-2, weight_decay_type="decoupled"),
    "constant_stable": dict(weight_decay=1e-2, weight_decay_type="stable"),
    "belief_default_decoupled": dict(rebound="belief", weight_decay=1e-2),
    "belief_L2": dict(rebound="belief", weight_decay=1e-2, weight_decay_type="L2"),
    "belief_stable": dict(rebound="belief", weight_decay=1e-2, weight_decay_type="stable"),
    "no_weight_decay_beta_0.5": dict(beta=0.5, eps=1e-3),
    "warmup_default_init_lr": dict(warmup=10),
    "warmup_init_lr": dict(warmup=20, init_lr=1e-3, rebound="belief", weight_decay=1e-3),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_apollo_matches_the_later_file_step_by_step_for_50_steps(case):
  kw = CASES[case]
  lr = 0.005  # the iterates stay within a few units (a diverging run would amplify rounding)
  tx = apollo(lr, **kw)
  final = _run_both(tx, NumpyApollo(lr, **kw))
  start, _ = _problem()
  assert all(np.max(np.abs(f - s)) > 1e-3 for f, s in zip(final, start, strict=True))  # moved


@pytest.mark.parametrize("kw", [dict(weight_decay=1e-2), dict(), dict(eps=1e-8)])
def test_sigma_one_is_the_earlier_fairseq_apollo_file(kw):
  lr = 0.3
  _run_both(apollo(lr, sigma=1.0, **kw), NumpyApollo(lr, version="earlier", **kw))


def test_a_schedule_as_learning_rate_is_read_at_the_update_count():
  """fairseq's scheduler sets the group's lr before each update; Apollo's own warm-up
  overrides it while the count is below warmup."""

  class Scheduled(NumpyApollo):
    def step(self, params, grads):
      count = self.state.get(0, {}).get("step", 0)
      self.group["lr"] = 0.05 * 0.5 ** (count // 7)
      super().step(params, grads)

  schedule = lambda count: 0.05 * 0.5 ** (count // 7)  # noqa: E731
  _run_both(apollo(schedule, base_lr=0.05, warmup=5, init_lr=1e-3),
            Scheduled(0.05, warmup=5, init_lr=1e-3))


def test_apollo_checks_its_arguments_as_the_file():
  for bad in (dict(beta=1.0), dict(eps=-1.0), dict(rebound="other"),
              dict(weight_decay=-1.0), dict(weight_decay_type="l2"), dict(warmup=-1),
              dict(warmup=10, init_lr=2.0), dict(sigma=0.0)):
    with pytest.raises(ValueError):
      apollo(1.0, **bad)
  with pytest.raises(ValueError, match="base_lr"):
    apollo(lambda count: 0.1)


def _numpy_milestone_lrs(lr, warmup_updates, warmup_init_lr, milestones, gamma, n):
  """MilestoneScheduler: built (its __init__), step_update(0) by the trainer, then
  step_update(k) after update k; update k + 1 runs with the lr set by step_update(k)."""
  if warmup_updates == 0:
    warmup_init_lr = lr
  elif warmup_init_lr < 0:
    warmup_init_lr = 0
  lr_step = (lr - warmup_init_lr) / warmup_updates if warmup_updates > 0 else 0
  current, out = warmup_init_lr, []
  for num_updates in range(n):
    if num_updates <= warmup_updates:
      current = warmup_init_lr + num_updates * lr_step
    elif num_updates in milestones:
      current = current * gamma
    out.append(current)
  return out


@pytest.mark.parametrize("warmup,milestones", [(10, (20, 35)), (0, (5, 12)), (10, (4, 30))])
def test_the_milestone_schedule_is_fairseq_apollos(warmup, milestones):
  n = 50
  expected = _numpy_milestone_lrs(0.1, warmup, 1e-5, milestones, 0.1, n)
  schedule = optim.milestone_schedule(0.1, warmup=warmup, warmup_init_lr=1e-5,
                                      milestones=milestones, gamma=0.1)
  got = [float(schedule(c)) for c in range(n)]
  np.testing.assert_allclose(got, expected, rtol=1e-15 if jax.config.jax_enable_x64 else 1e-6)


def test_clip_each_bounds_each_parameter_norm_as_fairseq_apollo():
  rng = np.random.default_rng(1)
  grads = {"a": rng.normal(size=(5, 4)), "b": 1e-3 * rng.normal(size=(4,)),
           "c": np.asarray(10 * rng.normal())}
  out, _ = optim.clip_each_by_norm(0.1).update(grads, optax.EmptyState())
  for k, g in grads.items():
    norm = np.sqrt(np.sum(g * g))
    expected = g * min(0.1 / (norm + 1e-6), 1.0)
    np.testing.assert_allclose(np.asarray(out[k]), expected, rtol=1e-12)
  np.testing.assert_array_equal(np.asarray(out["b"]), grads["b"])  # under the bound: kept


def _wmt_optimizer_config(**changes):
  from configs import wmt14_en_de

  o = wmt14_en_de.get_config("luna").optimizer
  o.update(changes)
  return o


def test_the_luna_wmt_recipe_builds_apollo_with_its_milestones():
  o = _wmt_optimizer_config()
  schedule = optim.learning_rate_schedule(o, 500_000)
  # The lr of update c + 1: after 300,000 updates it is 0.01 (fairseq's step_update).
  lrs = {c: float(schedule(c)) for c in (0, 500, 1000, 299_999, 300_000, 300_001, 450_001)}
  np.testing.assert_allclose(
      [lrs[c] for c in sorted(lrs)], [1e-5, 1e-5 + 500 * (0.1 - 1e-5) / 1000, 0.1, 0.1,
                                      0.01, 0.01, 0.001], rtol=1e-6)
  tx = optim.make_optimizer(o, 500_000)
  params = {"w": np.ones((3, 2)), "b": np.zeros((2,))}
  grads = {"w": np.full((3, 2), 5.0), "b": np.full((2,), 1e-3)}
  updates, _ = tx.update(grads, tx.init(params), params)
  # Clipped per parameter to norm 0.1, then Apollo's first update (|B| = 0 bounded at
  # 0.01, m = g): lr 1e-5 x clipped g / 0.01, L2 weight decay 1e-8 included.
  clipped_w = 5.0 * 0.1 / (np.sqrt(6 * 25.0) + 1e-6) + 1e-8
  np.testing.assert_allclose(np.asarray(updates["w"]), -1e-5 * clipped_w / 0.01, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(updates["b"]), -1e-5 * 1e-3 / 0.01, rtol=1e-6)


def test_apollo_warmup_in_the_config_shows_in_the_logged_schedule():
  o = _wmt_optimizer_config(milestones=(), warmup_steps=0)  # a constant 0.1 outside
  o.apollo.warmup_steps, o.apollo.init_lr = 100, 0.01
  schedule = optim.learning_rate_schedule(o, 1000)
  np.testing.assert_allclose(float(schedule(0)), 0.01, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(50)), 0.01 + 0.5 * (0.1 - 0.01), rtol=1e-6)
  np.testing.assert_allclose(float(schedule(100)), 0.1, rtol=1e-6)


def test_the_default_optimizer_is_still_adamw_with_global_norm_clipping():
  o = base_config().optimizer
  assert (o.name, o.clip_mode, o.schedule) == ("adamw", "total", "inverse_sqrt")
  o.grad_clip_norm = 1.0
  params = {"w": np.ones((3,))}
  grads = {"w": np.array([3.0, 4.0, 0.0])}
  ours = optim.make_optimizer(o, 100)
  reference = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(optim.learning_rate_schedule(o, 100), b1=o.b1, b2=o.b2, eps=o.eps,
                  weight_decay=o.weight_decay))
  a, _ = ours.update(grads, ours.init(params), params)
  b, _ = reference.update(grads, reference.init(params), params)
  np.testing.assert_array_equal(np.asarray(a["w"]), np.asarray(b["w"]))


@pytest.mark.parametrize("key,value,message", [
    ("optimizer.name", "sgd", "optimizer.name='sgd' is not one of"),
    ("optimizer.clip_mode", "layer", "optimizer.clip_mode='layer' is not one of"),
    ("optimizer.schedule", "step", "optimizer.schedule='step' is not one of"),
    ("optimizer.milestones", (500, 300_000), "must be increasing update counts after the "
     "warm-up"),
    ("optimizer.milestones", (300_000, 300_000), "must be increasing"),
    ("optimizer.gamma", 0.0, "optimizer.gamma=0.0 must be positive"),
    ("optimizer.apollo.rebound", "max", "optimizer.apollo.rebound='max' is not one of"),
    ("optimizer.apollo.weight_decay_type", "l2", "weight_decay_type='l2' is not one of"),
    ("optimizer.apollo.beta", 1.0, "beta must be in"),
    ("optimizer.apollo.sigma", -1.0, "sigma"),
])
def test_invalid_optimizer_keys_fail_with_a_clear_message(key, value, message):
  from configs import wmt14_en_de

  c = wmt14_en_de.get_config("luna")
  c.translation_dir = "/nonexistent"
  validate(c, num_devices=1, compile_only=True)
  c.update_from_flattened_dict({key: value})
  with pytest.raises(errors.ConfigError, match=message):
    validate(c, num_devices=1, compile_only=True)


def test_a_run_with_the_wmt_optimiser_resumes_exactly(data_dir, tmp_path):
  """Apollo's state goes through the checkpoints: a killed and resumed run ends with the
  parameters of an uninterrupted one (Apollo, milestones, per-parameter clipping)."""
  from luna_jax.training import train_and_evaluate
  from tests.training_fixtures import latest_params, tiny_config, train_killed_then_resumed

  config = tiny_config("listops", data_dir, steps=8)
  config.checkpoint_every = 4
  o = config.optimizer
  o.name, o.learning_rate, o.weight_decay = "apollo", 0.05, 1e-4
  o.schedule, o.milestones, o.gamma, o.warmup_steps = "milestone", (5,), 0.1, 2
  o.grad_clip_norm, o.clip_mode = 0.1, "each"
  summary = train_and_evaluate(config, tmp_path / "straight")
  assert summary["steps"] == 8
  resumed = train_killed_then_resumed(config, tmp_path / "resumed", kill_after=6)
  assert resumed["steps"] == 8
  straight = latest_params(tmp_path / "straight")
  for a, b in zip(straight, latest_params(tmp_path / "resumed"), strict=True):
    np.testing.assert_array_equal(a, b)
  first = latest_params(tmp_path / "straight", step=4)
  assert any(not np.array_equal(a, b) for a, b in zip(first, straight, strict=True))
