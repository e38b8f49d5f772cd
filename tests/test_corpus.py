"""Text corpora for language modelling: reading, splitting, tokenising, rows, training."""

import json

import numpy as np
import pytest

from luna_jax.data import corpus
from luna_jax.data.__main__ import main as data_main
from luna_jax.training import train_and_evaluate
from tests.training_fixtures import tiny_config

WORDS = ("the cat sat on a mat while seven dogs ran past the old red barn and a bird sang "
         "over the quiet river").split()


def _documents(n, seed=0):
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(WORDS, rng.integers(5, 40))) for _ in range(n)]


def test_documents_from_txt_folder_and_jsonl(tmp_path):
  docs = _documents(5)
  (tmp_path / "c.txt").write_text("\n\n".join(docs[:3]) + "\n\n\n" + docs[3] + "\nline 2\n")
  assert corpus.read_documents(tmp_path / "c.txt") == docs[:3] + [docs[3] + "\nline 2"]
  folder = tmp_path / "folder"
  (folder / "sub").mkdir(parents=True)
  for i, d in enumerate(docs):
    (folder / ("sub" if i % 2 else "") / f"{i}.txt").write_text(d)
  (folder / "skip.md").write_text("not a document")
  got = corpus.read_documents(folder)
  assert sorted(got) == sorted(docs) and len(got) == 5
  (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": d, "id": i}) + "\n"
                                            for i, d in enumerate(docs)))
  assert corpus.read_documents(tmp_path / "c.jsonl", "body") == docs


def test_bad_inputs_say_what_is_wrong(tmp_path):
  (tmp_path / "c.jsonl").write_text('{"text": "fine"}\n{"text": \n')
  with pytest.raises(corpus.CorpusError, match=r"c.jsonl, line 2: not JSON"):
    corpus.read_documents(tmp_path / "c.jsonl")
  (tmp_path / "d.jsonl").write_text('{"body": "x"}\n')
  with pytest.raises(corpus.CorpusError, match="no text field 'text'; pass --text_field"):
    corpus.read_documents(tmp_path / "d.jsonl")
  (tmp_path / "e.csv").write_text("a,b\n")
  with pytest.raises(corpus.CorpusError, match="is .txt .* or .jsonl"):
    corpus.read_documents(tmp_path / "e.csv")
  with pytest.raises(corpus.CorpusError, match="does not exist"):
    corpus.read_documents(tmp_path / "missing.txt")
  (tmp_path / "two.txt").write_text("one\n\ntwo\n")
  assert data_main(["prepare_corpus", str(tmp_path / "two.txt"), "--out",
                    str(tmp_path / "out")]) == 2  # too few documents to hold any out
  with pytest.raises(FileNotFoundError, match="prepare_corpus INPUT --out"):
    corpus.read_meta(tmp_path / "out")


def test_hold_out_is_a_seeded_partition():
  docs = [f"doc {i}" for i in range(50)]
  a, b = corpus.hold_out(docs, 0.1, 3), corpus.hold_out(docs, 0.1, 3)
  assert a == b and len(a["validation"]) == len(a["test"]) == 5
  assert sorted(a["train"] + a["validation"] + a["test"]) == sorted(docs)
  assert corpus.hold_out(docs, 0.1, 4)["test"] != a["test"]


