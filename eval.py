"""Evaluates a workdir's checkpoint on a split and writes the result as JSON.

    python eval.py --workdir runs/listops_luna [--checkpoint best|latest|STEP] [--split test]

The configuration is read from the workdir, so the model is rebuilt exactly as trained.
"""

import json
import pathlib

from absl import flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a train.py workdir", required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "split")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "override the config's data_dir")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from luna_jax.training.evaluate import evaluate_workdir

  result = evaluate_workdir(_WORKDIR.value, _CHECKPOINT.value, _SPLIT.value, _DATA_DIR.value)
  out = pathlib.Path(result["workdir"]) / f"eval_{_SPLIT.value}_{_CHECKPOINT.value}.json"
  out.write_text(json.dumps(result, indent=2))
  print(json.dumps(result, indent=2))
  print(f"written to {out}")


if __name__ == "__main__":
  from luna_jax import cli

  cli.run(main)
