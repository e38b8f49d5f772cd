"""Training and evaluation (used by train.py, eval.py, translate.py and the notebooks).

  config             the shared config defaults, each workload's keys, and the checks
  model_config       the model block: mixer blocks made from the registry, the encoder,
                     classifier and language model it describes
  workloads/         the kinds of run, one module each: LRA tasks, language modelling of a
                     corpus, translation (`Workload`, `register_workload`)
  variants           config variants (`--config configs/FILE.py:NAME`)
  run                Run: a run resolved once (config, workload, data source, mesh, model,
                     paths)
  loop               train_and_evaluate: data-parallel training, checkpoints, the test pass
  steps, optim       the train state and pure train/eval steps; the optimiser (AdamW or
                     Apollo), its schedules and gradient clipping
  apollo             Apollo (Ma 2020) as an optax transformation, the Luna WMT optimiser
  objectives         classification, MLM, causal LM, translation: the metric sums of a step
  checkpoint         the latest and the best checkpoints (orbax), resumed exactly; a failed
                     save stopped, a damaged checkpoint passed over
  workdir            the workdir's lock, checks, config drift on resume, records counted once
  preemption         SIGTERM / SIGINT: save at the step boundary and stop (Interrupted)
  metrics            metrics as JSON lines and TensorBoard events
  evaluate           evaluating a workdir's checkpoint (eval.py)
  pretrain           self-pre-training then fine-tuning in one run
  init_from          starting from another workdir's embeddings and encoder
  translation_eval   BLEU of generated translations
  translate          translating raw sentences (translate.py)
  aot                compile-only runs for a TPU slice (train.py --compile_topology)
  topology, flops    TPU slices by name (compile-only devices); FLOPs from a jaxpr
"""

from luna_jax.training.config import base_config, build_model, validate
from luna_jax.training.loop import NonFiniteLossError, Trainer, every, train_and_evaluate
from luna_jax.training.preemption import Interrupted
from luna_jax.training.run import Run
from luna_jax.training.variants import apply_variant

__all__ = ["Interrupted", "NonFiniteLossError", "Run", "Trainer", "apply_variant", "base_config",
           "build_model", "every", "train_and_evaluate", "validate"]
