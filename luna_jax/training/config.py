"""The training configuration: defaults shared by every task, checks, and the model.

Each `configs/lra_*.py` starts from `base_config()` and sets its task's reference values.
`validate` fails with a clear message before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import typing

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from luna_jax import errors, registry
from luna_jax.data.tasks import Task, get_task
from luna_jax.models.language_model import LanguageModel, MaskingRates, lm_vocab_size
from luna_jax.models.classifier import PAIR_COMBINATIONS, POOLINGS, LraClassifier
from luna_jax.training.objectives import OBJECTIVES
from luna_jax.training.steps import PRNG_IMPLS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SCHEDULES = ("inverse_sqrt", "cosine")
LAYER_NORMS = ("default", "pre", "post")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # --- Task and data -----------------------------------------------------------------
  c.task = "listops"  # listops | text | retrieval | image | pathfinder32/64/128/256 | pathx
  #                     | corpus (language modelling on corpus_dir)
  c.corpus_dir = ""  # task=corpus: a folder made by `python -m luna_jax.data prepare_corpus`
  c.pack_documents = False  # task=corpus: several documents per row, kept apart by segment
  #                           ids (mixers that allow it: transformer); False: one per row
  c.difficulty = "hard"  # Pathfinder subset: easy | intermediate | hard (LRA: hard)
  c.data_dir = "~/lra_data"  # prepared datasets (python -m luna_jax.data prepare TASK ...)
  c.max_len = 2002  # tokens per example (per document for retrieval), CLS and EOS included
  c.add_cls = True  # prepend CLS (its final state is the "cls" pooling's sentence vector)
  c.add_eos = True  # append EOS
  # Generated tasks (ListOps, Pathfinder, Path-X) missing from data_dir are generated on
  # first use, on every core: -1 the official training size (ListOps 96,000, Pathfinder
  # 160,000), n > 0 that many, 0 never (stop with the prepare command instead).
  c.generate_examples = -1
  c.generate_eval_examples = 0  # ... and the validation and test size each; 0: the
  #                               official proportion (ListOps 2,000 per 96,000, Pathfinder 1/8)
  c.seed = 0  # parameters, dropout and data order
  c.prng_impl = "auto"  # dropout's random generator: auto (rbg on TPU, threefry2x32
  #                       elsewhere) | threefry2x32 | rbg | unsafe_rbg (training.steps)
  # task=translation (objective=seq2seq): a folder made by `python -m luna_jax.data
  # prepare_translation` (or generated on first use, translation.generate).
  c.translation_dir = ""
  c.translation = t = ml_collections.ConfigDict()
  t.generate = 0  # > 0: generate the offline reordering task (data/toy_translation.py)
  #                 with this many training pairs into translation_dir when it is empty
  t.generate_eval = 500  # ... and this many validation and test pairs each
  t.vocab_size = 8000  # joint SentencePiece pieces when generating (and what a compile-
  #                       only run assumes when translation_dir is not prepared)
  t.max_source_len = 256  # tokens per source, EOS included
  t.max_target_len = 256  # tokens per target, EOS included
  t.too_long = "truncate"  # a longer pair: truncate (counted in the summary) | error
  t.max_tokens = 4096  # tokens per batch (rows x padded length), over all devices
  t.decoder_layers = 6  # decoder layers (model.num_layers: the encoder's)
  t.share_embeddings = "all"  # all (source, target, output) | decoder | none
  t.label_smoothing = 0.1
  t.select = "loss"  # the best checkpoint by validation loss | bleu
  t.beam_size = 4  # generation (validation BLEU, test BLEU, translate.py)
  t.length_penalty = 0.6  # GNMT length penalty ((5 + m) / 6) ** lp
  t.max_len_a = 1.2  # generate at most a * source length + b tokens
  t.max_len_b = 10
  t.val_bleu_sentences = 500  # validation BLEU on the first N pairs (0: all, -1: none)

  # --- Objective and pre-training ------------------------------------------------------
  c.objective = "classify"  # classify (the task's label) | mlm | clm (language modelling)
  #                             | seq2seq (task=translation)
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
  for name in registry.mixer_names():
    if name in m:
      raise ValueError(f"mixer name {name!r} collides with the config key model.{name}.")
    m[name] = settings_block(registry.get_mixer(name).settings)

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


def settings_block(settings_cls) -> ml_collections.ConfigDict:
  """A mixer's config block: its settings' defaults; a None default becomes a typed
  placeholder, so that --config.model.<name>.<setting>= can still set it."""
  hints = typing.get_type_hints(settings_cls)
  block = ml_collections.ConfigDict()
  for field in dataclasses.fields(settings_cls):
    value = field.default
    if value is dataclasses.MISSING:
      value = field.default_factory()
    if value is None:
      types = [t for t in typing.get_args(hints[field.name]) if t is not type(None)]
      value = config_dict.placeholder(types[0] if len(types) == 1 else object)
    block[field.name] = value
  return block


def run_of(config):
  """What the chosen mixer's settings may follow or be checked against."""
  m = config.model
  return registry.RunShape(max_len=config.max_len, num_layers=m.num_layers,
                           d_model=m.d_model, num_heads=m.num_heads, causal=m.causal)


