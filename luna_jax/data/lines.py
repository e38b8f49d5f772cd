"""Files of one sentence per line, split at "\\n" alone.

`str.splitlines` also breaks at "\\r", U+000B, form feed (U+000C), U+001C-U+001E, U+0085,
U+2028 and U+2029, and Python's text mode (`open`, `Path.read_text`) turns a lone "\\r"
into a line break. Those characters can sit inside a sentence (tfds targets hold U+2028),
so a file of N sentences written with "\\n" read back as more lines, and references
slipped against hypotheses. These functions read and write bytes as UTF-8 and break at
"\\n" only; a "\\r" just before a "\\n" (a CRLF file) is dropped with it, so a file saved
on Windows reads as its lines, and any other "\\r" stays in its line.
"""

from __future__ import annotations

import pathlib
from typing import Iterable


def split_lines(text: str) -> list[str]:
  """The lines of text: broken at "\\n" (or "\\r\\n") only; a final "\\n" ends the last
  line and starts no empty one ("" has no lines, "\\n" one empty line)."""
  lines = text.replace("\r\n", "\n").split("\n")
  if lines[-1] == "":
    lines.pop()
  return lines


def read_lines(path) -> list[str]:
  """The lines (`split_lines`) of a UTF-8 file; UnicodeDecodeError when it is not UTF-8."""
  return split_lines(pathlib.Path(path).expanduser().read_bytes().decode("utf-8"))


def one_line(text: str) -> str:
  """text with each line break ("\\r\\n", "\\n" or "\\r") turned into a space, so that it
  is one line of a line file for any reader, ours or another tool's."""
  return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def join_lines(lines: Iterable[str]) -> str:
  """Each line followed by "\\n" (no lines: ""). A line holding "\\n" or "\\r" raises
  ValueError: it would not read back as one line (`one_line` makes it one)."""
  lines = list(lines)
  for i, line in enumerate(lines):
    if "\n" in line or "\r" in line:
      raise ValueError(f"line {i + 1} holds a line break: {line!r}")
  return "".join(f"{line}\n" for line in lines)


def write_lines(path, lines: Iterable[str]) -> None:
  """Writes the lines as UTF-8, each ended by "\\n" (`join_lines`)."""
  pathlib.Path(path).expanduser().write_bytes(join_lines(lines).encode("utf-8"))
