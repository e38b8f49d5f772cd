"""The training configuration: the defaults every kind of run shares, each workload's own
keys (`workloads`), and the checks that fail with a clear message before anything is
compiled.

Each `configs/*.py` starts from `base_config()` and sets its run's reference values. The
model block's mixer settings and the models themselves: `model_config`.
"""

from __future__ import annotations

import ml_collections

from luna_jax import errors
from luna_jax.data.source import DataSource
from luna_jax.models.language_model import MaskingRates
from luna_jax.training import apollo, model_config, optim, workloads
from luna_jax.training.steps import PRNG_IMPLS
from luna_jax.training.workloads import Devices, objective_name, workload_of

LANGUAGE_OBJECTIVES = ("mlm", "clm")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # --- Task and data ----------------------------------------------------------------
  c.task = "listops"  # an LRA task: listops | text | retrieval | image | pathfinder32/64/
  #                     128/256 | pathx; corpus (language modelling on corpus_dir);
  #                     translation (translation_dir). Each kind of run's own keys follow.
  c.max_len = 2002  # tokens per example (per document for retrieval), CLS and EOS included
  c.add_cls = True  # prepend CLS (its final state is the "cls" pooling's sentence vector)
  c.add_eos = True  # append EOS
  c.seed = 0  # parameters, dropout and data order
  c.prng_impl = "auto"  # dropout's random generator: auto (rbg on TPU, threefry2x32
  #                       elsewhere) | threefry2x32 | rbg | unsafe_rbg (training.steps)
  for workload in workloads.workloads():
    workload.add_config(c)

  # --- Objective and pre-training ------------------------------------------------------
  c.objective = ""  # "" (the task's own: classify for an LRA task, mlm for a corpus,
  #                   seq2seq for translation) | classify | mlm | clm (language modelling)
  c.mlm = ml_collections.ConfigDict()
  c.mlm.mask_rate = 0.15  # real tokens predicted per example (BERT)
  c.mlm.mask_fraction = 0.8  # ... of which become [MASK]
  c.mlm.random_fraction = 0.1  # ... become a random token (the rest stay as they are)
  c.mlm.tie_embeddings = True  # output projection = the token embedding (+ a bias)
  c.init_from = ""  # a workdir whose pre-trained embeddings and encoder start this run
  # Self-pre-training (Amos et al. 2024): first pre-train on the task's own training
  # inputs (labels unused) in WORKDIR/pretrain, then train this config from it.
  c.pretrain = p = ml_collections.ConfigDict()
  p.objective = ""  # "" (none) | mlm | clm
  p.num_train_steps = 0
  p.learning_rate = 0.0  # 0: optimizer.learning_rate
  p.warmup_steps = -1  # -1: optimizer.warmup_steps
  p.eval_every = 0  # 0: eval_every

  # --- Model -------------------------------------------------------------------------
  c.model = m = ml_collections.ConfigDict()
  m.name = "luna"  # mechanism: one of luna_jax.mixer_names()
  m.causal = False  # autoregressive encoder (needed by objective=clm)
  m.num_layers = 1  # encoder layers
  m.d_model = 512  # model width
  m.num_heads = 8  # attention heads (convolutions: number of kernels H)
  m.ffn_dim = 2048  # feed-forward hidden width
  m.classifier_hidden = 2048  # width of the classifier's hidden layer
  m.dropout = 0.1  # residual and embedding dropout
  m.attention_dropout = 0.1  # dropout on attention maps (Luna: pack and unpack weights)
  m.activation_dropout = 0.0  # dropout inside the feed-forward network
  m.init_style = "xavier"  # xavier (the fairseq reference) | bert (N(0, 0.02); not P)
  m.pooling = "cls"  # cls | mean
  m.pair_combination = "concat"  # retrieval: concat [u, v] (Luna) | nli [u, v, u*v, u-v]
  m.layer_norm = "default"  # default (the mechanism's own) | pre | post
  m.dtype = "float32"  # computation dtype: float32 | bfloat16 (parameters stay float32)
  m.remat = False  # recompute each encoder layer's activations in the backward pass
  #                  (nn.remat): memory of one layer's activations instead of all layers'
  # Each mechanism's own settings: one block per registered mixer (model.luna, ...), made
  # from its settings dataclass (defaults and comments in luna_jax/mixers/); the chosen
  # one's block is used. A setting left unset (None) may follow the run, e.g.
  # model.linformer.max_len follows max_len.
  model_config.add_mixer_blocks(m)

  # --- Optimisation --------------------------------------------------------------------
  c.optimizer = o = ml_collections.ConfigDict()
  o.name = "adamw"  # adamw (the LRA reference's) | apollo (Ma 2020; the Luna authors' WMT
  #                   optimiser, training/apollo.py; its own keys in optimizer.apollo)
  o.learning_rate = 1e-4  # peak learning rate
  o.schedule = "inverse_sqrt"  # inverse_sqrt (fairseq) | cosine (to 0 at the last step) |
  #                             milestone (x gamma at each of milestones; training/optim.py)
  o.warmup_steps = 1000  # linear warm-up from warmup_init_lr
  o.warmup_init_lr = 1e-7
  o.milestones = ()  # milestone: update counts after which the lr is multiplied by gamma
  o.gamma = 0.1  # milestone: the factor (fairseq's --lr-decay-rate)
  o.b1 = 0.9  # Adam's betas and eps (adamw only)
  o.b2 = 0.98
  o.eps = 1e-8
  o.weight_decay = 1e-4  # adamw: decoupled, on every parameter, as the reference; apollo:
  #                        as optimizer.apollo.weight_decay_type says
  o.grad_clip_norm = 0.0  # gradient clipping's bound; 0 = off (the reference)
  o.clip_mode = "total"  # total (one factor, the global norm) | each (each parameter's
  #                        norm on its own, fairseq-apollo's --clip-mode each)
  o.grad_accum_steps = 1  # micro-batches per step (same result, less memory)
  o.apollo = a = ml_collections.ConfigDict()  # optimizer.name=apollo (--apollo-* flags)
  a.beta = 0.9  # the gradient average's coefficient
  a.eps = 1e-4
  a.rebound = "constant"  # constant (|B| bounded below by sigma) | belief (by max|g - m|)
  a.sigma = 0.01  # the constant bound: 0.01 (the authors' later apollo.py); 1.0 is their
  #                 earlier fairseq-apollo file, exactly (clamp at 1, eps unscaled)
  a.weight_decay_type = ""  # L2 | decoupled | stable; "": L2 (constant) / decoupled (belief)
  a.warmup_steps = 0  # Apollo's own linear warm-up (the later file's `warmup`); 0 = none,
  #                     the schedule's warm-up only (the WMT recipe)
  a.init_lr = -1.0  # its first learning rate; < 0: learning_rate / 1000 (the file's)

  # --- Loop ---------------------------------------------------------------------------
  c.batch_size = 32  # global examples per step, over all devices and hosts
  c.num_train_steps = 5000
  c.log_every = 50  # steps between metric lines
  c.eval_every = 500  # steps between validation passes (and best-checkpoint updates)
  c.checkpoint_every = 500  # steps between checkpoints of the latest state
  c.checkpoint_every_minutes = 0.0  # > 0: also save when this long has passed since the
  #                                   last save (checked at log steps); 0 = steps only
  c.allow_config_change = False  # resume a workdir whose checkpoint another config
  #                               trained (recorded; training/workdir.py lists the fields
  #                               that may change without it)
  c.keep_checkpoints = 2  # latest checkpoints kept (the best one is kept separately)
  c.max_eval_batches = 0  # batches per validation pass; 0 = the whole split
  c.progress_bar = True
  return c