def mixer_settings(config):
  """The chosen mechanism's settings object, read from its block: unset derived settings
  follow the run (e.g. Linformer's max_len), and the mixer's own check has passed."""
  name = config.model.name
  spec = registry.get_mixer(name)
  block = config.model.get(name)
  block = {} if block is None else block.to_dict()
  unknown = sorted(set(block) - set(spec.setting_names()))
  _require(not unknown, f"model.{name} has no setting {', '.join(unknown)}; its settings "
           f"are {', '.join(spec.setting_names())}.")
  try:
    return registry.make_settings(name, block, run_of(config))
  except ValueError as e:  # the mixer's message starts with the setting's name
    raise errors.ConfigError(f"invalid config: model.{name}.{e}") from None


def build_model(config, task: Task | None = None):
  """The model the config describes: the task's classifier, a language model when
  config.objective is mlm or clm, a translation model for seq2seq; `task` saves looking
  config.task up again."""
  task = task or task_of(config)
  m = config.model
  normalize_before = {"default": None, "pre": True, "post": False}[m.layer_norm]
  encoder = dict(mixer=m.name, num_layers=m.num_layers, num_heads=m.num_heads,
                 ffn_dim=m.ffn_dim, dropout=m.dropout, attention_dropout=m.attention_dropout,
                 activation_dropout=m.activation_dropout, normalize_before=normalize_before,
                 causal=m.causal, mixer_options=mixer_settings(config))
  if m.remat:
    encoder["remat"] = True
  if config.objective == "seq2seq":
    return _translation_model(config, task, encoder, normalize_before)
  if config.objective != "classify":
    return LanguageModel(
        vocab_size=lm_vocab_size(task.vocab.size), max_len=config.max_len,
        d_model=m.d_model, dropout=m.dropout, init_style=m.init_style,
        tie_embeddings=config.mlm.tie_embeddings, encoder=encoder, dtype=DTYPES[m.dtype])
  return LraClassifier(
      vocab_size=task.vocab.size, max_len=config.max_len, num_classes=task.num_classes,
      d_model=m.d_model, classifier_hidden=m.classifier_hidden, dropout=m.dropout,
      pooling=m.pooling, pair_combination=m.pair_combination, init_style=m.init_style,
      encoder=encoder, dtype=DTYPES[m.dtype])


def _translation_model(config, task, encoder, normalize_before):
  from luna_jax.models.seq2seq import Seq2SeqModel

  m, t = config.model, config.translation
  if normalize_before is None:
    normalize_before = registry.get_mixer(m.name).normalize_before
  decoder = dict(encoder, num_layers=t.decoder_layers, normalize_before=normalize_before,
                 ffn_activation="relu")
  del decoder["causal"]
  return Seq2SeqModel(
      vocab_size=task.vocab.size, max_source_len=t.max_source_len,
      max_target_len=t.max_target_len, d_model=m.d_model, dropout=m.dropout,
      share_embeddings=t.share_embeddings, init_style=m.init_style,
      encoder=dict(encoder, ffn_activation="relu"), decoder=decoder, dtype=DTYPES[m.dtype])


def task_of(config) -> Task:
  """The task record of config.task: an LRA task, or "corpus" (config.corpus_dir)."""
  if config.task == "corpus":
    _require(bool(config.corpus_dir), "task=corpus needs corpus_dir, a folder made by "
             "`python -m luna_jax.data prepare_corpus`.")
    from luna_jax.data import corpus

    return corpus.corpus_task(config.corpus_dir)
  if config.task == "translation":
    _require(bool(config.translation_dir), "task=translation needs translation_dir, a "
             "folder made by `python -m luna_jax.data prepare_translation`.")
    from luna_jax.data import translation

    return translation.translation_task(config.translation_dir)
  return get_task(config.task, config.difficulty)


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise errors.ConfigError(f"invalid config: {message}")


