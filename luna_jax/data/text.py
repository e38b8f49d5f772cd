"""What corpora and parallel text share: the tokenisers (UTF-8 bytes or a SentencePiece
model, ids from 1 so that 0 pads) and the JSON record a prepared folder carries.
"""

from __future__ import annotations

import json
import pathlib
from typing import Iterable

import numpy as np

from luna_jax import errors
from luna_jax.data import vocab as vocab_lib


class ByteTokenizer:
  num_tokens = 256

  def encode(self, text: str) -> np.ndarray:
    return vocab_lib.encode_bytes(text)

  def decode(self, ids: Iterable[int]) -> str:
    return bytes(int(i) - 1 for i in ids if 1 <= int(i) <= 256).decode("utf-8", "replace")


class SentencePieceTokenizer:
  """A SentencePiece model without its own pad/BOS/EOS ids: piece p is our id p + 1."""

  def __init__(self, model_file):
    import sentencepiece as spm

    self.processor = spm.SentencePieceProcessor(model_file=str(model_file))
    self.num_tokens = self.processor.get_piece_size()

  @staticmethod
  def train(docs: list[str], model_file: pathlib.Path, vocab_size: int) -> None:
    """Unigram model on the documents' lines (SentencePiece's training is deterministic
    for given input)."""
    import sentencepiece as spm

    lines = [line for doc in docs for line in doc.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(model_file.with_suffix("")),
        vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
        pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0,
        max_sentence_length=1 << 16, minloglevel=2, hard_vocab_limit=False)

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self.processor.encode(text), np.int32) + 1

  def decode(self, ids: Iterable[int]) -> str:
    return self.processor.decode([int(i) - 1 for i in ids if 1 <= int(i) <= self.num_tokens])


def read_folder_record(folder, filename: str, what: str, how_to_prepare: str) -> dict:
  """The JSON record `filename` of a prepared folder (a corpus, parallel text); a missing
  one raises MissingDataError saying what is not prepared and the command that makes it."""
  path = pathlib.Path(folder).expanduser() / filename
  if not path.is_file():
    raise errors.MissingDataError(f"no prepared {what} in {folder} ({filename} not found). "
                                  f"Prepare it with\n  {how_to_prepare}")
  return json.loads(path.read_text())
