"""Parallel text for translation: preparing a folder, reading its pairs, token batches.

    python -m luna_jax.data prepare_translation INPUT --src en --tgt de --out DIR

INPUT is a folder of parallel text files, one sentence per line, named as fairseq names
them: train.SRC / train.TGT, valid.SRC / valid.TGT (or validation.*), test.SRC /
test.TGT; or `tfds:NAME` for a tensorflow-datasets translation dataset (e.g.
tfds:wmt14_translate/de-en; its download and preparation need TensorFlow and a network).
A joint SentencePiece model (one vocabulary for both languages, so embeddings can be
shared) is trained on the training sentences. DIR then holds, per split, the token ids of
both sides (SPLIT.source/target.tokens.npy and .offsets.npy), the raw sentences
(SPLIT.SRC and SPLIT.TGT: BLEU is computed on detokenised text against them), the model
(spm.model) and translation.json.

Lines are broken at "\n" alone (`lines`): U+2028, U+0085, a form feed or a lone "\r" is
part of its sentence, and a CRLF file reads as its lines. A line break inside a sentence
(a tfds sentence can hold one) becomes a space when the folder is prepared, so the raw
files hold exactly one line per pair.

Token ids: 0 padding, piece p -> p + 1, then BOS and EOS (`vocab.Vocab`); EOS ends every
source and target. Batches (`TokenBatches`) hold about `max_tokens` tokens: pairs are
bucketed by their longer side, each bucket's batches have rows * bucket length <=
max_tokens, so every step has a bounded size and few shapes are compiled.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Iterator, Optional

import numpy as np

from luna_jax import errors
from luna_jax.data import lines as lines_lib
from luna_jax.data import toy_translation
from luna_jax.data import vocab as vocab_lib
from luna_jax.data.source import BatchSpec, Feed
from luna_jax.data.text import SentencePieceTokenizer, read_folder_record

META_FILE = "translation.json"
SPM_FILE = "spm.model"
SPLIT_FILES = {"train": ("train",), "validation": ("valid", "validation"),
               "test": ("test",)}
TOO_LONG = ("truncate", "error")


class TranslationDataError(errors.DataError):
  """A missing, mismatched or damaged parallel-text input or prepared folder."""


def _read_lines(path: pathlib.Path) -> list[str]:
  """The file's lines, broken at "\n" only (`lines.read_lines`)."""
  try:
    return lines_lib.read_lines(path)
  except FileNotFoundError:
    raise TranslationDataError(f"{path} does not exist; prepare the folder again.") from None
  except UnicodeDecodeError as e:
    raise TranslationDataError(f"{path} is not UTF-8 text ({e}).") from None


def read_parallel_folder(folder, src: str, tgt: str) -> dict[str, tuple[list, list]]:
  """{split: (source sentences, target sentences)} from SPLIT.SRC / SPLIT.TGT files."""
  folder = pathlib.Path(folder).expanduser()
  if not folder.is_dir():
    raise TranslationDataError(f"{folder} is not a folder of parallel text files.")
  splits = {}
  for split, names in SPLIT_FILES.items():
    found = [n for n in names if (folder / f"{n}.{src}").is_file()]
    if not found:
      raise TranslationDataError(
          f"{folder}: no {names[0]}.{src} (the {split} split's source sentences, one per "
          f"line, beside {names[0]}.{tgt}).")
    name = found[0]
    if not (folder / f"{name}.{tgt}").is_file():
      raise TranslationDataError(f"{folder}: {name}.{src} has no {name}.{tgt} beside it.")
    source, target = (_read_lines(folder / f"{name}.{lang}") for lang in (src, tgt))
    if len(source) != len(target):
      raise TranslationDataError(
          f"{folder}: {name}.{src} has {len(source)} lines but {name}.{tgt} has "
          f"{len(target)}; parallel files need one sentence per line on both sides.")
    empty = [i + 1 for i, (s, t) in enumerate(zip(source, target, strict=True))
             if not s.strip() or not t.strip()]
    if empty:
      raise TranslationDataError(f"{folder}: {name}.* line {empty[0]} is empty on one side "
                                 f"({len(empty)} such lines); remove them.")
    splits[split] = (source, target)
  return splits


def read_tfds_pairs(name: str, src: str, tgt: str, data_dir=None) -> dict:
  """{split: (sources, targets)} of a tfds translation dataset (fields named by language)."""
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare()
  out = {}
  for split in ("train", "validation", "test"):
    ds = tfds.as_numpy(builder.as_dataset(split=split))
    pairs = [(e[src].decode("utf-8"), e[tgt].decode("utf-8")) for e in ds]
    out[split] = ([s for s, _ in pairs], [t for _, t in pairs])
  return out


