"""A training workdir's guards: it can be written (checked before any data is generated),
one training process at a time (a lock), no silent config drift on resume, and the wall
time of every process that trained the run (metrics rows are `MetricWriter`'s).

`eval.py` and `translate.py` only read a workdir: they take no lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import socket
import threading
import time
from typing import ClassVar, Optional

from luna_jax import errors

LOCK_FILE = "train.lock"  # {host, pid, started, boot_id, pid_start} of the training process
WALL_TIME_FILE = "wall_time.json"  # seconds of every process that trained this run

# Fields a resumed run may change without `allow_config_change`: how long it runs, how
# often it logs, validates and saves, and how the console looks. Every other field would
# make the resumed run a different run than its checkpoint's.
ALLOWED_ON_RESUME = (
    "num_train_steps", "log_every", "eval_every", "checkpoint_every",
    "checkpoint_every_minutes", "keep_checkpoints", "max_eval_batches", "progress_bar",
    "allow_config_change",
)


def check_writable(workdir: pathlib.Path) -> None:
  """Creates the workdir if needed and writes a probe file into it; a WorkdirError names
  the path and the cause (a file in the way, permissions, a read-only disk)."""
  if workdir.exists() and not workdir.is_dir():
    raise errors.WorkdirError(f"the workdir {workdir} is a file, not a folder; pass another "
                              "--workdir.")
  probe = workdir / f".write_probe_{os.getpid()}"
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise errors.WorkdirError(f"cannot write the workdir {workdir}: {e.strerror or e}; pass "
                              "a writable --workdir.") from None


def _boot_id() -> str:
  try:
    return pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
  except OSError:
    return ""


def _start_ticks(pid: int) -> str:
  """When the process started (clock ticks since boot; "" where /proc is not there): a
  PID reused by another process after a restart has another start time."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return ""
  return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _alive(holder: dict) -> bool:
  """Whether the lock's holder, on this host, still runs."""
  if holder.get("boot_id") and holder["boot_id"] != _boot_id():
    return False  # the machine restarted since
  try:
    os.kill(int(holder["pid"]), 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  ticks = _start_ticks(int(holder["pid"]))
  return not (ticks and holder.get("pid_start") and ticks != holder["pid_start"])


@dataclasses.dataclass
class WorkdirLock:
  """WORKDIR/train.lock, created exclusively while a training process runs (a context
  manager), its modification time renewed every HEARTBEAT_S seconds by a thread.

  A lock whose holder runs is refused with a WorkdirError naming its host, PID and start
  time. It is taken over, with a warning, when its holder is on this host and has died
  (killed, preempted, the machine restarted), or is on another host (a new Colab or TPU
  VM after a preemption, with the workdir on shared storage) and has not renewed it for
  STALE_S seconds."""

  workdir: pathlib.Path
  held: bool = False
  HEARTBEAT_S: ClassVar[float] = 30.0
  STALE_S: ClassVar[float] = 600.0
  _stop: Optional[threading.Event] = None

  @property
  def path(self) -> pathlib.Path:
    return self.workdir / LOCK_FILE

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
          "boot_id": _boot_id(), "pid_start": _start_ticks(os.getpid())}
    for _ in range(3):  # another process may take or drop the lock between the steps
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._holder()
        if holder is None:
          continue  # dropped meanwhile, or still being written: try again
        self._take_over_or_refuse(holder, me["host"])
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self.held = True
      self._stop = threading.Event()
      threading.Thread(target=self._renew, args=(self._stop,), daemon=True,
                       name="workdir_lock").start()
      return
    raise errors.WorkdirError(f"could not take {self.path}: other processes keep taking it.")

  def _take_over_or_refuse(self, holder: dict, host: str) -> None:
    try:
      silent_s = time.time() - self.path.stat().st_mtime
    except FileNotFoundError:
      return  # dropped meanwhile
    here = holder["host"] == host
    if here and not _alive(holder):
      why = "which no longer runs"
    elif not here and silent_s > self.STALE_S:
      why = f"which has not renewed it for {silent_s / 60:.0f} minutes"
    else:
      raise errors.WorkdirError(
          f"the workdir {self.workdir} is in use by PID {holder['pid']} on host "
          f"{holder['host']}, training since {holder['started']}. Wait for it to finish "
          "or pass another --workdir"
          + ("." if here else f" (a lock from another host not renewed for "
             f"{self.STALE_S / 60:.0f} minutes is taken over; it was renewed "
             f"{silent_s:.0f} s ago).")) from None
    print(f"warning: taking over {self.path}, left by PID {holder['pid']} on host "
          f"{holder['host']} (started {holder['started']}), {why}.", flush=True)
    with contextlib.suppress(FileNotFoundError):
      self.path.unlink()

  def _renew(self, stop: threading.Event) -> None:
    while not stop.wait(self.HEARTBEAT_S):
      with contextlib.suppress(OSError):
        os.utime(self.path)

  def _holder(self) -> Optional[dict]:
    try:
      holder = json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      time.sleep(0.2)  # written right now by its creator; read it once more
      try:
        holder = json.loads(self.path.read_text())
      except (OSError, ValueError):
        raise errors.WorkdirError(f"{self.path} is not a lock this library wrote; delete it "
                                  "if no process trains in this workdir.") from None
    return holder

  def release(self) -> None:
    if self._stop is not None:
      self._stop.set()
    if self.held:
      with contextlib.suppress(FileNotFoundError):
        self.path.unlink()
      self.held = False


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_changes(saved: dict, current: dict) -> dict[str, tuple]:
  """{dotted field: (saved value, current value)} for every field that differs (both as
  JSON gives them back: tuples are lists)."""
  saved, current = _flat(saved), _flat(current)
  return {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
          if saved.get(k) != current.get(k)}


