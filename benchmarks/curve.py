"""A run's training loss and validation accuracy against steps and wall time, from its
metrics.jsonl; prints one line with the last validation point.

    python benchmarks/curve.py WORKDIR/metrics.jsonl curve.png
"""

from __future__ import annotations

import json
import pathlib
import sys


def read(path) -> dict[str, list[dict]]:
  splits: dict[str, list[dict]] = {}
  for line in pathlib.Path(path).read_text().splitlines():
    if line.strip():
      record = json.loads(line)
      splits.setdefault(record["split"], []).append(record)
  return splits


def main(argv) -> int:
  if len(argv) != 2:
    print(__doc__, file=sys.stderr)
    return 2
  if not pathlib.Path(argv[0]).is_file():
    print(f"curve: no {argv[0]} (the run wrote no metrics)")
    return 1
  splits = read(argv[0])
  train, val = splits.get("train", []), splits.get("validation", [])
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
  loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train])
  loss_ax.set(xlabel="step", ylabel="training loss")
  acc_ax.plot([r["step"] for r in val], [r["accuracy"] for r in val], "o-")
  acc_ax.set(xlabel="step", ylabel="validation accuracy")
  fig.tight_layout()
  fig.savefig(argv[1], dpi=110)
  if val:
    start = min(r["time"] for r in train + val)
    last = val[-1]
    print(f"curve: validation accuracy {last['accuracy']:.4f} at step {last['step']} "
          f"({last['time'] - start:.0f} s after the first metric); {len(val)} points")
  else:
    print(f"curve: no validation point yet; {len(train)} training points")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