def prepare_translation(source: str, out_dir, *, src: str, tgt: str, vocab_size: int = 8000,
                        tfds_data_dir: Optional[str] = None) -> dict:
  """Reads, tokenises (joint SentencePiece) and stores parallel text; returns the
  translation.json record."""
  if source.startswith("tfds:"):
    splits = read_tfds_pairs(source[5:], src, tgt, tfds_data_dir)
  else:
    splits = read_parallel_folder(source, src, tgt)
  splits = {split: tuple([lines_lib.one_line(s) for s in side] for side in pair)
            for split, pair in splits.items()}  # one line per sentence, whatever its text
  out = pathlib.Path(out_dir).expanduser()
  out.mkdir(parents=True, exist_ok=True)
  train_src, train_tgt = splits["train"]
  SentencePieceTokenizer.train(train_src + train_tgt, out / SPM_FILE, vocab_size)
  tok = SentencePieceTokenizer(out / SPM_FILE)
  sizes = {}
  for split, (sources, targets) in splits.items():
    for side, lang, sentences in (("source", src, sources), ("target", tgt, targets)):
      encoded = [tok.encode(s) for s in sentences]
      offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
      np.save(out / f"{split}.{side}.tokens.npy",
              np.concatenate(encoded).astype(np.int32) if encoded else np.zeros(0, np.int32))
      np.save(out / f"{split}.{side}.offsets.npy", offsets)
      lines_lib.write_lines(out / f"{split}.{lang}", sentences)
      sizes.setdefault(split, {"sentences": len(sentences)})[f"{side}_tokens"] = int(offsets[-1])
  meta = {"source": str(source), "src": src, "tgt": tgt, "num_tokens": tok.num_tokens,
          "splits": sizes}
  (out / META_FILE).write_text(json.dumps(meta, indent=2))
  return meta


def is_prepared(folder) -> bool:
  return (pathlib.Path(folder).expanduser() / META_FILE).is_file()


def generate_and_prepare(folder, num_train: int, num_eval: int, vocab_size: int,
                         seed: int = 0) -> dict:
  """The offline reordering task (`toy_translation`) written to FOLDER/raw and prepared
  into FOLDER."""
  raw = toy_translation.write_parallel_text(
      pathlib.Path(folder).expanduser() / "raw",
      {"train": num_train, "valid": num_eval, "test": num_eval}, seed=seed)
  print(f"Generated the reordering translation task ({num_train} training pairs) in "
        f"{raw}; preparing it.", flush=True)
  return prepare_translation(str(raw), folder, src="src", tgt="tgt", vocab_size=vocab_size)


def read_meta(folder) -> dict:
  return read_folder_record(
      folder, META_FILE, "parallel text",
      f"python -m luna_jax.data prepare_translation INPUT --src SRC --tgt TGT --out "
      f"{folder}\n(INPUT: a folder of train/valid/test.SRC and .TGT files, or tfds:NAME).")


def load_tokenizer(folder) -> SentencePieceTokenizer:
  return SentencePieceTokenizer(pathlib.Path(folder).expanduser() / SPM_FILE)


def raw_sentences(folder, split: str, side: str) -> list[str]:
  """The split's raw source ("source") or reference ("target") sentences."""
  meta = read_meta(folder)
  lang = meta["src"] if side == "source" else meta["tgt"]
  return _read_lines(pathlib.Path(folder).expanduser() / f"{split}.{lang}")


def raw_pairs(folder, split: str, num_pairs: int) -> tuple[list[str], list[str]]:
  """The split's raw (sources, references), checked to number num_pairs each (the split's
  token pairs), so that reference i is the reference of pair i."""
  found = {side: raw_sentences(folder, split, side) for side in ("source", "target")}
  if any(len(s) != num_pairs for s in found.values()):
    meta = read_meta(folder)
    raise TranslationDataError(
        f"{folder} is inconsistent: its {split} split has {num_pairs} token pairs but "
        f"{split}.{meta['src']} holds {len(found['source'])} source lines and "
        f"{split}.{meta['tgt']} {len(found['target'])} reference lines, so BLEU would "
        "compare translations with the wrong references. Prepare it again (python -m "
        "luna_jax.data prepare_translation ...).")
  return found["source"], found["target"]