def check_resume_config(saved: dict, current: dict, *, step: int,
                        allow: bool) -> Optional[dict]:
  """The record of what changed since the checkpoint's run ({step, fields, override}),
  or None if nothing did. Fields outside ALLOWED_ON_RESUME raise a ConfigError naming
  every one, unless `allow` (config.allow_config_change)."""
  changes = config_changes(saved, current)
  if not changes:
    return None
  refused = [k for k in changes if k not in ALLOWED_ON_RESUME]
  if refused and not allow:
    listed = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused)
    raise errors.ConfigError(
        f"this workdir's checkpoint (step {step}) was trained with another config: "
        f"{listed}. Pass the saved values (the workdir's config.json), use another "
        "--workdir, or resume with the change anyway with --config.allow_config_change=True "
        "(recorded in config.json and the summary). Fields that may change on resume: "
        f"{', '.join(ALLOWED_ON_RESUME)}.")
  return {"step": step, "fields": {k: list(v) for k, v in changes.items()},
          "override": bool(refused)}


def write_atomically(path: pathlib.Path, text: str) -> None:
  """Writes the file whole or not at all: a kill mid-write leaves the old one."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


class WallTime:
  """Wall time summed over every process that trained the run (WORKDIR/wall_time.json:
  one entry per process, this one's updated at `update`). A run started from scratch
  starts a new record."""

  def __init__(self, workdir: pathlib.Path, *, resumed: bool, start_time: float):
    self.path, self.start_time = workdir / WALL_TIME_FILE, start_time
    self.earlier: list[float] = []
    if resumed and self.path.is_file():
      with contextlib.suppress(ValueError, KeyError, TypeError):
        self.earlier = [float(p["seconds"]) for p in json.loads(self.path.read_text())]

  def total(self) -> float:
    return sum(self.earlier) + time.time() - self.start_time

  def processes(self) -> int:
    return len(self.earlier) + 1

  def update(self) -> None:
    entries = [{"seconds": s} for s in self.earlier]
    entries.append({"seconds": time.time() - self.start_time, "pid": os.getpid(),
                    "host": socket.gethostname()})
    write_atomically(self.path, json.dumps(entries))
