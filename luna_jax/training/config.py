"""The training configuration: defaults shared by every task, checks, and the model.

Each `configs/lra_*.py` starts from `base_config()` and sets its task's reference values.
`validate` fails with a clear message before anything is compiled.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from luna_jax import registry
from luna_jax.convolution import PAPER_KERNEL_SIZES
from luna_jax.data.tasks import get_task
from luna_jax.encoder import P_INITS, Encoder
from luna_jax.model import PAIR_COMBINATIONS, POOLINGS, LraClassifier

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SCHEDULES = ("inverse_sqrt", "cosine")
LAYER_NORMS = ("default", "pre", "post")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # --- Task and data -----------------------------------------------------------------
  c.task = "listops"  # listops | text | retrieval | image | pathfinder32/64/128/256 | pathx
  c.difficulty = "hard"  # Pathfinder subset: easy | intermediate | hard (LRA: hard)
  c.data_dir = "~/lra_data"  # prepared datasets (python -m luna_jax.data prepare TASK ...)
  c.max_len = 2002  # tokens per example (per document for retrieval), CLS and EOS included
  c.add_cls = True  # prepend CLS (its final state is the "cls" pooling's sentence vector)
  c.add_eos = True  # append EOS
  c.generate_listops_examples = 96_000  # ListOps train size generated on first use; 0: never
  c.generate_eval_examples = 0  # ... and its validation and test size each; 0: LRA's 2,000 per 96,000
  c.seed = 0  # parameters, dropout and data order

  # --- Model -------------------------------------------------------------------------
  c.model = m = ml_collections.ConfigDict()
  m.name = "luna"  # mechanism: one of luna_jax.mixer_names()
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
  # Each mechanism's own settings; the block of the chosen one is used.
  m.luna = ml_collections.ConfigDict(dict(
      proj_len=16,  # l, length of the projected sequence P (the paper: 16, 128, 256)
      p_init="normal_d",  # initial P ~ N(0, d^-1/2) (Luna LRA, also with bert init) | bert
                          # N(0, 0.02) (only the authors' pre-training encoder)
      contextual_p=True,  # P passed from layer to layer (else one P per layer)
      dynamic_projection=True,  # mask P rows beyond each example's length
      tied_kv=False,  # one projection for K and V (LRA runs: untied)
      pack_heads=0,  # heads of the pack attention; 0 = num_heads
  ))
  m.transformer = ml_collections.ConfigDict()
  m.linformer = ml_collections.ConfigDict(dict(
      proj_len=16,  # k, projected length (LRA: 16)
      # longest sequence the E/F projections accept; unset: the run's max_len
      max_len=config_dict.placeholder(int),
      sharing="headwise",  # none | headwise | kv | layerwise
      project_before=False,  # project before the K/V maps (fairseq) instead of after
  ))
  m.lightconv = ml_collections.ConfigDict(dict(
      kernel_sizes=PAPER_KERNEL_SIZES,  # per layer (the paper's encoder)
      weight_dropout=0.0,  # DropConnect on the normalised kernels
  ))
  m.dynamicconv = ml_collections.ConfigDict(dict(
      kernel_sizes=PAPER_KERNEL_SIZES,
      weight_dropout=0.0,
  ))

  # --- Optimisation --------------------------------------------------------------------
  c.optimizer = o = ml_collections.ConfigDict()
  o.learning_rate = 1e-4  # peak learning rate
  o.schedule = "inverse_sqrt"  # inverse_sqrt (fairseq) | cosine (to 0 at the last step)
  o.warmup_steps = 1000  # linear warm-up from warmup_init_lr
  o.warmup_init_lr = 1e-7
  o.b1 = 0.9
  o.b2 = 0.98
  o.eps = 1e-8
  o.weight_decay = 1e-4  # decoupled (AdamW) on every parameter, as the reference
  o.grad_clip_norm = 0.0  # global-norm clipping; 0 = off (the reference)
  o.grad_accum_steps = 1  # micro-batches per step (same result, less memory)

  # --- Loop ---------------------------------------------------------------------------
  c.batch_size = 32  # global examples per step, over all devices and hosts
  c.num_train_steps = 5000
  c.log_every = 50  # steps between metric lines
  c.eval_every = 500  # steps between validation passes (and best-checkpoint updates)
  c.checkpoint_every = 500  # steps between checkpoints of the latest state
  c.keep_checkpoints = 2  # latest checkpoints kept (the best one is kept separately)
  c.max_eval_batches = 0  # batches per validation pass; 0 = the whole split
  c.progress_bar = True
  return c


# Settings left unset (None) that follow the run: (mechanism, setting) -> top-level key.
DERIVED = {("linformer", "max_len"): "max_len"}


def mixer_settings(config) -> tuple[dict, dict]:
  """(Encoder keyword arguments, mixer_options) from the chosen mechanism's block, with
  unset derived settings taken from the run (e.g. Linformer's max_len)."""
  model_cfg = config.model
  block = model_cfg.get(model_cfg.name)
  block = {} if block is None else block.to_dict()
  for (name, key), source in DERIVED.items():
    if name == model_cfg.name and block.get(key) is None:
      block[key] = config[source]
  encoder_fields = {f.name for f in dataclasses.fields(Encoder)}
  encoder_kw = {k: v for k, v in block.items() if k in encoder_fields}
  options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in block.items()
             if k not in encoder_fields}
  return encoder_kw, options


