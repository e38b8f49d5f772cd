"""Orbax checkpoints: the latest states (with the data iterator's position) and the best
parameters by validation accuracy, in two folders of the workdir.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a
crash mid-save never replaces a good checkpoint with a broken one. Saves run in the
background: `check` (called after every step) turns a failed one (a full disk, lost
permissions) into a `CheckpointSaveError` naming the path and the cause, with the
temporary folders removed and the earlier checkpoints kept. Resuming falls back past
checkpoints that do not restore (`restore_newest_intact`).
"""

from __future__ import annotations

import datetime
import errno as errno_lib
import logging
import os
import pathlib
import shutil
from typing import Any, Optional

import orbax.checkpoint as ocp

from luna_jax import errors

DAMAGED_DIR = "damaged"  # checkpoints that did not restore, set aside (not deleted)
_TMP_MARK = "orbax-checkpoint-tmp"
_ADVICE = {errno_lib.ENOSPC: "free space on that disk", errno_lib.EDQUOT: "free space",
           errno_lib.EACCES: "make the folder writable", errno_lib.EPERM:
           "make the folder writable", errno_lib.EROFS: "use a writable disk"}


class CheckpointSaveError(errors.UserError, OSError):
  """A checkpoint could not be written; the earlier ones are kept."""


class _RaisedAgain(logging.Filter):
  """Orbax logs a failed background save with its traceback from each thread it passes
  (a full disk gave 1,222 lines); the same exception reaches `Checkpointer.check` or
  `wait`, which report it in one line. So its error records that carry an exception
  are dropped."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and record.levelno >= logging.ERROR
                and f"{os.sep}orbax{os.sep}" in record.pathname)


_RAISED_AGAIN = _RaisedAgain()


def saved_steps(directory: pathlib.Path) -> list[int]:
  """The steps with a finished latest-state checkpoint under a run's checkpoint folder,
  read from the folder names (no Orbax manager, nothing created)."""
  latest = pathlib.Path(directory) / "latest"
  if not latest.is_dir():
    return []
  return sorted(int(d.name) for d in latest.iterdir() if d.is_dir() and d.name.isdigit())


def _os_error(e: BaseException) -> Optional[OSError]:
  """The OSError with an errno behind an exception (its causes, contexts, arguments)."""
  seen, todo = set(), [e]
  while todo:
    x = todo.pop()
    if x is None or id(x) in seen:
      continue
    seen.add(id(x))
    if isinstance(x, OSError) and x.errno:
      return x
    todo += [x.__cause__, x.__context__]
    todo += [a for a in getattr(x, "args", ()) if isinstance(a, BaseException)]
    todo += list(getattr(x, "exceptions", ()))
  return None


def describe(e: BaseException) -> str:
  """One line: the OS's reason where there is one, else the exception's first line."""
  os_error = _os_error(e)
  if os_error is not None:
    return f"{os.strerror(os_error.errno)} (errno {errno_lib.errorcode.get(os_error.errno)})"
  first = (str(e).strip().splitlines() or [""])[0][:200]
  return f"{type(e).__name__}: {first}" if first else type(e).__name__


class Checkpointer:
  """`latest/` and `best/` under a directory; a context manager that closes both."""

  def __init__(self, directory: pathlib.Path, keep: int):
    directory = pathlib.Path(directory).absolute()
    self.directory = directory
    self.latest_dir, self.best_dir = directory / "latest", directory / "best"
    self.latest = ocp.CheckpointManager(
        self.latest_dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        self.best_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
    self.saving: dict[str, int] = {}  # "latest"/"best" -> the step last given to save
    self.in_flight = False  # a save not yet checked
    logging.getLogger("absl").addFilter(_RAISED_AGAIN)  # (a set: added once)
    self.failed = False

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def latest_steps(self) -> list[int]:
    """The steps of the kept latest-state checkpoints, oldest first."""
    return sorted(self.latest.all_steps())

  def best_step(self) -> Optional[int]:
    return self.best.latest_step()

  def save_latest(self, step: int, state, meta: dict) -> None:
    self._save("latest", step, ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def save_best(self, step: int, params, meta: dict) -> None:
    self._save("best", step, ocp.args.Composite(
        params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)))

  def _save(self, kind: str, step: int, args) -> None:
    self.check()
    manager = self.latest if kind == "latest" else self.best
    self.saving[kind] = step
    self.in_flight = True
    if not manager.save(step, args=args):  # Orbax skips, silently, a step at or before
      raise RuntimeError(f"Orbax skipped the save of step {step} in {manager.directory}, "
                         f"which holds step {manager.latest_step()}.")

  def restore_latest(self, abstract_state, step: Optional[int] = None) -> tuple[Any, dict]:
    step = self.latest.latest_step() if step is None else step
    out = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def restore_newest_intact(self, abstract_state) -> tuple[Any, dict]:
    """The newest latest-state checkpoint that restores. Each newer one that does not
    (truncated, a file missing) gets a warning line and is moved to
    checkpoints/damaged/; if none restores, a WorkdirError lists what each one said."""
    tried = {}  # step -> why it did not restore
    for step in reversed(self.latest_steps()):
      try:
        state, meta = self.restore_latest(abstract_state, step)
      except Exception as e:  # noqa: BLE001  (whatever a damaged checkpoint raises)
        tried[step] = describe(e)
        print(f"warning: the checkpoint of step {step} in {self.latest_dir} does not "
              f"restore ({tried[step]}); trying an older one.", flush=True)
        continue
      self._set_aside(tried)
      return state, meta
    raise errors.WorkdirError(
        f"no checkpoint in {self.latest_dir} restores ("
        f"{'; '.join(f'step {k}: {v}' for k, v in tried.items())}). If the config "
        f"changed the model, pass the saved one (config.json); to train from the start, "
        f"move {self.directory} aside.")

  def _set_aside(self, steps) -> None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for step in steps:
      target = self.directory / DAMAGED_DIR / f"{step}-{stamp}"
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.latest_dir / str(step)), str(target))
      print(f"warning: moved it to {target}.", flush=True)
    self.latest.reload()

  def drop_best_after(self, step: int) -> bool:
    """Deletes best checkpoints of steps after `step` (a resumed run trains them again);
    whether a best checkpoint remains."""
    for later in [s for s in self.best.all_steps() if s > step]:
      self.best.delete(later)
    return bool(self.best.all_steps())

  def restore_best(self, abstract_params) -> tuple[Any, dict]:
    out = self.best.restore(self.best.latest_step(), args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore()))
    return out.params, out.meta

  def restore_params(self, checkpoint: str, abstract_state) -> tuple[Any, int]:
    """(parameters, step) of checkpoint "best", "latest" or a step number ("400");
    FileNotFoundError says which checkpoints there are. `abstract_state` is the train
    state's shapes and shardings (its `.params` those of the parameters)."""
    if checkpoint == "best":
      step = self.best_step()
      if step is None:
        raise errors.WorkdirError(f"no best checkpoint in {self.best_dir} (no validation pass "
                                "has run); use --checkpoint latest.")
      return self.restore_best(abstract_state.params)[0], step
    step = self.latest_step() if checkpoint == "latest" else int(checkpoint)
    available = self.latest_steps()
    if step is None or step not in available:
      raise errors.WorkdirError(f"no checkpoint {checkpoint!r} in {self.latest_dir}; available "
                              f"steps: {available}.")
    return self.restore_latest(abstract_state, step)[0].params, step

  def check(self) -> None:
    """Raises CheckpointSaveError if a background save has failed (module docstring);
    nothing to do (no call into Orbax) while no save is in flight."""
    self._surface(block=False)

  def _surface(self, block: bool) -> None:
    """A failed save's error, from each manager whose saves have finished (all of them
    when `block`: waits for them)."""
    if not self.in_flight:
      return
    busy = False
    for kind, manager in (("latest", self.latest), ("best", self.best)):
      try:
        manager.check_for_errors()
        if block or not manager.is_saving_in_progress():  # finished: no wait
          manager.wait_until_finished()
        else:
          busy = True
      except Exception as e:  # noqa: BLE001
        self._failed(kind, e)
    self.in_flight = busy

  def _failed(self, kind: str, e: BaseException) -> None:
    self.failed = True
    directory = self.latest_dir if kind == "latest" else self.best_dir
    for manager in (self.latest, self.best):  # the rest of the writes first, then clean up
      try:
        manager.wait_until_finished()
      except Exception:  # noqa: BLE001, S110  (this failure, or its twin: reported below)
        pass
    for folder in (self.latest_dir, self.best_dir):
      for tmp in folder.glob(f"*{_TMP_MARK}*"):
        shutil.rmtree(tmp, ignore_errors=True)
    os_error = _os_error(e)
    advice = _ADVICE.get(os_error.errno if os_error else None, "fix the cause")
    kept = [s for s in saved_steps(self.directory) if s != self.saving.get("latest")]
    resume = (f"rerun the same command to resume from step {kept[-1]}, which is kept"
              if kept else "rerun the same command")
    raise CheckpointSaveError(
        f"saving the {kind} checkpoint of step {self.saving.get(kind)} in {directory} "
        f"failed: {describe(e)}. Stopped; {advice}, then {resume}.") from None

  def wait(self) -> None:
    """Waits for the background saves; raises CheckpointSaveError if one failed."""
    self._surface(block=True)

  def close(self) -> None:
    error = None
    for kind, manager in (("latest", self.latest), ("best", self.best)):
      try:
        manager.close()
      except Exception as e:  # noqa: BLE001
        error = error or (kind, e)
    if error is not None and not self.failed:  # (a failure is reported once)
      self._failed(*error)