def validate(config, num_devices: int, num_processes: int = 1,
             compile_only: bool = False) -> DataSource:
  """Checks the settings that would otherwise fail late or silently: the shared ones, then
  the workload's own; returns the run's data source (compile_only: see
  `Workload.source`)."""
  workload = workload_of(config)  # raises for an unknown task
  model_config.check_model(config)
  o = config.optimizer
  errors.require(config.prng_impl in ("auto",) + PRNG_IMPLS, f"prng_impl="
                 f"{config.prng_impl!r} is not one of {('auto',) + PRNG_IMPLS}.")
  _check_optimizer(o)
  for name in ("num_train_steps", "log_every", "eval_every", "checkpoint_every"):
    errors.require(config[name] > 0, f"{name} must be positive, got {config[name]}.")
  errors.require(config.checkpoint_every_minutes >= 0, "checkpoint_every_minutes must be "
                 f">= 0 (0: off), got {config.checkpoint_every_minutes}.")
  _check_objective(config, workload)
  _check_other_workloads_keys(config, workload)
  workload.check(config, Devices(num_devices, num_processes))
  objective = objective_name(config, workload)
  errors.require(objective in workload.objectives, f"task={config.task} trains with "
                 f"objective {' or '.join(workload.objectives)}, not {objective}.")
  return workload.source(config, compile_only)


