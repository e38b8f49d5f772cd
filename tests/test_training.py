"""train_and_evaluate end to end: every task, resume, sharding, errors, NaN, eval.py."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import portpicker
import pytest

from luna_jax.training import NonFiniteLossError, every, train_and_evaluate, validate
from luna_jax.training import config as config_lib
from luna_jax.training.checkpoint import Checkpointer
from luna_jax.training.evaluate import evaluate_workdir
from luna_jax.training.workloads import lra as lra_workload
from tests.training_fixtures import latest_params, tiny_config, train_killed_then_resumed

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("task,mechanism", [
    ("listops", "luna"), ("text", "transformer"), ("retrieval", "luna"), ("image", "linformer"),
    ("pathfinder32", "lightconv"), ("pathx", "dynamicconv"), ("listops", "bf16")])
def test_every_task_trains_end_to_end(task, mechanism, data_dir, tmp_path):
  config = tiny_config(task, data_dir, "luna" if mechanism == "bf16" else mechanism)
  if mechanism == "bf16":
    config.model.dtype = "bfloat16"  # bf16 compute, float32 parameters
  summary = train_and_evaluate(config, tmp_path)
  assert summary["steps"] == 4 and summary["best_step"] in (2, 4)
  assert 0 <= summary["test_accuracy"] <= 1 and 0 < summary["test_majority_rate"] <= 1
  assert "best checkpoint" in summary["checkpoint_used"]
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in records} == {"train", "validation", "test"}
  assert all(np.isfinite(r["loss"]) for r in records)
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  saved = json.loads((tmp_path / "summary.json").read_text())
  assert saved["test_accuracy"] == summary["test_accuracy"]
  provenance = saved["data_provenance"]  # the fixture files: a release folder or an archive
  assert provenance["source"] == ("manual" if task in ("text", "image") else "release")
  assert pathlib.Path(provenance.get("release_dir") or provenance["archive"]).exists()


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_run(data_dir, tmp_path):
  config = tiny_config("listops", data_dir, steps=8)
  config.checkpoint_every = 4
  config.model.dropout = 0.3  # dropout keys must be replayed exactly too
  train_and_evaluate(config, tmp_path / "straight")

  def left_step_4():  # killed after step 6, the run left the checkpoint of step 4
    assert Checkpointer(tmp_path / "resumed" / "checkpoints", 2).latest_step() == 4

  summary = train_killed_then_resumed(config, tmp_path / "resumed", kill_after=6,
                                      after_kill=left_step_4)
  assert summary["steps"] == 8
  for a, b in zip(latest_params(tmp_path / "straight"), latest_params(tmp_path / "resumed"), strict=True):
    np.testing.assert_array_equal(a, b)


def _run_in_subprocess(config, workdir, env_extra, log, args=()):
  """Starts train_subprocess.py; output goes to a file (a full pipe would stall one
  process of a multi-process run, and with it the other)."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
  script = ROOT / "tests" / "train_subprocess.py"
  return subprocess.Popen([sys.executable, str(script), config.to_json(), str(workdir), *args],
                          env=env, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def test_eight_devices_and_two_processes_match_one_device(data_dir, tmp_path):
  """All three run in fresh processes (the test process has float64 enabled)."""
  config = tiny_config("listops", data_dir, steps=4)
  config.batch_size = 8
  # Adam divides by sqrt(v) + eps: with a tiny eps a gradient entry near zero turns
  # float rounding into a full step of either sign. A larger eps keeps differences at
  # the size of the rounding, so the comparison below can be tight.
  config.optimizer.eps = 1e-2
  port = portpicker.pick_unused_port()
  flags = os.environ.get("XLA_FLAGS", "")  # (the conftest's, without a device count)
  runs = {
      "one": [{"XLA_FLAGS": flags}],
      "eight": [{"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=8"}],
      "two": [{"XLA_FLAGS": flags}, (f"127.0.0.1:{port}", "2", "0")],
  }
  procs = [(name, _run_in_subprocess(config, tmp_path / name, env, tmp_path / f"{name}.log",
                                     *extra))
           for name, (env, *extra) in runs.items()]
  procs.append(("two", _run_in_subprocess(config, tmp_path / "two", {"XLA_FLAGS": flags},
                                          tmp_path / "two1.log", (f"127.0.0.1:{port}", "2", "1"))))
  for _, proc in procs:
    proc.wait(timeout=600)
  for log in sorted(tmp_path.glob("*.log")):
    assert all(p.returncode == 0 for _, p in procs), log.read_text()
  assert "devices: 8" in (tmp_path / "eight.log").read_text()
  assert "processes: 2" in (tmp_path / "two.log").read_text()
  def losses(name):
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    records = (json.loads(line) for line in lines)
    return [r["loss"] for r in records if r["split"] == "train"]

  one = latest_params(tmp_path / "one")
  for name in ("eight", "two"):
    np.testing.assert_allclose(losses(name), losses("one"), rtol=1e-5, err_msg=name)
    for a, b in zip(one, latest_params(tmp_path / name), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


def test_invalid_settings_fail_before_compiling(data_dir):
  def fails(match, devices=1, **changes):
    config = tiny_config("listops", data_dir)
    for key, value in changes.items():
      node = config
      *path, last = key.split(".")
      for p in path:
        node = node[p]
      node[last] = value
    with pytest.raises(ValueError, match=match):
      validate(config, devices)

  fails("model.name='performer' is not a mechanism; choose one of luna, transformer",
        **{"model.name": "performer"})
  fails("model.num_heads=3 must divide model.d_model=16", **{"model.num_heads": 3})
  fails(r"batch_size=4 must be divisible by the number of devices \(3\)", devices=3)
  fails("max_len=48 is longer than the Linformer projections allow",
        **{"model.name": "linformer", "model.linformer.max_len": 32})
  fails("unknown task 'listop'", task="listop")


def test_train_py_rejects_misspelled_overrides_and_missing_data(tmp_path):
  bad = subprocess.run([sys.executable, "train.py", "--config.model.nmae=luna",
                        f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
  assert bad.returncode != 0 and "nmae" in bad.stderr
  missing = subprocess.run(
      [sys.executable, "train.py", "--config=configs/lra_text.py:cpu",
       f"--config.data_dir={tmp_path / 'empty'}", f"--workdir={tmp_path / 'w'}"],
      cwd=ROOT, capture_output=True, text=True)
  assert missing.returncode != 0
  assert "python -m luna_jax.data prepare text --data_dir" in missing.stderr


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
  config = tiny_config("listops", data_dir, steps=6)
  config.checkpoint_every = 1
  config.optimizer.learning_rate = 1e38
  config.optimizer.warmup_steps = 1
  with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
    train_and_evaluate(config, tmp_path)
  step = Checkpointer(tmp_path / "checkpoints", 2).latest_step()
  assert step is not None and step < 6
  assert all(np.all(np.isfinite(a)) for a in latest_params(tmp_path, step))


def test_every_n_steps_and_the_last_step():
  assert [step for step in range(1, 11) if every(step, 4, 10)] == [4, 8, 10]
  assert [step for step in range(1, 5) if every(step, 1, 4)] == [1, 2, 3, 4]


def test_eval_rebuilds_the_model_from_the_workdir(data_dir, tmp_path, monkeypatch):
  validated, checked = [], config_lib.validate
  looked_up, lookup = [], lra_workload._task

  def counted(*args, **kw):
    validated.append(args)
    return checked(*args, **kw)

  def counted_lookup(*args, **kw):
    looked_up.append(args)
    return lookup(*args, **kw)

  monkeypatch.setattr(config_lib, "validate", counted)
  monkeypatch.setattr(lra_workload, "_task", counted_lookup)
  summary = train_and_evaluate(tiny_config("retrieval", data_dir), tmp_path)
  assert len(validated) == 1 and len(looked_up) == 1  # once per run
  result = evaluate_workdir(tmp_path, "best", "test")
  assert len(validated) == 2
  assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
  assert result["step"] == summary["best_step"]
  latest = evaluate_workdir(tmp_path, "latest", "validation")
  assert latest["step"] == 4
  with pytest.raises(FileNotFoundError, match="available steps"):
    evaluate_workdir(tmp_path, "3", "test")
