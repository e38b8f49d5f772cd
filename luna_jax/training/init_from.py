"""Starting a run from another workdir's pre-trained weights (`--config.init_from=W`).

The embeddings and the encoder (`models.embeddings.SHARED_PARAMS`) of W's best checkpoint replace the
freshly initialised ones; everything else (the classifier head) keeps its initialisation.
A language model's token embedding has one row more than the task's vocabulary (its
[MASK] id, the last), which is left out. Any other difference of structure or shape is an
error naming the first parameter that differs and the architecture W was trained with.
"""

from __future__ import annotations

import jax
import numpy as np

from luna_jax import errors
from luna_jax.models.embeddings import SHARED_PARAMS
from luna_jax.training.checkpoint import Checkpointer
from luna_jax.training.run import CONFIG_FILE, Run, load_config, workdir_path


def _flat(tree) -> dict[str, object]:
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _architecture(config) -> str:
  m = config.model
  return (f"model.name={m.name}, model.num_layers={m.num_layers}, model.d_model="
          f"{m.d_model}, model.num_heads={m.num_heads}, model.ffn_dim={m.ffn_dim}, "
          f"max_len={config.max_len}, task={config.task}")


def load_pretrained(workdir, target_params) -> tuple[dict, str]:
  """(target_params with W's embeddings and encoder, a description of what was loaded)."""
  path = workdir_path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise errors.WorkdirError(f"init_from={workdir}: {path} not found; init_from must be "
                              "the workdir of a finished train.py run.")
  config = load_config(workdir)
  source = Run.create(config, workdir, devices=jax.local_devices()[:1])
  shapes = jax.eval_shape(lambda: source.model.init(jax.random.PRNGKey(0),
                                                     *source.example_inputs())["params"])
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # host copies
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), shapes)
  with Checkpointer(source.checkpoint_dir, keep=1) as ckpt:
    step = ckpt.best_step()
    if step is None:
      raise errors.WorkdirError(f"init_from={workdir}: no best checkpoint in "
                                f"{ckpt.best_dir}; the pre-training run has not validated "
                                "yet.")
    src_params, _ = ckpt.restore_best(abstract)
  params = dict(target_params)
  for name in SHARED_PARAMS:
    if name not in src_params or name not in params:
      raise errors.ConfigError(f"init_from={workdir}: its checkpoint has no {name!r} "
                               "parameters to start this model from.")
    got = src_params[name]
    if name == "token_embed":
      got = _fit_embedding(got, params[name])
    _check_same(name, got, params[name], workdir, config)
    params[name] = jax.tree.map(lambda a, b: np.asarray(a, b.dtype), got, params[name])
  return params, f"{', '.join(SHARED_PARAMS)} of {source.workdir} (best checkpoint, step {step})"


def _fit_embedding(src, target):
  rows_src, rows_target = src["embedding"].shape[0], target["embedding"].shape[0]
  if rows_src == rows_target + 1:  # a language model's [MASK] row
    return {"embedding": src["embedding"][:rows_target]}
  return src


def _check_same(name, src, target, workdir, src_config) -> None:
  a, b = _flat(src), _flat(target)
  problem = None
  if set(a) != set(b):
    only = sorted(set(a) ^ set(b))[0]
    where = "there" if only in a else "here"
    problem = f"{name}/{only} exists only {where}"
  else:
    for key in sorted(a):
      if tuple(a[key].shape) != tuple(b[key].shape):
        problem = (f"{name}/{key} has shape {tuple(a[key].shape)} there and "
                   f"{tuple(b[key].shape)} here")
        break
  if problem:
    raise errors.ConfigError(f"init_from={workdir} does not match this config: {problem}. It was "
                     f"trained with {_architecture(src_config)}; fine-tune with the same "
                     "model settings and max_len.")