def _check_optimizer(o) -> None:
  errors.require(o.name in optim.OPTIMIZERS, f"optimizer.name={o.name!r} is not one of "
                 f"{optim.OPTIMIZERS}.")
  errors.require(o.schedule in optim.SCHEDULES, f"optimizer.schedule={o.schedule!r} is not "
                 f"one of {optim.SCHEDULES}.")
  errors.require(o.clip_mode in optim.CLIP_MODES, f"optimizer.clip_mode={o.clip_mode!r} is "
                 f"not one of {optim.CLIP_MODES}.")
  errors.require(o.grad_accum_steps >= 1, "optimizer.grad_accum_steps must be >= 1.")
  errors.require(o.learning_rate > 0, f"optimizer.learning_rate={o.learning_rate} must be "
                 "positive.")
  if o.schedule == "milestone":
    milestones = tuple(o.milestones)
    errors.require(all(isinstance(m, int) and m > o.warmup_steps for m in milestones)
                   and list(milestones) == sorted(set(milestones)), "optimizer.milestones="
                   f"{milestones} must be increasing update counts after the warm-up "
                   f"(optimizer.warmup_steps={o.warmup_steps}): one inside it never fires.")
    errors.require(o.gamma > 0, f"optimizer.gamma={o.gamma} must be positive.")
    errors.require(o.warmup_steps <= 0 or o.warmup_init_lr < o.learning_rate,
                   f"optimizer.warmup_init_lr={o.warmup_init_lr} must be below "
                   f"optimizer.learning_rate={o.learning_rate} (the milestone warm-up rises).")
  if o.name != "apollo":
    return
  a = o.apollo
  errors.require(a.rebound in apollo.REBOUNDS, f"optimizer.apollo.rebound={a.rebound!r} is "
                 f"not one of {apollo.REBOUNDS}.")
  errors.require(a.weight_decay_type in ("",) + apollo.WEIGHT_DECAY_TYPES,
                 f"optimizer.apollo.weight_decay_type={a.weight_decay_type!r} is not one of "
                 f"{('',) + apollo.WEIGHT_DECAY_TYPES}.")
  init_lr = a.init_lr if a.init_lr >= 0 else o.learning_rate / 1000
  try:
    apollo.check(learning_rate=o.learning_rate, beta=a.beta, eps=a.eps, rebound=a.rebound,
                 sigma=a.sigma, warmup=a.warmup_steps, init_lr=init_lr,
                 weight_decay=o.weight_decay, weight_decay_type=a.weight_decay_type or None)
  except ValueError as e:
    raise errors.ConfigError(f"invalid config (optimizer.apollo): {e}") from None


def _check_objective(config, workload) -> None:
  m = config.model
  objective = objective_name(config, workload)
  known = tuple(dict.fromkeys(o for w in workloads.workloads() for o in w.objectives))
  errors.require(objective in known, f"objective={config.objective!r} is not one of "
                 f"{known}.")
  for name, key in ((objective, "objective"), (config.pretrain.objective,
                                               "pretrain.objective")):
    if name == "mlm":
      errors.require(not m.causal, f"{key}=mlm needs a bidirectional encoder: set "
                     "model.causal=False (or use clm).")
    if name == "clm":
      errors.require(m.causal, f"{key}=clm predicts the next token, which a "
                     "bidirectional encoder sees: set model.causal=True.")
  try:
    MaskingRates(config.mlm.mask_rate, config.mlm.mask_fraction,
                 config.mlm.random_fraction).check()
  except ValueError as e:
    raise errors.ConfigError(f"invalid config: {e}") from None
  p = config.pretrain
  errors.require(p.objective in ("",) + LANGUAGE_OBJECTIVES, f"pretrain.objective="
                 f"{p.objective!r} is not one of '', 'mlm', 'clm'.")
  if p.objective:
    errors.require(objective == "classify", "pretrain.objective is for a classification "
                   "run (objective=classify): it pre-trains, then fine-tunes.")
    errors.require(p.num_train_steps > 0, "pretrain.num_train_steps must be positive when "
                   f"pretrain.objective={p.objective!r}.")
    errors.require(not config.init_from, "pretrain.objective and init_from both say where "
                   "the weights come from: set one.")


def _check_other_workloads_keys(config, workload) -> None:
  """A switch (a boolean key) of another kind of run, turned on, is a mistake. (Paths and
  sizes of other kinds may stay set: configs derived from one another carry them.)"""
  for other in workloads.workloads():
    if other is workload:
      continue
    defaults = ml_collections.ConfigDict()
    other.add_config(defaults)
    for key, default in defaults.items():
      if not isinstance(default, bool) or key not in config:
        continue
      errors.require(config[key] == default, f"{key} is for task="
                     f"{'/'.join(other.task_names()[:3])}; leave it out for task="
                     f"{config.task}.")


def build_model(config, source: DataSource | None = None):
  """The model the config describes (its workload's); `source` saves building the data
  source again."""
  workload = workload_of(config)
  return workload.build_model(config, source or workload.source(config))
