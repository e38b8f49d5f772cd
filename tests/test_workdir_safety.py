"""Nothing lost to a signal, a failed save, a second process, a damaged checkpoint or a
changed config, each through `python train.py` as a user meets it. Every resumed run
ends with the parameters of one uninterrupted run (the `straight` fixture), bit for bit.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from luna_jax.training import preemption
from luna_jax.training.checkpoint import saved_steps
from tests.training_fixtures import latest_params

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, EVERY = 200, 50  # tiny ListOps steps, checkpoint interval (2 kept)
CONFIG = """
from tests.training_fixtures import tiny_config

def get_config():
  c = tiny_config("listops", {data_dir!r}, steps={steps})
  c.checkpoint_every, c.eval_every, c.log_every = {every}, {every}, 1
  c.model.dropout = 0.2  # the resumed dropout keys must match too
  return c
"""


def _config_file(folder: pathlib.Path, data_dir, steps=STEPS) -> str:
  path = folder / f"tiny_{steps}.py"
  path.write_text(CONFIG.format(data_dir=str(data_dir), steps=steps, every=EVERY))
  return str(path)


def _command(config: str, workdir, *overrides, script="train.py") -> list[str]:
  return [sys.executable, str(ROOT / script), "--config", config, "--workdir", str(workdir),
          *overrides]


def _env() -> dict:
  return dict(os.environ, PYTHONPATH=str(ROOT))


def _train(config: str, workdir, *overrides, script="train.py", **env):
  return subprocess.run(_command(config, workdir, *overrides, script=script), cwd=ROOT,
                        env=dict(_env(), **env), capture_output=True, text=True,
                        timeout=600)


def _start(config: str, workdir, *overrides) -> subprocess.Popen:
  return subprocess.Popen(_command(config, workdir, *overrides), cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def _wait_for_step(proc: subprocess.Popen, workdir, step: int) -> None:
  """Until the run has logged `step` (it logs every step)."""
  deadline = time.time() + 300
  while time.time() < deadline:
    assert proc.poll() is None, proc.communicate()
    try:
      if any(r["split"] == "train" and r["step"] >= step for r in _rows(workdir)):
        return
    except ValueError:
      pass  # a line being written
    time.sleep(0.005)
  raise AssertionError(f"no step {step} within 300 s")


def _each_step_once(workdir) -> None:
  for split in ("train", "validation", "test"):
    steps = [r["step"] for r in _rows(workdir) if r["split"] == split]
    assert len(steps) == len(set(steps)), (split, steps)
  train = sorted(r["step"] for r in _rows(workdir) if r["split"] == "train")
  assert train == list(range(1, train[-1] + 1))


def _same_params(workdir, straight) -> None:
  for a, b in zip(latest_params(straight), latest_params(workdir), strict=True):
    np.testing.assert_array_equal(a, b)


def _one_error(result, *phrases) -> None:
  assert result.returncode == 2, result.stdout + result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  assert ("\n" + result.stderr).count("\nerror: ") == 1, result.stderr
  for phrase in phrases:
    assert phrase in result.stderr, result.stderr


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """(config file, workdir) of the run trained without interruption."""
  folder = tmp_path_factory.mktemp("straight")
  config = _config_file(folder, data_dir)
  result = _train(config, folder / "run")
  assert result.returncode == 0, result.stdout + result.stderr
  return config, folder / "run"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_at_the_step_and_the_rerun_resumes_bit_exactly(sig, straight,
                                                                       tmp_path):
  config, straight_dir = straight
  workdir = tmp_path / "run"
  proc = _start(config, workdir)
  _wait_for_step(proc, workdir, 5)
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == preemption.EXIT_INTERRUPTED, out + err
  assert "Traceback" not in err, err
  stopped = max(saved_steps(workdir / "checkpoints"))
  assert 5 <= stopped < STEPS and stopped % EVERY, stopped  # its own step, not an interval's
  assert f"Stopped by {sig.name} at step {stopped}" in out, out
  assert "Rerun the same command" in out
  assert not (workdir / "train.lock").exists()

  result = _train(config, workdir)
  assert result.returncode == 0, result.stdout + result.stderr
  assert f"Resumed from {workdir / 'checkpoints' / 'latest'} at step {stopped}." in result.stdout
  _same_params(workdir, straight_dir)
  _each_step_once(workdir)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["processes"] == 2
  assert summary["test_accuracy"] == json.loads(
      (straight_dir / "summary.json").read_text())["test_accuracy"]


def test_a_failed_save_stops_the_run_within_a_step_and_keeps_the_last_checkpoint(
    data_dir, tmp_path):
  """The disk "fills up" at the save of step 100: tests/train_with_full_disk.py makes the
  background writer fail there with ENOSPC, as a full disk does."""
  config = _config_file(tmp_path, data_dir)
  workdir = tmp_path / "run"
  result = _train(config, workdir, script="tests/train_with_full_disk.py",
                  FULL_DISK_TIME_FILE=str(tmp_path / "failed_at"))
  _one_error(result, "saving the latest checkpoint of step 100",
             str(workdir / "checkpoints" / "latest"), "No space left on device",
             "free space on that disk", "resume from step 50")
  assert saved_steps(workdir / "checkpoints") == [50]
  assert not list((workdir / "checkpoints").rglob("*orbax-checkpoint-tmp*"))
  # The loop checks the writer after every step: at most the step under way when the
  # write failed is logged after it.
  failed_at = float((tmp_path / "failed_at").read_text())
  after = [r["step"] for r in _rows(workdir) if r["split"] == "train" and r["time"] > failed_at]
  assert len(after) <= 1, after
  assert not (workdir / "train.lock").exists()


def test_a_second_process_is_refused_and_a_dead_ones_lock_taken_over(straight, tmp_path):
  config, _ = straight
  workdir = tmp_path / "run"
  first = _start(config, workdir, "--config.num_train_steps=1000000")  # runs until killed
  _wait_for_step(first, workdir, 1)
  second = _train(config, workdir)
  _one_error(second, f"the workdir {workdir} is in use by PID {first.pid} on host",
             "training since")
  _wait_for_step(first, workdir, EVERY + 5)
  first.kill()  # kill -9: the lock stays behind, and metrics rows past its last save
  first.communicate()
  assert (workdir / "train.lock").exists()
  saved = max(saved_steps(workdir / "checkpoints"))
  assert max(r["step"] for r in _rows(workdir)) > saved

  third = _train(config, workdir, f"--config.num_train_steps={saved + 10}")
  assert third.returncode == 0, third.stdout + third.stderr
  assert f"taking over {workdir / 'train.lock'}, left by PID {first.pid}" in third.stdout
  assert f"metrics rows after step {saved}, which is trained again" in third.stdout
  _each_step_once(workdir)
  allowed = {"step": saved, "fields": {"num_train_steps": [1000000, saved + 10]},
             "override": False}  # an allowed change, recorded
  assert json.loads((workdir / "config.json").read_text())["changes_on_resume"] == [allowed]
  assert json.loads((workdir / "summary.json").read_text())["steps"] == saved + 10
  assert not (workdir / "train.lock").exists()


def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one(straight, tmp_path):
  config, straight_dir = straight
  workdir = tmp_path / "run"
  shutil.copytree(straight_dir, workdir)
  (workdir / "summary.json").unlink()
  newest = workdir / "checkpoints" / "latest" / str(STEPS)
  biggest = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
  result = _train(config, workdir)
  assert result.returncode == 0, result.stdout + result.stderr
  assert f"warning: the checkpoint of step {STEPS} in" in result.stdout, result.stdout
  assert f"Resumed from {workdir / 'checkpoints' / 'latest'} at step {STEPS - EVERY}." \
      in result.stdout
  assert list((workdir / "checkpoints" / "damaged").glob(f"{STEPS}-*"))
  _same_params(workdir, straight_dir)
  _each_step_once(workdir)


def test_a_changed_config_is_refused_before_writing_and_an_allowed_one_recorded(
    straight, tmp_path):
  config, straight_dir = straight
  workdir = tmp_path / "run"
  shutil.copytree(straight_dir, workdir)
  saved = (workdir / "config.json").read_bytes()
  refused = _train(config, workdir, "--config.batch_size=8", "--config.model.num_layers=2")
  _one_error(refused, f"checkpoint (step {STEPS}) was trained with another config",
             "batch_size: 4 -> 8", "model.num_layers: 1 -> 2", "allow_config_change")
  assert (workdir / "config.json").read_bytes() == saved
  # Forced, a change of the model's shape fails at the restore, still before any write.
  forced = _train(config, workdir, "--config.model.num_layers=2",
                  "--config.allow_config_change=True")
  _one_error(forced, "no checkpoint in", f"restores (step {STEPS}: ",
             f"step {STEPS - EVERY}: ", "pass the saved one")
  assert (workdir / "config.json").read_bytes() == saved
  assert saved_steps(workdir / "checkpoints") == [STEPS - EVERY, STEPS]

  more = _train(config, workdir, f"--config.num_train_steps={STEPS + 10}",
                "--config.optimizer.learning_rate=0.002", "--config.allow_config_change=True")
  assert more.returncode == 0, more.stdout + more.stderr
  change = {"step": STEPS, "override": True, "fields": {
      "allow_config_change": [False, True], "num_train_steps": [STEPS, STEPS + 10],
      "optimizer.learning_rate": [0.001, 0.002]}}
  assert json.loads((workdir / "config.json").read_text())["changes_on_resume"] == [change]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["changes_on_resume"] == [change] and summary["steps"] == STEPS + 10
  _each_step_once(workdir)


def test_a_workdir_that_cannot_be_written_fails_before_any_data_is_generated(tmp_path):
  """The default config generates ListOps into an empty data_dir; a bad workdir stops it
  first."""
  a_file = tmp_path / "file"
  a_file.write_text("")
  if os.geteuid() == 0:  # root writes through permissions; sysfs refuses it too
    unwritable = pathlib.Path("/sys/luna_jax_workdir")
  else:
    (tmp_path / "locked").mkdir(mode=0o555)
    unwritable = tmp_path / "locked" / "run"
  data_dir = tmp_path / "data"
  for workdir, phrase in ((a_file, "is a file, not a folder"),
                          (unwritable, f"cannot write the workdir {unwritable}")):
    result = _train("configs/lra_listops.py:cpu", workdir, f"--config.data_dir={data_dir}")
    _one_error(result, phrase)
  assert not data_dir.exists()


def test_checkpoint_every_minutes_saves_by_the_clock(data_dir, tmp_path):
  from luna_jax.training import train_and_evaluate
  from tests.training_fixtures import tiny_config

  config = tiny_config("listops", data_dir, steps=6)
  config.checkpoint_every, config.eval_every, config.log_every = 1000, 1000, 2
  config.keep_checkpoints = 5
  config.checkpoint_every_minutes = 1e-9  # due at every log step
  train_and_evaluate(config, tmp_path)
  assert saved_steps(tmp_path / "checkpoints") == [2, 4, 6]


def _tiny_checkpoints(folder, steps):
  import jax.numpy as jnp

  from luna_jax.training.checkpoint import Checkpointer

  ckpt = Checkpointer(folder, keep=len(steps))
  for step in steps:
    ckpt.save_latest(step, {"w": jnp.full(3, float(step))}, {"best": step})
  ckpt.wait()
  return ckpt


def test_when_no_checkpoint_restores_the_error_lists_each(tmp_path, capsys):
  import jax

  from luna_jax import errors

  ckpt = _tiny_checkpoints(tmp_path, [1, 2])
  for step in (1, 2):
    for f in (tmp_path / "latest" / str(step) / "state").rglob("*"):
      if f.is_file():
        f.unlink()
  abstract = {"w": jax.ShapeDtypeStruct((3,), "float32")}
  with pytest.raises(errors.WorkdirError, match=r"no checkpoint in .* restores \(step 2: .*; "
                     r"step 1: .*\)\. .*move .* aside"):
    ckpt.restore_newest_intact(abstract)
  assert capsys.readouterr().out.count("warning: the checkpoint of step") == 2
  assert ckpt.latest_steps() == [1, 2]  # nothing set aside when nothing restores
  ckpt.close()


def test_a_lock_is_taken_over_only_from_a_process_that_no_longer_runs(tmp_path, capsys):
  """Or, from another host, one that stopped renewing it (a preempted VM, the workdir on
  shared storage)."""
  import socket

  from luna_jax import errors
  from luna_jax.training import workdir as workdir_lib

  lock = workdir_lib.WorkdirLock(tmp_path)
  me = socket.gethostname()
  parent = os.getppid()  # alive, and not this process
  live = {"host": me, "pid": parent, "started": "then", "boot_id": workdir_lib._boot_id(),
          "pid_start": workdir_lib._start_ticks(parent)}
  hour_ago = time.time() - 3600
  cases = [  # (holder, when it last renewed the lock, taken over?)
      (live, None, False),
      (live, hour_ago, False),  # alive here: the heartbeat does not matter
      (dict(live, host="elsewhere"), None, False),
      (dict(live, host="elsewhere"), hour_ago, True),  # silent for longer than STALE_S
      (dict(live, boot_id="another boot"), None, True),  # the machine restarted
      (dict(live, pid_start="1"), None, True),  # its PID now belongs to another process
      (dict(live, pid=2 ** 22 + 1), None, True),  # no such process
  ]
  for holder, renewed, taken in cases:
    (tmp_path / workdir_lib.LOCK_FILE).write_text(json.dumps(holder))
    if renewed is not None:
      os.utime(tmp_path / workdir_lib.LOCK_FILE, (renewed, renewed))
    if taken:
      with lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
      assert "warning: taking over" in capsys.readouterr().out
      assert not lock.path.exists()
    else:
      with pytest.raises(errors.WorkdirError, match=f"in use by PID {holder['pid']} on host "
                         f"{holder['host']}, training since then"):
        lock.acquire()


def test_the_lock_is_renewed_while_held(tmp_path, monkeypatch):
  from luna_jax.training import workdir as workdir_lib

  monkeypatch.setattr(workdir_lib.WorkdirLock, "HEARTBEAT_S", 0.05)
  with workdir_lib.WorkdirLock(tmp_path) as lock:
    old = time.time() - 3600
    os.utime(lock.path, (old, old))
    deadline = time.time() + 30  # (a busy host may start the thread late)
    while time.time() - lock.path.stat().st_mtime > 60 and time.time() < deadline:
      time.sleep(0.05)
    assert time.time() - lock.path.stat().st_mtime < 60
  assert not lock.path.exists()


def test_on_two_processes_a_sigterm_to_one_stops_both_at_the_same_saved_step(data_dir,
                                                                              tmp_path):
  """JAX's preemption service (multihost_utils.reached_preemption_sync_point) agrees on
  the step; each process saves its part of the checkpoint there and exits with 75."""
  import portpicker

  config = _config_file(tmp_path, data_dir)
  workdir = tmp_path / "run"
  address = f"127.0.0.1:{portpicker.pick_unused_port()}"
  procs = [_start(config, workdir, "--config.num_train_steps=1000000",
                  "--config.batch_size=8", f"--coordinator_address={address}",
                  "--num_processes=2", f"--process_id={i}") for i in (0, 1)]
  _wait_for_step(procs[0], workdir, 5)
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=300) for p in procs]
  for proc, (out, err) in zip(procs, outs, strict=True):
    assert proc.returncode == preemption.EXIT_INTERRUPTED, out + err
  stopped = max(saved_steps(workdir / "checkpoints"))
  for out, _ in outs:
    assert f"Stopped by SIGTERM at step {stopped}; the checkpoint of step {stopped}" in out
  assert not (workdir / "train.lock").exists()
