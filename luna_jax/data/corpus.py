"""Plain-text corpora for language modelling: read, tokenise, split and store documents,
and serve them as fixed-length rows.

    python -m luna_jax.data prepare_corpus INPUT --out DIR [--tokenizer sentencepiece]

INPUT is one of
  a .txt file          documents separated by blank lines;
  a folder             its .txt files (recursively, sorted by path), one document each;
  a .jsonl file        one JSON object per line, the document in --text_field ("text");
  tfds:NAME            a tensorflow-datasets dataset (its --text_field), its own train /
                       validation / test splits, read from --tfds_data_dir (downloaded
                       and prepared there first when it is not, which needs a network).
Documents are tokenised as UTF-8 bytes (ids 1..256) or with a SentencePiece model
trained on the training documents (ids 1..vocab_size; `spm.model` is stored beside the
data). Without splits of its own, the corpus holds out `heldout_fraction` of the
documents (at least one) for validation and as many for test, chosen by the seed.

DIR holds corpus.json (tokenizer, vocabulary, split sizes, source), and per split
<split>.tokens.npy (every document's ids, concatenated) and <split>.offsets.npy (where
each document starts; one more entry than documents).

Rows (`CorpusRows`), of `room` tokens (the model's max_len less the leading CLS):
  one document per row (default): each document, followed by EOS, is cut into pieces of
    `room` tokens, one piece per row (the last padded), so no row mixes two documents and
    no mixer can cross a document boundary. Luna's pack and Linformer's projection mix
    the whole row, so this is what they need.
  packed (pack=True): the documents, each followed by EOS, one stream cut into rows with
    no padding, and a segment id per position (1, 2, ... per document in the row, the CLS
    in the first one) for mixers that keep segments apart (the softmax Transformer).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Iterable, Iterator, Optional

import numpy as np

from luna_jax import errors
from luna_jax.data import tasks as tasks_lib
from luna_jax.data import vocab as vocab_lib

CORPUS_FILE = "corpus.json"
SPM_FILE = "spm.model"
TOKENIZERS = ("bytes", "sentencepiece")


class CorpusError(errors.DataError):
  """A corpus input or a prepared corpus folder that cannot be used (the message says
  what to do)."""


# --- Reading documents -------------------------------------------------------------------

def _txt_documents(path: pathlib.Path) -> Iterator[str]:
  block: list[str] = []
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      if line.strip():
        block.append(line.rstrip("\n"))
      elif block:
        yield "\n".join(block)
        block = []
  if block:
    yield "\n".join(block)


def _jsonl_documents(path: pathlib.Path, text_field: str) -> Iterator[str]:
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise CorpusError(f"{path}, line {number}: not JSON ({e.msg}); a .jsonl corpus has "
                          "one JSON object per line.") from None
      if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        raise CorpusError(f"{path}, line {number}: no text field {text_field!r}; pass "
                          "--text_field with the name of the field holding the document.")
      yield record[text_field]


def read_documents(path, text_field: str = "text") -> list[str]:
  """The non-empty documents of a .txt file, a folder of .txt files or a .jsonl file."""
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    files = sorted(path.rglob("*.txt"))
    if not files:
      raise CorpusError(f"{path} holds no .txt files; a folder corpus is one document per "
                        ".txt file.")
    docs = [f.read_text(encoding="utf-8", errors="replace") for f in files]
  elif path.is_file() and path.suffix == ".jsonl":
    docs = list(_jsonl_documents(path, text_field))
  elif path.is_file() and path.suffix == ".txt":
    docs = list(_txt_documents(path))
  elif path.is_file():
    raise CorpusError(f"{path}: a corpus file is .txt (documents separated by blank lines) "
                      "or .jsonl (one JSON object per line).")
  else:
    raise CorpusError(f"{path} does not exist.")
  docs = [d for d in docs if d.strip()]
  if not docs:
    raise CorpusError(f"{path} holds no text.")
  return docs


def read_tfds_splits(name: str, data_dir, text_field: str) -> dict[str, list[str]]:
  """The train / validation / test documents of a tfds dataset (prepared on first use)."""
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.info.splits:
    builder.download_and_prepare(file_format="array_record")
  splits = {}
  for ours, theirs in (("train", "train"), ("validation", "validation"), ("test", "test")):
    if theirs not in builder.info.splits:
      continue
    source = tfds.data_source(name, split=theirs, data_dir=data_dir)
    docs = []
    for example in source:
      if text_field not in example:
        raise CorpusError(f"tfds:{name} has no feature {text_field!r}; its features are "
                          f"{', '.join(example)}. Pass --text_field.")
      text = example[text_field]
      docs.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    splits[ours] = [d for d in docs if d.strip()]
  if "train" not in splits:
    raise CorpusError(f"tfds:{name} has no train split.")
  return splits


def hold_out(docs: list[str], fraction: float, seed: int) -> dict[str, list[str]]:
  """train / validation / test by a seeded permutation; each held-out split gets
  max(1, round(fraction * documents))."""
  if len(docs) < 3:
    raise CorpusError(f"the corpus has {len(docs)} document(s); holding out validation and "
                      "test documents needs at least 3.")
  held = max(1, round(fraction * len(docs)))
  held = min(held, (len(docs) - 1) // 2)
  order = np.random.default_rng(seed).permutation(len(docs))
  pick = lambda idx: [docs[i] for i in sorted(idx)]  # noqa: E731 (corpus order kept)
  return {"validation": pick(order[:held]), "test": pick(order[held:2 * held]),
          "train": pick(order[2 * held:])}


# --- Tokenisers ---------------------------------------------------------------------------

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


def load_tokenizer(corpus_dir):
  meta = read_meta(corpus_dir)
  if meta["tokenizer"] == "bytes":
    return ByteTokenizer()
  return SentencePieceTokenizer(pathlib.Path(corpus_dir).expanduser() / SPM_FILE)


# --- Preparing and reading a corpus folder --------------------------------------------------

def prepare_corpus(source: str, out_dir, *, tokenizer: str = "bytes", vocab_size: int = 8000,
                   text_field: str = "text", heldout_fraction: float = 0.05, seed: int = 0,
                   tfds_data_dir: Optional[str] = None) -> dict:
  """Reads, splits, tokenises and stores a corpus (see the module docstring); returns
  the corpus.json record."""
  if tokenizer not in TOKENIZERS:
    raise CorpusError(f"tokenizer={tokenizer!r} is not one of {TOKENIZERS}.")
  if not 0 < heldout_fraction < 0.5:
    raise CorpusError(f"heldout_fraction={heldout_fraction} must be in (0, 0.5).")
  if source.startswith("tfds:"):
    splits = read_tfds_splits(source[5:], tfds_data_dir, text_field)
    if "validation" not in splits or "test" not in splits:
      held = hold_out(splits["train"], heldout_fraction, seed)
      splits = {"train": held["train"], "validation": splits.get("validation",
                                                                  held["validation"]),
                "test": splits.get("test", held["test"])}
  else:
    splits = hold_out(read_documents(source, text_field), heldout_fraction, seed)
  out = pathlib.Path(out_dir).expanduser()
  out.mkdir(parents=True, exist_ok=True)
  if tokenizer == "sentencepiece":
    SentencePieceTokenizer.train(splits["train"], out / SPM_FILE, vocab_size)
    tok = SentencePieceTokenizer(out / SPM_FILE)
  else:
    tok = ByteTokenizer()
  sizes = {}
  for split, docs in splits.items():
    encoded = [tok.encode(d) for d in docs]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
    np.save(out / f"{split}.tokens.npy", np.concatenate(encoded).astype(np.int32))
    np.save(out / f"{split}.offsets.npy", offsets)
    sizes[split] = {"documents": len(docs), "tokens": int(offsets[-1])}
  meta = {"source": str(source), "tokenizer": tokenizer, "num_tokens": tok.num_tokens,
          "splits": sizes, "seed": seed,
          "heldout_fraction": heldout_fraction, "text_field": text_field}
  (out / CORPUS_FILE).write_text(json.dumps(meta, indent=2))
  return meta


def read_folder_record(folder, filename: str, what: str, how_to_prepare: str) -> dict:
  """The JSON record `filename` of a prepared folder (a corpus, parallel text); a missing
  one raises MissingDataError saying what is not prepared and the command that makes it."""
  path = pathlib.Path(folder).expanduser() / filename
  if not path.is_file():
    raise errors.MissingDataError(f"no prepared {what} in {folder} ({filename} not found). "
                                  f"Prepare it with\n  {how_to_prepare}")
  return json.loads(path.read_text())


def read_meta(corpus_dir) -> dict:
  return read_folder_record(
      corpus_dir, CORPUS_FILE, "corpus",
      f"python -m luna_jax.data prepare_corpus INPUT --out {corpus_dir}\n(INPUT: a .txt "
      "file, a folder of .txt files, a .jsonl file or tfds:NAME).")


def corpus_task(corpus_dir) -> tasks_lib.Task:
  """The task record of a prepared corpus: its vocabulary (content ids, then CLS and
  EOS), rows from `CorpusRows`; for language modelling only (no labels)."""
  meta = read_meta(corpus_dir)
  return tasks_lib.Task(name="corpus", builder="corpus", num_classes=1,
                        vocab=vocab_lib.Vocab(meta["num_tokens"]), encode=_row_ids,
                        default_length=512)


def _row_ids(example):
  return example["ids"]


@dataclasses.dataclass
class CorpusRows:
  """Random access to a split's rows: row i is {"ids": int32 (<= room,), "label": 0},
  and with pack=True also "segments": int32 (room,), the document of each position.

  room: tokens per row before the pipeline adds CLS (config.max_len - 1); EOS ends each
  document (the pipeline's own EOS is off for corpora).
  """

  corpus_dir: str
  split: str
  room: int
  pack: bool = False

  def __post_init__(self):
    folder = pathlib.Path(self.corpus_dir).expanduser()
    meta = read_meta(folder)
    self.eos_id = vocab_lib.Vocab(meta["num_tokens"]).eos_id
    try:
      self.tokens = np.load(folder / f"{self.split}.tokens.npy", mmap_mode="r")
      offsets = np.load(folder / f"{self.split}.offsets.npy")
    except (FileNotFoundError, ValueError) as e:
      raise CorpusError(f"{folder}: the {self.split} split is missing or damaged ({e}); "
                        "prepare the corpus again.") from None
    if self.room <= 0:
      raise CorpusError(f"rows of {self.room} tokens: raise max_len.")
    lengths = np.diff(offsets) + 1  # with EOS
    self.offsets = offsets
    if self.pack:
      self.stream_starts = np.concatenate([[0], np.cumsum(lengths)])  # per document
      self.num_rows = -(-int(self.stream_starts[-1]) // self.room)
      return
    pieces = -(-lengths // self.room)
    self.doc = np.repeat(np.arange(len(lengths)), pieces)
    first_row = np.cumsum(pieces) - pieces
    self.start = (np.arange(len(self.doc)) - first_row[self.doc]) * self.room
    self.num_rows = len(self.doc)

  def __len__(self) -> int:
    return self.num_rows

  def _packed(self, index: int) -> dict:
    begin = index * self.room
    positions = np.arange(begin, min(begin + self.room, int(self.stream_starts[-1])))
    doc = np.searchsorted(self.stream_starts, positions, side="right") - 1
    within = positions - self.stream_starts[doc]
    is_eos = within == np.diff(self.offsets)[doc]
    token_index = np.minimum(self.offsets[doc] + within, len(self.tokens) - 1)
    ids = np.where(is_eos, self.eos_id, np.asarray(self.tokens[token_index]))
    return {"ids": ids.astype(np.int32), "label": 0,
            "segments": (doc - doc[0] + 1).astype(np.int32)}

  def __getitem__(self, index: int) -> dict:
    if index < 0 or index >= self.num_rows:
      raise IndexError(index)
    if self.pack:
      return self._packed(index)
    doc = self.doc[index]
    begin, end = self.offsets[doc], self.offsets[doc + 1]
    stream_start = self.start[index]
    piece = np.asarray(self.tokens[begin + stream_start:min(end, begin + stream_start +
                                                             self.room)], np.int32)
    if len(piece) < self.room and stream_start + len(piece) == end - begin:
      piece = np.append(piece, np.int32(self.eos_id))  # the document's end
    return {"ids": piece, "label": 0}
