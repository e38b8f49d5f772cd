"""Metrics as JSON lines and TensorBoard event files (tensorboardX: no TensorFlow), and a
progress bar with loss, steps per second and time remaining."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Optional

from luna_jax.data import lines
from luna_jax.training.workdir import write_atomically


METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Writes {step, split, name: value} records; a no-op on processes other than 0. A
  context manager that closes its files.

  resumed_at: the step a run resumes from (0: from the start). metrics.jsonl's rows of
  later steps, its test rows and rows cut short by a kill are dropped first (`dropped`
  counts them): the process that wrote them is being trained again from there, so each
  step appears once. (TensorBoard's event files keep theirs.)
  """

  def __init__(self, workdir: pathlib.Path, enabled: bool = True,
               resumed_at: Optional[int] = None):
    self.enabled, self.dropped = enabled, 0
    if not enabled:
      return
    from tensorboardX import SummaryWriter

    path = pathlib.Path(workdir) / METRICS_FILE
    if resumed_at is not None and path.is_file():
      self.dropped = _keep_rows_through(path, resumed_at)
    self.jsonl = open(path, "a")
    self.tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, "time": time.time()}
    record.update({k: float(v) for k, v in values.items()})
    self.jsonl.write(json.dumps(record) + "\n")
    self.jsonl.flush()
    for name, value in values.items():
      self.tb.add_scalar(f"{split}/{name}", float(value), int(step))
    self.tb.flush()

  def close(self) -> None:
    if self.enabled:
      self.jsonl.close()
      self.tb.close()


def _keep_rows_through(path: pathlib.Path, step: int) -> int:
  rows, kept = lines.split_lines(path.read_text()), []
  for line in rows:
    try:
      row = json.loads(line)
      if row["step"] <= step and row["split"] != "test":
        kept.append(line)
    except (ValueError, KeyError, TypeError):
      pass  # a row cut short by a kill
  dropped = len(rows) - len(kept)
  if dropped:
    write_atomically(path, lines.join_lines(kept))
  return dropped


class Progress:
  """A tqdm bar over training steps (or plain log lines when disabled)."""

  def __init__(self, total: int, initial: int, enabled: bool):
    self.bar = None
    self.start_time, self.start_step = time.time(), initial
    if enabled:
      from tqdm import tqdm

      self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, loss: float) -> None:
    rate = (step - self.start_step) / max(1e-9, time.time() - self.start_time)
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{rate:.2f}")

  def message(self, text: str) -> None:
    if self.bar is not None:
      self.bar.write(text)
    else:
      print(text, flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
