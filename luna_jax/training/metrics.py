"""Metrics as JSON lines and TensorBoard event files (tensorboardX: no TensorFlow), and a
progress bar with loss, steps per second and time remaining."""

from __future__ import annotations

import json
import pathlib
import time


class MetricWriter:
  """Writes {step, split, name: value} records; a no-op on processes other than 0. A
  context manager that closes its files."""

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    from tensorboardX import SummaryWriter

    self.jsonl = open(pathlib.Path(workdir) / "metrics.jsonl", "a")
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