@pytest.mark.parametrize("tokenizer", ["bytes", "sentencepiece"])
def test_prepared_corpus_rows_hold_one_document_each(tokenizer, tmp_path):
  docs = _documents(40) + ["é ü " * 30]  # multi-byte characters, a long document
  (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
  meta = corpus.prepare_corpus(str(tmp_path / "c.jsonl"), tmp_path / "out",
                               tokenizer=tokenizer, vocab_size=40, heldout_fraction=0.1)
  assert sum(s["documents"] for s in meta["splits"].values()) == len(docs)
  tok = corpus.load_tokenizer(tmp_path / "out")
  eos = meta["num_tokens"] + 2
  seen = []
  for split in ("train", "validation", "test"):
    rows = corpus.CorpusRows(str(tmp_path / "out"), split, room=16)
    offsets = np.load(tmp_path / "out" / f"{split}.offsets.npy")
    assert len(rows) == sum(-(-(int(n) + 1) // 16) for n in np.diff(offsets))
    current, pieces = None, []
    for i in range(len(rows)):
      ids = rows[i]["ids"]
      assert 0 < len(ids) <= 16 and ((ids >= 1) & (ids <= eos)).all()
      assert (ids[:-1] != eos).all()  # EOS only ends a document
      pieces.append(ids)
      if ids[-1] == eos:  # a document ends in this row: the next row starts another
        text = tok.decode(np.concatenate(pieces)[:-1])
        seen.append(text)
        pieces, current = [], i
    assert not pieces and current == len(rows) - 1
  normalise = (lambda s: " ".join(s.split())) if tokenizer == "sentencepiece" else str
  assert sorted(normalise(s) for s in seen) == sorted(normalise(d) for d in docs)
  if tokenizer == "sentencepiece":
    assert meta["num_tokens"] <= 40 and (tmp_path / "out" / "spm.model").is_file()


def test_packed_rows_are_the_document_stream_with_segments(tmp_path):
  docs = _documents(30, seed=5)
  (tmp_path / "c.txt").write_text("\n\n".join(docs))
  meta = corpus.prepare_corpus(str(tmp_path / "c.txt"), tmp_path / "out")
  eos = meta["num_tokens"] + 2
  rows = corpus.CorpusRows(str(tmp_path / "out"), "train", room=37, pack=True)
  tokens = np.load(tmp_path / "out" / "train.tokens.npy")
  offsets = np.load(tmp_path / "out" / "train.offsets.npy")
  stream = np.concatenate([np.append(tokens[a:b], eos) for a, b in zip(offsets[:-1],
                                                                      offsets[1:], strict=True)])
  got = [rows[i] for i in range(len(rows))]
  assert len(rows) == -(-len(stream) // 37)
  assert all(len(r["ids"]) == 37 for r in got[:-1])  # no padding but in the last row
  np.testing.assert_array_equal(np.concatenate([r["ids"] for r in got]), stream)
  for r in got:
    seg = r["segments"]
    assert seg[0] == 1 and set(np.diff(seg)) <= {0, 1}
    # A new segment starts exactly after each EOS.
    np.testing.assert_array_equal(np.diff(seg) == 1, r["ids"][:-1] == eos)
  with pytest.raises(IndexError):
    rows[len(rows)]


def test_tfds_text_dataset_as_a_corpus(data_dir, tmp_path):
  import luna_jax.data.builders  # noqa: F401  (registers lra_text with tfds)

  meta = corpus.prepare_corpus("tfds:lra_text", tmp_path / "out", tfds_data_dir=str(data_dir),
                               heldout_fraction=0.2)
  # lra_text has train and test splits; validation is held out of train.
  assert meta["splits"]["test"]["documents"] > 0 and meta["splits"]["validation"]["documents"]
  with pytest.raises(corpus.CorpusError, match="no feature 'body'"):
    corpus.prepare_corpus("tfds:lra_text", tmp_path / "o2", tfds_data_dir=str(data_dir),
                          text_field="body")


@pytest.mark.parametrize("objective,mixer,pack", [("mlm", "luna", False),
                                                  ("clm", "transformer", True)])
def test_language_model_learns_a_corpus(objective, mixer, pack, tmp_path):
  (tmp_path / "c.txt").write_text("\n\n".join(_documents(200)))
  assert data_main(["prepare_corpus", str(tmp_path / "c.txt"), "--out",
                    str(tmp_path / "corpus")]) == 0
  config = tiny_config("listops", tmp_path, mixer, steps=60)
  config.task, config.corpus_dir, config.objective = "corpus", str(tmp_path / "corpus"), objective
  config.model.causal = objective == "clm"
  config.pack_documents = pack
  config.model.d_model = config.model.ffn_dim = 32
  config.batch_size, config.eval_every, config.checkpoint_every = 16, 30, 30
  config.optimizer.learning_rate, config.optimizer.warmup_steps = 3e-3, 10
  summary = train_and_evaluate(config, tmp_path / "run")
  assert summary["data_provenance"]["tokenizer"] == "bytes"
  # The words use 17 distinct bytes (of 256): a model that learnt them is far below the
  # uniform perplexity over its 260 ids.
  assert summary["test_perplexity"] < 40, summary
  assert summary["test_examples"] > 0 and summary["test_tokens"] > summary["test_examples"]
  config.objective = "classify"
  with pytest.raises(ValueError, match="a corpus has no labels"):
    train_and_evaluate(config, tmp_path / "bad")


def test_packing_is_refused_for_mixers_that_mix_the_whole_row(tmp_path):
  from luna_jax.training import validate

  (tmp_path / "c.txt").write_text("\n\n".join(_documents(10)))
  corpus.prepare_corpus(str(tmp_path / "c.txt"), tmp_path / "corpus")
  config = tiny_config("listops", tmp_path, "luna")
  config.task, config.corpus_dir, config.objective = "corpus", str(tmp_path / "corpus"), "mlm"
  config.pack_documents = True
  with pytest.raises(ValueError, match="model.name='luna' cannot: its pack attends"):
    validate(config, 1)
