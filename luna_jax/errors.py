"""The mistakes a user can fix from the message alone.

The command-line tools (train.py, eval.py, translate.py, python -m luna_jax.data) print
these as one "error: ..." line and exit with status 2, without a traceback; any other
exception is a bug and keeps its traceback. Each class also derives from the built-in
type it replaces, so `except ValueError` / `except FileNotFoundError` still catch them.
"""

from __future__ import annotations


class UserError(Exception):
  """An expected mistake: its message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
  """An invalid config value or command-line argument."""


class DataError(UserError, ValueError):
  """A malformed or inconsistent data file."""


class MissingDataError(UserError, FileNotFoundError):
  """Data that is not there or not prepared (the message gives the command)."""


class WorkdirError(UserError, FileNotFoundError):
  """A workdir that is not a training workdir, or lacks the asked-for checkpoint."""


def require(ok: bool, message: str) -> None:
  """Raises ConfigError("invalid config: <message>") unless ok."""
  if not ok:
    raise ConfigError(f"invalid config: {message}")
