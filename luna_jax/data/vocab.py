"""The fixed vocabularies of the LRA tasks (documented, stable across processes).

Every task reserves id 0 for padding and puts its optional CLS and EOS tokens after its
own tokens, so the vocabulary size is len(task tokens) + 3:

    ListOps  0 pad | 1..15: [MIN [MAX [MED [SM X 0 1 ... 9 (in this order) | 16 CLS | 17 EOS
    Text, Retrieval (UTF-8 bytes)   0 pad | byte b -> b + 1 (1..256)      | 257 CLS | 258 EOS
    Image, Pathfinder (8-bit pixels) 0 pad | pixel v -> v + 1 (1..256)    | 257 CLS | 258 EOS

Pixels are shifted by one so that black (0) never collides with padding, unlike LRA,
whose `input > 0` mask treats black pixels as padding. LRA built its ListOps vocabulary
from a Python set, whose order changed between processes; this order is fixed.
"""

from __future__ import annotations

import numpy as np

PAD_ID = 0
LISTOPS_TOKENS = ("[MIN", "[MAX", "[MED", "[SM", "X") + tuple(str(d) for d in range(10))
_LISTOPS_IDS = {tok: i + 1 for i, tok in enumerate(LISTOPS_TOKENS)}


class Vocab:
  """Ids of a task's vocabulary: `num_tokens` content ids from 1, then CLS and EOS."""

  def __init__(self, num_tokens: int):
    self.num_tokens = num_tokens
    self.cls_id = num_tokens + 1
    self.eos_id = num_tokens + 2
    self.size = num_tokens + 3


LISTOPS_VOCAB = Vocab(len(LISTOPS_TOKENS))
BYTE_VOCAB = Vocab(256)
PIXEL_VOCAB = Vocab(256)


def listops_tokens(source: str) -> list[str]:
  """LRA's ListOps tokenisation: "]" becomes "X", parentheses are dropped."""
  return source.replace("]", "X").replace("(", " ").replace(")", " ").split()


def encode_listops(source: str) -> np.ndarray:
  """A ListOps expression -> int32 ids (1..15); raises ValueError on an unknown token."""
  ids = []
  for tok in listops_tokens(source):
    try:
      ids.append(_LISTOPS_IDS[tok])
    except KeyError:
      raise ValueError(f"unknown ListOps token {tok!r}; expected one of "
                       f"{' '.join(LISTOPS_TOKENS)}") from None
  return np.asarray(ids, np.int32)


def encode_bytes(text: bytes | str) -> np.ndarray:
  """UTF-8 bytes -> int32 ids b + 1 (1..256)."""
  if isinstance(text, str):
    text = text.encode("utf-8")
  return np.frombuffer(text, np.uint8).astype(np.int32) + 1


def encode_pixels(image: np.ndarray) -> np.ndarray:
  """A uint8 image (H, W) -> int32 ids v + 1 (1..256) in row-major order."""
  return np.asarray(image, np.uint8).reshape(-1).astype(np.int32) + 1
