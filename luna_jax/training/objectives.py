"""What a run optimises: classification (the LRA tasks), masked or causal language
modelling (pre-training), translation. The loop, steps and checkpoints know only this
interface; a workload (`workloads`) chooses its objective.

An objective turns (model, params, batch, key) into metric sums over a batch: the loss
summed over predicted items ("loss_sum"), the correct predictions ("correct") and the
item count ("count"): examples for classification, predicted tokens for language models.
Sums average exactly over micro-batches, devices and evaluation batches.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from luna_jax import losses
from luna_jax.models import language_model as lm
from luna_jax.models.seq2seq import shift_right

def _sums(logits, labels, weights) -> dict:
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * weights), "correct": jnp.sum(correct * weights),
          "count": jnp.sum(weights)}


def _documents(batch: dict) -> tuple[jax.Array, jax.Array]:
  """(tokens (B', N), weights (B',)): pairs (retrieval) become single documents."""
  tokens, weight = batch["inputs"], batch["weight"]
  if tokens.ndim == 3:
    b, two, n = tokens.shape
    return tokens.reshape(b * two, n), jnp.repeat(weight, two)
  return tokens, weight


@dataclasses.dataclass(frozen=True)
class Classification:
  """Cross-entropy of the label; the best checkpoint has the highest validation accuracy."""

  num_classes: int
  name: str = "classify"
  select: str = "accuracy"  # the validation metric that picks the best checkpoint
  higher_is_better: bool = True

  def sums(self, model, params, batch, key, train: bool) -> dict:
    rngs = {"dropout": key} if train else {}
    logits = model.apply({"params": params}, batch["inputs"], deterministic=not train,
                         rngs=rngs)
    sums = _sums(logits, batch["label"], batch["weight"])
    if not train:
      sums["label_counts"] = jnp.zeros((self.num_classes,), jnp.float32).at[
          batch["label"]].add(batch["weight"])
    return sums

  def summarize(self, totals: dict) -> dict:
    count = max(float(totals["count"]), 1.0)
    return {"accuracy": float(totals["correct"]) / count,
            "loss": float(totals["loss_sum"]) / count,
            "majority_rate": float(max(totals["label_counts"])) / count,
            "examples": float(totals["count"])}

  @staticmethod
  def summary_line(summary: dict) -> str:
    return (f"Test accuracy {summary['test_accuracy']:.4f} with "
            f"{summary['checkpoint_used']}; majority class "
            f"{summary['test_majority_rate']:.4f}; best validation accuracy "
            f"{summary['best_val_accuracy']:.4f}; wall time {summary['wall_time_s']:.0f} s.")


@dataclasses.dataclass(frozen=True)
class LanguageModelling:
  """Masked ("mlm") or causal ("clm") language modelling of the inputs; labels unused.
  Loss and accuracy are over predicted tokens; the best checkpoint has the lowest
  validation loss. Training masks come from the step's key (so a resumed run draws the
  masks of an uninterrupted one); evaluation masks from the batch's index alone."""

  name: str  # "mlm" | "clm"
  num_tokens: int  # content ids 1..num_tokens (the ones masking may choose or insert)
  mask_token: int
  rates: lm.MaskingRates = lm.MaskingRates()
  select: str = "loss"
  higher_is_better: bool = False

  @classmethod
  def of(cls, name: str, vocab, mlm) -> LanguageModelling:
    """The objective `name` over a vocabulary's content ids, with the config's `mlm`
    block's masking rates."""
    return cls(name=name, num_tokens=vocab.num_tokens, mask_token=lm.mask_id(vocab.size),
               rates=lm.MaskingRates(mlm.mask_rate, mlm.mask_fraction, mlm.random_fraction))

  def sums(self, model, params, batch, key, train: bool) -> dict:
    tokens, doc_weight = _documents(batch)
    segments = batch.get("segments")  # packed corpus rows
    mask_key, dropout_key = jax.random.split(key)
    if self.name == "mlm":
      inputs, targets, weights = lm.mask_tokens(
          tokens, mask_key, num_tokens=self.num_tokens, mask_token=self.mask_token,
          rates=self.rates)
    else:
      inputs = tokens
      targets, weights = lm.next_token_targets(tokens, segments)
    rngs = {"dropout": dropout_key} if train else {}
    logits = model.apply({"params": params}, inputs, segment_ids_BxN=segments,
                         deterministic=not train, rngs=rngs)
    sums = _sums(logits, targets, weights * doc_weight[:, None])
    if not train:
      sums["documents"] = jnp.sum(doc_weight)
    return sums

  def summarize(self, totals: dict) -> dict:
    count = max(float(totals["count"]), 1.0)
    loss = float(totals["loss_sum"]) / count
    return {"accuracy": float(totals["correct"]) / count, "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)), "tokens": float(totals["count"]),
            "examples": float(totals["documents"])}

  @staticmethod
  def summary_line(summary: dict) -> str:
    return (f"Test perplexity {summary['test_perplexity']:.3f} (loss "
            f"{summary['test_loss']:.4f}, token accuracy {summary['test_accuracy']:.4f}, "
            f"{summary['objective']}) with {summary['checkpoint_used']}; wall time "
            f"{summary['wall_time_s']:.0f} s.")


@dataclasses.dataclass(frozen=True)
class Translation:
  """Label-smoothed cross-entropy of the target tokens given the source (teacher forced:
  the decoder reads bos_id y_1 .. y_{T-1}, bos_id the model's `decoder_start_id`: BOS, or
  EOS under fairseq's conventions); loss, accuracy and perplexity (of the plain
  NLL) over target tokens, EOS included. BLEU of generated translations comes from
  the translation workload. The best checkpoint has the lowest validation loss, or the highest
  validation BLEU (select="bleu")."""

  bos_id: int
  label_smoothing: float = 0.1
  select: str = "loss"
  name: str = "seq2seq"

  @property
  def higher_is_better(self) -> bool:
    return self.select == "bleu"

  def sums(self, model, params, batch, key, train: bool) -> dict:
    target = batch["target"]
    rngs = {"dropout": key} if train else {}
    logits = model.apply({"params": params}, batch["source"], shift_right(target, self.bos_id),
                         deterministic=not train, rngs=rngs)
    weights = (target != 0).astype(jnp.float32) * batch["weight"][:, None]
    smoothed, nll = losses.label_smoothed_nll(logits, target, self.label_smoothing)
    correct = (jnp.argmax(logits, -1) == target).astype(jnp.float32)
    sums = {"loss_sum": jnp.sum(smoothed * weights), "correct": jnp.sum(correct * weights),
            "count": jnp.sum(weights)}
    if not train:
      sums["nll_sum"] = jnp.sum(nll * weights)
      sums["sentences"] = jnp.sum(batch["weight"])
    return sums

  def summarize(self, totals: dict) -> dict:
    count = max(float(totals["count"]), 1.0)
    nll = float(totals["nll_sum"]) / count
    return {"accuracy": float(totals["correct"]) / count,
            "loss": float(totals["loss_sum"]) / count, "nll_loss": nll,
            "perplexity": math.exp(min(nll, 700.0)), "tokens": float(totals["count"]),
            "examples": float(totals["sentences"])}

  @staticmethod
  def summary_line(summary: dict) -> str:
    return (f"Test BLEU {summary['test_bleu']:.2f} (copying the source: "
            f"{summary['copy_bleu']:.2f}; perplexity {summary['test_perplexity']:.3f}) "
            f"with {summary['checkpoint_used']}; wall time {summary['wall_time_s']:.0f} s.")