@dataclasses.dataclass
class TranslationPairs:
  """A split's pairs as token ids with EOS appended, truncated to the model's lengths.

  too_long: "truncate" keeps the first max - 1 tokens and EOS ("truncated" counts the
  pairs), "error" raises for the first pair that does not fit.
  """

  folder: str
  split: str
  max_source_len: int
  max_target_len: int
  too_long: str = "truncate"

  def __post_init__(self):
    folder = pathlib.Path(self.folder).expanduser()
    self.eos_id = vocab_lib.Vocab(read_meta(folder)["num_tokens"]).eos_id
    if self.too_long not in TOO_LONG:
      raise TranslationDataError(f"too_long={self.too_long!r} is not one of {TOO_LONG}.")
    self.sides = {}
    try:
      for side in ("source", "target"):
        tokens = np.load(folder / f"{self.split}.{side}.tokens.npy", mmap_mode="r")
        offsets = np.load(folder / f"{self.split}.{side}.offsets.npy")
        self.sides[side] = (tokens, offsets)
    except (FileNotFoundError, ValueError) as e:
      raise TranslationDataError(f"{folder}: the {self.split} split is missing or damaged "
                                 f"({e}); prepare it again.") from None
    n = {side: len(o) - 1 for side, (_, o) in self.sides.items()}
    if n["source"] != n["target"]:
      raise TranslationDataError(f"{folder}: the {self.split} split has {n['source']} "
                                 f"sources but {n['target']} targets; prepare it again.")
    raw = {side: np.diff(o) + 1 for side, (_, o) in self.sides.items()}  # with EOS
    limits = {"source": self.max_source_len, "target": self.max_target_len}
    over = {side: raw[side] > limits[side] for side in raw}
    self.truncated = int(np.sum(over["source"] | over["target"]))
    if self.truncated and self.too_long == "error":
      side = "source" if over["source"].any() else "target"
      first = int(np.argmax(over[side]))
      raise TranslationDataError(
          f"{self.split} pair {first} has a {side} of {int(raw[side][first])} tokens (EOS "
          f"included) but the model allows max_{side}_len={limits[side]} "
          f"({self.truncated} pairs are too long); raise max_{side}_len or set "
          "translation.too_long=truncate.")
    self.lengths = {side: np.minimum(raw[side], limits[side]) for side in raw}

  def __len__(self) -> int:
    return len(self.lengths["source"])

  def ids(self, index: int, side: str) -> np.ndarray:
    tokens, offsets = self.sides[side]
    n = int(self.lengths[side][index]) - 1
    body = np.asarray(tokens[offsets[index]:offsets[index] + n], np.int32)
    return np.append(body, np.int32(self.eos_id))


def bucket_lengths(max_len: int, smallest: int = 8) -> list[int]:
  """Padded lengths: 8 to 64 in steps of 8, then steps of a quarter of the last power of
  two (80, 96, 112, 128, 160, ...), ending at max_len."""
  out, length = [], smallest
  while length < max_len:
    out.append(length)
    length += max(smallest, 2 ** (int(np.log2(length)) - 2))
  return out + [max_len]


