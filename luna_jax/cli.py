"""The command-line tools' entry point: expected mistakes (`luna_jax.errors.UserError`,
bad flags, a config file that does not load) print one "error: ..." message and exit
with status 2, without a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import sys
from typing import Callable

from luna_jax import errors

EXIT_USER_ERROR = 2
EXIT_INTERRUPT = 130  # the shell's status for a process that Ctrl-C stopped
_TRACEBACK = "Traceback (most recent call last)"


def clean_message(message: str) -> str:
  """A flag or config-loading message without the traceback some libraries embed: the
  text before it, then the exception's own last line ("ValueError: ..." -> "...")."""
  if _TRACEBACK not in message:
    return message.strip()
  head = message.split(_TRACEBACK)[0].strip().rstrip(":")
  last = [line.strip() for line in message.splitlines() if line.strip()][-1]
  if ": " in last and last.split(": ", 1)[0].replace(".", "").isidentifier():
    last = last.split(": ", 1)[1]
  return f"{head}: {last}" if head else last


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def _parse_flags(argv):
  from absl import flags

  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{clean_message(str(e))}\nPass --helpshort or --helpfull to see the flags.")


def run(main: Callable) -> None:
  """absl's app.run(main), with user errors reported as one message (module docstring)."""
  from absl import app

  def guarded(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      fail(str(e))
    except KeyboardInterrupt:  # a second Ctrl-C (the first saves and stops: preemption)
      print("Interrupted.", file=sys.stderr)
      sys.exit(EXIT_INTERRUPT)

  app.run(guarded, flags_parser=_parse_flags)


def config_value(config_flag):
  """The value of an ml_collections config flag; a config file that failed to load
  (absl reports it lazily, as an OSError) becomes a ConfigError."""
  try:
    value = config_flag.value
    value.keys()  # a config that failed to load raises on first use
    return value
  except OSError as e:
    raise errors.ConfigError(f"cannot load the config: {clean_message(str(e))}") from None
