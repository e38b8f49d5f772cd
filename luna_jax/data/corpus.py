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
from typing import Iterator, Optional

import numpy as np

from luna_jax import errors
from luna_jax.data import pipeline
from luna_jax.data import vocab as vocab_lib
from luna_jax.data.source import BatchSpec, Feed
from luna_jax.data.text import ByteTokenizer, SentencePieceTokenizer, read_folder_record

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


def read_meta(corpus_dir) -> dict:
  return read_folder_record(
      corpus_dir, CORPUS_FILE, "corpus",
      f"python -m luna_jax.data prepare_corpus INPUT --out {corpus_dir}\n(INPUT: a .txt "
      "file, a folder of .txt files, a .jsonl file or tfds:NAME).")


@dataclasses.dataclass
class CorpusRows:
  """Random access to a split's rows: row i is {"ids": int32 (<= room,)}, and with
  pack=True also "segments": int32 (room,), the document of each position.

  room: tokens per row before CLS is added (config.max_len - 1); EOS ends each
  document (no other EOS is added).
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
    return {"ids": ids.astype(np.int32),
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
    return {"ids": piece}


class _CorpusBatchRows:
  """A corpus's rows at `rows` (-1 = a filler: row 0 with weight 0) as model inputs:
  {"inputs": int32 (b, max_len) with the leading CLS, "weight": float32 (b,)} and for
  packed rows "segments": int32 (b, max_len) (the CLS in the first document, padding 0)."""

  def __init__(self, rows: CorpusRows, cfg: pipeline.InputConfig, cls_id: int):
    self.rows, self.cfg, self.cls_id = rows, cfg, cls_id

  def __call__(self, rows: np.ndarray) -> dict:
    examples = [self.rows[int(max(index, 0))] for index in rows]
    batch = {"inputs": np.stack([pipeline.to_tokens(e["ids"], None, self.cfg,
                                                    cls_id=self.cls_id) for e in examples]),
             "weight": (rows >= 0).astype(np.float32)}
    if self.rows.pack:
      batch["segments"] = np.stack([pipeline.to_tokens(e["segments"], None, self.cfg,
                                                       cls_id=1) for e in examples])
    return batch


@dataclasses.dataclass
class CorpusSource:
  """A prepared corpus as a run's data source (`source.DataSource`): rows of max_len
  tokens, a leading CLS (add_cls) and the documents' own EOS, one document per row or
  packed (pack). Its vocabulary: the corpus's content ids, then CLS and EOS."""

  corpus_dir: str
  max_len: int
  add_cls: bool = True
  pack: bool = False

  def __post_init__(self):
    self.meta = read_meta(self.corpus_dir)  # MissingDataError with the prepare command
    self.vocab = vocab_lib.Vocab(self.meta["num_tokens"])
    self.input_cfg = pipeline.InputConfig(self.max_len, self.add_cls, add_eos=False)

  def rows(self, split: str) -> CorpusRows:
    return CorpusRows(self.corpus_dir, split, self.max_len - int(self.add_cls), self.pack)

  def batches(self, split: str, feed: Feed, *, num_epochs=None, shuffle=None):
    rows = self.rows(split)
    return pipeline.batched(
        len(rows), _CorpusBatchRows(rows, self.input_cfg, self.vocab.cls_id),
        global_batch=feed.global_batch, seed=feed.seed,
        shuffle=split == "train" if shuffle is None else shuffle, num_epochs=num_epochs,
        process_index=feed.process_index, process_count=feed.process_count)

  def batch_spec(self, feed: Feed) -> BatchSpec:
    b, n = feed.global_batch, self.max_len
    spec = {"inputs": ((b, n), np.int32), "weight": ((b,), np.float32)}
    if self.pack:
      spec["segments"] = ((b, n), np.int32)
    return spec

  def provenance(self) -> dict:
    return self.meta