def rows_per_batch(length: int, max_tokens: int, rows_multiple: int) -> int:
  """Rows of a batch of pairs padded to `length`: the largest multiple of rows_multiple
  with rows * length <= max_tokens, and at least rows_multiple."""
  return max(rows_multiple, (max_tokens // length) // rows_multiple * rows_multiple)


class TokenBatches:
  """Batches of about `max_tokens` tokens from length buckets, as a resumable iterator.

  Each batch: {"source": int32 (b, S), "target": int32 (b, S), "weight": float32 (b,),
  "index": int32 (b,) the pair's index, -1 for fillers}; S is the bucket's length (the
  longer side of its pairs, padded), b = max(rows_multiple, the largest multiple of
  rows_multiple with b * S <= max_tokens), the same on every process; each process keeps
  its share of the rows. Training (shuffle=True) shuffles pairs within buckets and the
  batch order, per epoch, from (seed, epoch) alone, so `get_state` / `set_state`
  resume at the same batch. The last batch of a bucket is filled with weight-0 rows.
  """

  def __init__(self, pairs: TranslationPairs, *, max_tokens: int, rows_multiple: int,
               seed: int = 0, shuffle: bool = True, num_epochs: Optional[int] = None,
               process_index: int = 0, process_count: int = 1):
    self.pairs, self.seed, self.shuffle, self.num_epochs = pairs, seed, shuffle, num_epochs
    self.process_index, self.process_count = process_index, process_count
    longest = np.maximum(pairs.lengths["source"], pairs.lengths["target"])
    self.buckets = bucket_lengths(max(pairs.max_source_len, pairs.max_target_len))
    bucket_of = np.searchsorted(self.buckets, longest)
    self.members = [np.flatnonzero(bucket_of == i) for i in range(len(self.buckets))]
    self.rows = [rows_per_batch(length, max_tokens, rows_multiple) for length in self.buckets]
    self.epoch, self.position = 0, 0
    self._order = None

  def _epoch_batches(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng([self.seed, epoch])
    batches = []
    for i, members in enumerate(self.members):
      if self.shuffle:
        members = rng.permutation(members)
      rows = self.rows[i]
      for start in range(0, len(members), rows):
        chunk = members[start:start + rows]
        batches.append((i, np.pad(chunk, (0, rows - len(chunk)), constant_values=-1)))
    if self.shuffle:
      batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches

  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    while True:
      if self.num_epochs is not None and self.epoch >= self.num_epochs:
        raise StopIteration
      if self._order is None:
        self._order = self._epoch_batches(self.epoch)
      if self.position < len(self._order):
        break
      self.epoch, self.position, self._order = self.epoch + 1, 0, None
    bucket, indices = self._order[self.position]
    self.position += 1
    return self._batch(self.buckets[bucket], indices)

  def _batch(self, length: int, indices: np.ndarray) -> dict:
    local = len(indices) // self.process_count
    rows = indices[self.process_index * local:(self.process_index + 1) * local]
    out = {side: np.zeros((len(rows), length), np.int32) for side in ("source", "target")}
    for r, index in enumerate(rows):
      if index < 0:
        continue
      for side in ("source", "target"):
        ids = self.pairs.ids(int(index), side)
        out[side][r, :len(ids)] = ids
    out["weight"] = (rows >= 0).astype(np.float32)
    out["index"] = rows.astype(np.int32)
    return out

  def get_state(self) -> dict:
    return {"epoch": self.epoch, "position": self.position}

  def set_state(self, state: dict) -> None:
    self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None


@dataclasses.dataclass
class ParallelSource:
  """A prepared folder of parallel text as a run's data source (`source.DataSource`):
  token batches of about max_tokens tokens (`TokenBatches`). Its vocabulary: the joint
  pieces, then BOS (the vocabulary's CLS id) and EOS.

  vocab_size: the pieces to assume when the folder is not prepared here (a compile-only
  run needs only the vocabulary's size); None reads it from the folder.
  """

  folder: str
  max_source_len: int
  max_target_len: int
  max_tokens: int
  too_long: str = "truncate"
  vocab_size: Optional[int] = None

  def __post_init__(self):
    if self.vocab_size is None:
      self.vocab_size = read_meta(self.folder)["num_tokens"]
    self.vocab = vocab_lib.Vocab(self.vocab_size)

  def pairs(self, split: str) -> TranslationPairs:
    return TranslationPairs(self.folder, split, self.max_source_len, self.max_target_len,
                            self.too_long)

  def batches(self, split: str, feed: Feed, *, num_epochs=None, shuffle=None):
    return TokenBatches(
        self.pairs(split), max_tokens=self.max_tokens, rows_multiple=feed.rows_multiple,
        seed=feed.seed, shuffle=split == "train" if shuffle is None else shuffle,
        num_epochs=num_epochs, process_index=feed.process_index,
        process_count=feed.process_count)

  def batch_spec(self, feed: Feed) -> BatchSpec:
    """The bucket of the longest pairs: each bucket's length compiles once, and the
    longest holds the most tokens per row."""
    length = bucket_lengths(max(self.max_source_len, self.max_target_len))[-1]
    rows = rows_per_batch(length, self.max_tokens, feed.rows_multiple)
    return {"source": ((rows, length), np.int32), "target": ((rows, length), np.int32),
            "weight": ((rows,), np.float32), "index": ((rows,), np.int32)}

  def provenance(self) -> dict:
    return read_meta(self.folder)

  def tokenizer(self) -> SentencePieceTokenizer:
    return load_tokenizer(self.folder)

  def raw_sentences(self, split: str, side: str) -> list[str]:
    return raw_sentences(self.folder, split, side)

  def raw_pairs(self, split: str) -> tuple[list[str], list[str]]:
    """The split's raw (sources, references), as many as its pairs (`raw_pairs`)."""
    return raw_pairs(self.folder, split, len(self.pairs(split)))