def validate(config, num_devices: int, num_processes: int = 1,
             task: Task | None = None) -> Task:
  """Checks the settings that would otherwise fail late or silently; returns the task
  (`task`, when given, instead of reading it from the config's data)."""
  if task is None:
    task = task_of(config)  # raises for unknown tasks/difficulties or a missing corpus
  m, o = config.model, config.optimizer
  names = registry.mixer_names()
  _require(m.name in names, f"model.name={m.name!r} is not a mechanism; choose one of "
           f"{', '.join(names)}.")
  _require(m.num_heads > 0 and m.d_model % m.num_heads == 0,
           f"model.num_heads={m.num_heads} must divide model.d_model={m.d_model}.")
  mixer_settings(config)  # the mixer's own check ("invalid config: model.<name>....")
  _require(m.dtype in DTYPES, f"model.dtype={m.dtype!r} is not one of {list(DTYPES)}.")
  _require(config.prng_impl in ("auto",) + PRNG_IMPLS, f"prng_impl={config.prng_impl!r} "
           f"is not one of {('auto',) + PRNG_IMPLS}.")
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
  _validate_objective(config)
  return task


def _validate_objective(config) -> None:
  m = config.model
  _require(config.objective in OBJECTIVES, f"objective={config.objective!r} is not one of "
           f"{OBJECTIVES}.")
  for objective, key in ((config.objective, "objective"),
                         (config.pretrain.objective, "pretrain.objective")):
    if objective == "mlm":
      _require(not m.causal, f"{key}=mlm needs a bidirectional encoder: set "
               "model.causal=False (or use clm).")
    if objective == "clm":
      _require(m.causal, f"{key}=clm predicts the next token, which a bidirectional "
               "encoder sees: set model.causal=True.")
  if config.task == "corpus":
    _require(config.objective != "classify", "a corpus has no labels: set objective=mlm "
             "(bidirectional) or objective=clm (with model.causal=True).")
  _require((config.objective == "seq2seq") == (config.task == "translation"),
           "objective=seq2seq and task=translation go together.")
  if config.objective == "seq2seq":
    _validate_translation(config)
  if config.pack_documents:
    _require(config.task == "corpus", "pack_documents is for task=corpus.")
    reason = registry.get_mixer(m.name).no_segments_because
    _require(not reason, f"pack_documents=True needs a mixer that keeps the documents of a "
             f"row apart; model.name={m.name!r} cannot: {reason} Set "
             "pack_documents=False (one document per row).")
  if config.objective == "classify" and m.causal:
    _require(m.pooling == "mean", "a causal classifier's CLS token sees only itself: set "
             "model.pooling=mean.")
  try:
    MaskingRates(config.mlm.mask_rate, config.mlm.mask_fraction,
                 config.mlm.random_fraction).check()
  except ValueError as e:
    raise errors.ConfigError(f"invalid config: {e}") from None
  p = config.pretrain
  _require(p.objective in ("", "mlm", "clm"), f"pretrain.objective={p.objective!r} is not "
           "one of '', 'mlm', 'clm'.")
  if p.objective:
    _require(config.objective == "classify", "pretrain.objective is for a classification "
             "run (objective=classify): it pre-trains, then fine-tunes.")
    _require(p.num_train_steps > 0, "pretrain.num_train_steps must be positive when "
             f"pretrain.objective={p.objective!r}.")
    _require(not config.init_from, "pretrain.objective and init_from both say where the "
             "weights come from: set one.")


def _validate_translation(config) -> None:
  from luna_jax.data.translation import TOO_LONG
  from luna_jax.models.seq2seq import SHARE_EMBEDDINGS

  m, t = config.model, config.translation
  spec = registry.get_mixer(m.name)
  _require(not spec.not_causal_because, f"model.name={m.name!r} cannot be a decoder: "
           f"{spec.not_causal_because}")
  _require(not m.causal, "model.causal is for language models; a translation model's "
           "encoder is bidirectional and its decoder causal.")
  _require(t.too_long in TOO_LONG, f"translation.too_long={t.too_long!r} is not one of "
           f"{TOO_LONG}.")
  _require(t.share_embeddings in SHARE_EMBEDDINGS, f"translation.share_embeddings="
           f"{t.share_embeddings!r} is not one of {SHARE_EMBEDDINGS}.")
  _require(t.select in ("loss", "bleu"), f"translation.select={t.select!r} is not one of "
           "'loss', 'bleu'.")
  _require(t.select != "bleu" or t.val_bleu_sentences >= 0, "translation.select=bleu needs "
           "validation BLEU: set translation.val_bleu_sentences >= 0.")
  for name in ("max_source_len", "max_target_len", "max_tokens", "decoder_layers",
               "beam_size"):
    _require(t[name] > 0, f"translation.{name} must be positive, got {t[name]}.")
  _require(0 <= t.label_smoothing < 1, f"translation.label_smoothing={t.label_smoothing} "
           "must be in [0, 1).")