def build_model(config) -> LraClassifier:
  task = get_task(config.task, config.difficulty)
  m = config.model
  encoder_kw, options = mixer_settings(config)
  normalize_before = {"default": None, "pre": True, "post": False}[m.layer_norm]
  encoder = dict(mixer=m.name, num_layers=m.num_layers, num_heads=m.num_heads,
                 ffn_dim=m.ffn_dim, dropout=m.dropout, attention_dropout=m.attention_dropout,
                 activation_dropout=m.activation_dropout, normalize_before=normalize_before,
                 mixer_options=options, **encoder_kw)
  return LraClassifier(
      vocab_size=task.vocab.size, max_len=config.max_len, num_classes=task.num_classes,
      d_model=m.d_model, classifier_hidden=m.classifier_hidden, dropout=m.dropout,
      pooling=m.pooling, pair_combination=m.pair_combination, init_style=m.init_style,
      encoder=encoder, dtype=DTYPES[m.dtype])


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(f"invalid config: {message}")


def validate(config, num_devices: int, num_processes: int = 1) -> None:
  """Checks the settings that would otherwise fail late or silently."""
  get_task(config.task, config.difficulty)  # raises for unknown tasks/difficulties
  m, o = config.model, config.optimizer
  names = registry.mixer_names()
  _require(m.name in names, f"model.name={m.name!r} is not a mechanism; choose one of "
           f"{', '.join(names)}.")
  _require(m.num_heads > 0 and m.d_model % m.num_heads == 0,
           f"model.num_heads={m.num_heads} must divide model.d_model={m.d_model}.")
  if m.name == "luna":  # (a workdir's config.json from before p_init existed has none)
    p_init = m.luna.get("p_init", "normal_d")
    _require(p_init in P_INITS, f"model.luna.p_init={p_init!r} is not one of {P_INITS}.")
  if m.name == "luna" and m.luna.pack_heads:
    _require(m.d_model % m.luna.pack_heads == 0, f"model.luna.pack_heads="
             f"{m.luna.pack_heads} must divide model.d_model={m.d_model}.")
  if m.name == "linformer":
    linformer_max_len = mixer_settings(config)[1]["max_len"]
    _require(config.max_len <= linformer_max_len,
             f"max_len={config.max_len} is longer than the Linformer projections allow "
             f"(model.linformer.max_len={linformer_max_len}); raise "
             "--config.model.linformer.max_len or leave it unset to follow max_len.")
  if m.name in ("lightconv", "dynamicconv"):
    sizes = m[m.name].kernel_sizes
    _require(len(sizes) >= m.num_layers, f"model.{m.name}.kernel_sizes has {len(sizes)} "
             f"entries for num_layers={m.num_layers}; give one per layer.")
  _require(m.dtype in DTYPES, f"model.dtype={m.dtype!r} is not one of {list(DTYPES)}.")
  _require(m.layer_norm in LAYER_NORMS, f"model.layer_norm={m.layer_norm!r} is not one "
           f"of {LAYER_NORMS}.")
  _require(m.pooling in POOLINGS, f"model.pooling={m.pooling!r} is not one of {POOLINGS}.")
  _require(m.pair_combination in PAIR_COMBINATIONS, f"model.pair_combination="
           f"{m.pair_combination!r} is not one of {PAIR_COMBINATIONS}.")
  _require(o.schedule in SCHEDULES, f"optimizer.schedule={o.schedule!r} is not one of "
           f"{SCHEDULES}.")
  _require(o.grad_accum_steps >= 1, "optimizer.grad_accum_steps must be >= 1.")
  per_step = num_devices * o.grad_accum_steps
  _require(config.batch_size % per_step == 0,
           f"batch_size={config.batch_size} must be divisible by the number of devices "
           f"({num_devices}) times optimizer.grad_accum_steps ({o.grad_accum_steps}).")
  _require(config.batch_size % num_processes == 0, f"batch_size={config.batch_size} must "
           f"be divisible by the number of processes ({num_processes}).")
  _require(config.max_len > int(config.add_cls) + int(config.add_eos),
           f"max_len={config.max_len} leaves no room for tokens.")
  for name in ("num_train_steps", "log_every", "eval_every", "checkpoint_every"):
    _require(config[name] > 0, f"{name} must be positive, got {config[name]}.")
