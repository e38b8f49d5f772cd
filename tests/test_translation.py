"""Translation data (the generated task, preparation, pairs, token batches) and the
seq2seq run: resume, BLEU in the summary, translate.py."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from luna_jax.data import lines, toy_translation, translation
from luna_jax.training import base_config, train_and_evaluate, translation_eval
from tests.training_fixtures import latest_params, train_killed_then_resumed

SIZES = {"train": 300, "valid": 20, "test": 20}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp("translation")
  raw = toy_translation.write_parallel_text(root / "raw", SIZES, seed=3)
  translation.prepare_translation(str(raw), root / "prepared", src="src", tgt="tgt",
                                  vocab_size=150)
  return root / "prepared"


def test_the_generated_task_needs_translation_and_reordering():
  lex = toy_translation.lexicon(0)
  assert len(set(lex.values())) == len(lex)  # one-to-one
  back = {v: k for k, v in lex.items()}
  rng = np.random.default_rng(0)
  moved = 0
  for _ in range(50):
    source, target = toy_translation.sentence_pair(rng, lex)
    src_words, tgt_words = source.split(), [back.get(w, w) for w in target.split()]
    assert sorted(src_words) == sorted(tgt_words)  # every word translated, numbers kept
    verbs = [w for w in src_words if w in toy_translation.VERBS]
    assert tgt_words[-1] == verbs[0]  # the verb goes last (SOV)
    assert not set(target.split()) & (set(src_words) - {w for w in src_words if w.isdigit()})
    moved += src_words != tgt_words
  assert moved == 50
  again = toy_translation.sentence_pair(np.random.default_rng(0), lex)
  assert again == toy_translation.sentence_pair(np.random.default_rng(0), lex)


def test_prepared_pairs_round_trip_through_the_joint_vocabulary(prepared):
  meta = translation.read_meta(prepared)
  assert {k: v["sentences"] for k, v in meta["splits"].items()} == {
      "train": 300, "validation": 20, "test": 20}
  pairs = translation.TranslationPairs(str(prepared), "test", 64, 64)
  tokenizer = translation.load_tokenizer(prepared)
  refs = translation.raw_sentences(prepared, "test", "target")
  sources = translation.raw_sentences(prepared, "test", "source")
  for i in range(len(pairs)):
    target, source = pairs.ids(i, "target"), pairs.ids(i, "source")
    assert target[-1] == pairs.eos_id and source[-1] == pairs.eos_id
    assert tokenizer.decode(target[:-1]) == refs[i]
    assert tokenizer.decode(source[:-1]) == sources[i]
  assert pairs.truncated == 0


def test_too_long_pairs_are_truncated_and_counted_or_refused(prepared):
  tokenizer = translation.load_tokenizer(prepared)
  sources = translation.raw_sentences(prepared, "train", "source")
  targets = translation.raw_sentences(prepared, "train", "target")
  longer = [max(len(tokenizer.encode(s)), len(tokenizer.encode(t))) + 1
            for s, t in zip(sources, targets, strict=True)]
  limit = int(np.median(longer))
  want = sum(n > limit for n in longer)
  assert 0 < want < len(sources)
  pairs = translation.TranslationPairs(str(prepared), "train", limit, limit)
  assert pairs.truncated == want
  for i in range(len(pairs)):
    ids = pairs.ids(i, "source")
    assert len(ids) <= limit and ids[-1] == pairs.eos_id
    np.testing.assert_array_equal(ids[:-1], tokenizer.encode(sources[i])[:len(ids) - 1])
  with pytest.raises(translation.TranslationDataError, match="translation.too_long=truncate"):
    translation.TranslationPairs(str(prepared), "train", limit, limit, too_long="error")


def test_token_batches_hold_every_pair_once_within_the_token_budget(prepared):
  pairs = translation.TranslationPairs(str(prepared), "train", 32, 32)
  batches = list(translation.TokenBatches(pairs, max_tokens=96, rows_multiple=2,
                                          shuffle=False, num_epochs=1))
  seen = []
  for batch in batches:
    rows, length = batch["source"].shape
    assert batch["target"].shape == (rows, length) and rows % 2 == 0
    assert rows * length <= 96 or rows == 2
    real = batch["index"] >= 0
    np.testing.assert_array_equal(batch["weight"], real.astype(np.float32))
    assert not batch["source"][~real].any()
    seen += [int(i) for i in batch["index"][real]]
    for r in np.flatnonzero(real):  # each pair fits its bucket
      n = int(pairs.lengths["source"][batch["index"][r]])
      np.testing.assert_array_equal(batch["source"][r, :n], pairs.ids(int(batch["index"][r]),
                                                                       "source"))
  assert sorted(seen) == list(range(len(pairs)))
  assert len({b["source"].shape[1] for b in batches}) > 1  # several buckets


def test_token_batches_resume_at_the_same_batch_across_epochs(prepared):
  pairs = translation.TranslationPairs(str(prepared), "train", 32, 32)
  kw = dict(max_tokens=512, rows_multiple=2, seed=5)
  per_epoch = len(list(translation.TokenBatches(pairs, shuffle=False, num_epochs=1, **kw)))
  straight = translation.TokenBatches(pairs, **kw)
  first = [next(straight) for _ in range(per_epoch + 3)]
  stopped = translation.TokenBatches(pairs, **kw)
  for _ in range(per_epoch - 2):
    next(stopped)
  resumed = translation.TokenBatches(pairs, **kw)
  resumed.set_state(stopped.get_state())
  for want in first[per_epoch - 2:]:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  # Another epoch is another order.
  assert not all(np.array_equal(a["index"], b["index"])
                 for a, b in zip(first[:3], first[per_epoch:per_epoch + 3], strict=True))


def test_bad_parallel_text_gets_a_clear_message_without_a_traceback(tmp_path):
  folder = toy_translation.write_parallel_text(tmp_path / "raw", {"train": 5, "valid": 3,
                                                                    "test": 3})
  (folder / "valid.tgt").write_text("one line only\n")
  with pytest.raises(translation.TranslationDataError, match="valid.src has 3 lines but "
                                                             "valid.tgt has 1"):
    translation.read_parallel_folder(folder, "src", "tgt")
  (folder / "valid.tgt").write_text("a\nb\nc\n")
  (folder / "test.src").unlink()
  with pytest.raises(translation.TranslationDataError, match="no test.src"):
    translation.read_parallel_folder(folder, "src", "tgt")
  result = subprocess.run(
      [sys.executable, "-m", "luna_jax.data", "prepare_translation", str(folder), "--src",
       "src", "--tgt", "tgt", "--out", str(tmp_path / "out")],
      capture_output=True, text=True)
  assert result.returncode == 2
  assert "error:" in result.stderr and "Traceback" not in result.stderr


# Characters str.splitlines breaks at, which belong inside a sentence.
INSIDE = ("\u2028", "\x85", "\x0c", "\x0b", "\x1c", "\u2029")


def test_lines_break_at_newline_alone():
  assert lines.split_lines("") == [] and lines.split_lines("\n") == [""]
  assert lines.split_lines("a\nb") == lines.split_lines("a\nb\n") == ["a", "b"]
  assert lines.split_lines("a\r\nb\r\n\r\n") == ["a", "b", ""]  # CRLF
  assert lines.split_lines("a\rb\r\r\n") == ["a\rb\r"]  # a lone CR stays in its line
  text = "".join(f"x{c}y\n" for c in INSIDE)
  assert len(text.splitlines()) == 2 * len(INSIDE)  # the flaw fixed here
  assert lines.split_lines(text) == [f"x{c}y" for c in INSIDE]
  assert lines.split_lines(lines.join_lines(["a", "", "b\u2028c"])) == ["a", "", "b\u2028c"]
  assert lines.join_lines([]) == ""
  assert lines.one_line("a\r\nb\nc\rd\u2028e") == "a b c d\u2028e"
  for bad in ("a\nb", "a\r"):
    with pytest.raises(ValueError, match="line break"):
      lines.join_lines(["ok", bad])


def _small_pairs(n, seed):
  rng, lex = np.random.default_rng(seed), toy_translation.lexicon(0)
  pairs = [toy_translation.sentence_pair(rng, lex) for _ in range(n)]
  return [s for s, _ in pairs], [t for _, t in pairs]


def test_line_separators_inside_tfds_sentences_keep_pairs_and_references_aligned(
    tmp_path, monkeypatch):
  sources, targets = _small_pairs(12, 1)
  targets[:len(INSIDE)] = [f"ka{c}mirun" for c in INSIDE]
  targets[6], targets[7], sources[8] = "a\nb", "c\r\nd", "e\rf"  # line breaks in a sentence
  splits = {"train": _small_pairs(40, 0), "validation": (sources[:4], targets[:4]),
            "test": (sources, targets)}
  monkeypatch.setattr(translation, "read_tfds_pairs", lambda *a: splits)
  meta = translation.prepare_translation("tfds:fake", tmp_path, src="en", tgt="de",
                                         vocab_size=60)
  assert meta["splits"]["test"]["sentences"] == 12
  want = {"source": [lines.one_line(s) for s in sources],
          "target": [lines.one_line(t) for t in targets]}
  assert want["target"][6:8] == ["a b", "c d"] and want["source"][8] == "e f"
  for side in ("source", "target"):
    assert translation.raw_sentences(tmp_path, "test", side) == want[side]
  pairs = translation.TranslationPairs(str(tmp_path), "test", 64, 64)
  assert len(pairs) == 12
  source = translation.ParallelSource(str(tmp_path), 64, 64, 256)
  assert source.raw_pairs("test") == (want["source"], want["target"])
  tokenizer = translation.load_tokenizer(tmp_path)
  for i in range(6, 12):  # plain text decodes to its reference
    assert tokenizer.decode(pairs.ids(i, "target")[:-1]) == want["target"][i]


def test_a_parallel_folder_with_separators_inside_lines_and_crlf_files_is_read(tmp_path):
  folder = toy_translation.write_parallel_text(tmp_path / "raw", {"train": 40, "valid": 3,
                                                                    "test": 3})
  (folder / "test.src").write_bytes("one\x0ctwo\nthree\u2028four\nfive\x85six\n".encode())
  (folder / "test.tgt").write_bytes(b"uno\r\ndos\rzwei\r\ntres\r\n")  # CRLF, a lone CR
  got = translation.read_parallel_folder(folder, "src", "tgt")["test"]
  assert got == (["one\x0ctwo", "three\u2028four", "five\x85six"],
                 ["uno", "dos\rzwei", "tres"])
  translation.prepare_translation(str(folder), tmp_path / "out", src="src", tgt="tgt",
                                  vocab_size=60)
  assert translation.raw_sentences(tmp_path / "out", "test", "source") == got[0]
  assert translation.raw_sentences(tmp_path / "out", "test", "target") == [
      "uno", "dos zwei", "tres"]
  assert len(translation.TranslationPairs(str(tmp_path / "out"), "test", 64, 64)) == 3


def test_references_that_do_not_match_the_pairs_stop_bleu(prepared, tmp_path):
  folder = shutil.copytree(prepared, tmp_path / "copy")
  source = translation.ParallelSource(str(folder), 64, 64, 256)
  sources, refs = source.raw_pairs("test")
  assert len(sources) == len(refs) == 20
  with open(folder / "test.tgt", "a", encoding="utf-8") as f:
    f.write("one reference too many\n")
  with pytest.raises(translation.TranslationDataError,
                     match=r"inconsistent: its test split has 20 token pairs but test.src "
                           r"holds 20 source lines and test.tgt 21 reference lines.*Prepare "
                           "it again"):
    source.raw_pairs("test")


def test_tokenized_bleu_tokenises_splits_compounds_and_scores_as_multi_bleu():
  ref, hyp = "Sie sah einen Anti-Kriegs-Film.", "Sie sah einen Kriegs-Film."
  assert translation_eval.paper_tokens(ref, "de") == (
      "Sie sah einen Anti ##AT##-##AT## Kriegs ##AT##-##AT## Film .")
  assert translation_eval.paper_tokens(ref, "en") == "Sie sah einen Anti-Kriegs-Film ."
  assert translation_eval.paper_tokens('a "b", c-d', "de") == 'a " b " , c ##AT##-##AT## d'
  # German: 9 reference and 7 hypothesis tokens; n-gram matches 7/7, 5/6, 3/5, 1/4.
  want = math.exp(1 - 9 / 7) * (7 / 7 * 5 / 6 * 3 / 5 * 1 / 4) ** 0.25 * 100
  assert translation_eval.tokenized_bleu([hyp], [ref], "de") == pytest.approx(want)
  # Unsplit (English rules), no 4-gram matches: 0, as multi-bleu.perl (no smoothing).
  assert translation_eval.tokenized_bleu([hyp], [ref], "en") == 0.0
  # Equal lengths: 4/5, 3/4, 2/3, 1/2 of the n-grams match; with the period split off,
  # 5/6, 3/5, 2/4, 1/3.
  assert translation_eval.tokenized_bleu(["a b c d f"], ["a b c d e"], "en") == (
      pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25 * 100))
  assert translation_eval.tokenized_bleu(["a b c d f."], ["a b c d e."], "de") == (
      pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25 * 100))
  method = translation_eval.tokenized_bleu_method("de")
  assert "13a" in method and "##AT##-##AT##" in method and "tok:none|smooth:none" in method
  assert "##AT##" not in translation_eval.tokenized_bleu_method("en")
  assert translation_eval.bleu_signature(translation_eval.SACREBLEU).startswith(
      "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_the_translations_file_is_one_record_per_line_for_any_line_splitter(tmp_path):
  records = [{"index": i, "source": f"s{c}", "reference": f"r{c}\n", "hypothesis": "h\u00e4"}
             for i, c in enumerate(INSIDE + ("\r", "\n"))]
  path = tmp_path / "t.jsonl"
  translation_eval.write_translations(path, records)
  text = path.read_text(encoding="utf-8")
  assert len(text.splitlines()) == len(records) and "\u00e4" in text  # readable UTF-8
  assert [json.loads(line) for line in text.splitlines()] == records


def _seq2seq_config(folder, steps=6):
  c = base_config()
  c.task, c.objective, c.translation_dir = "translation", "seq2seq", str(folder)
  m, t = c.model, c.translation
  m.name = "luna"
  m.luna.proj_len, m.luna.p_style = 4, "seq2seq"
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim = 1, 16, 2, 16
  t.decoder_layers, t.max_source_len, t.max_target_len, t.max_tokens = 1, 16, 16, 128
  t.beam_size, t.val_bleu_sentences, t.select = 2, 6, "bleu"
  c.optimizer.learning_rate, c.optimizer.warmup_steps = 1e-3, 2
  c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = steps, 1, 3, 3
  c.progress_bar = False
  return c


def test_a_translation_run_resumes_bit_exactly_and_reports_bleu(prepared, tmp_path):
  config = _seq2seq_config(prepared)
  straight = train_and_evaluate(config, tmp_path / "straight")
  resumed = train_killed_then_resumed(config, tmp_path / "resumed", kill_after=4)
  for a, b in zip(latest_params(tmp_path / "straight"), latest_params(tmp_path / "resumed"),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  assert resumed["test_bleu"] == straight["test_bleu"]
  for key in ("test_bleu", "copy_bleu", "test_perplexity", "best_val_bleu"):
    assert np.isfinite(straight[key]), key
  assert straight["copy_bleu"] < 5  # copying the source is no translation
  assert straight["test_truncated_pairs"]["train"] > 0  # max 16 tokens truncates some
  # translate.py's engine on raw sentences, and translate.py's refusal of a non-workdir.
  from luna_jax.training.evaluate import load_run_and_params
  from luna_jax.training.translate import translate_sentences

  trainer, params = load_run_and_params(tmp_path / "straight")
  sources = translation.raw_sentences(prepared, "test", "source")[:5]
  sources.append("cat " * 40)
  out, truncated = translate_sentences(trainer, params, sources)
  tokenizer = translation.load_tokenizer(prepared)
  assert truncated == sum(len(tokenizer.encode(s)) + 1 > 16 for s in sources) >= 1
  assert len(out) == 6 and all(isinstance(s, str) for s in out)
  result = subprocess.run([sys.executable, "translate.py", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, input="a cat\n")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "train.py workdir" in result.stderr
  # An empty (or blank) line translates to an empty line, without the model.
  solo, solo_truncated = translate_sentences(trainer, params, sources[:1])
  assert translate_sentences(trainer, params, ["", sources[0], " "]) == (
      ["", solo[0], ""], solo_truncated)
  # The test translations, one record per pair, and how BLEU was computed.
  records = [json.loads(line) for line in
             (tmp_path / "straight" / "test_translations.jsonl").read_text().splitlines()]
  assert straight["test_translations"] == "test_translations.jsonl"
  assert [r["index"] for r in records] == list(range(20))
  assert [r["source"] for r in records] == translation.raw_sentences(prepared, "test",
                                                                      "source")
  refs = translation.raw_sentences(prepared, "test", "target")
  assert [r["reference"] for r in records] == refs
  hyps = [r["hypothesis"] for r in records]
  assert translation_eval.corpus_bleu(hyps, refs, {}) == straight["test_bleu"]
  assert translation_eval.tokenized_bleu(hyps, refs, "tgt") == straight[
      "test_tokenized_bleu"]
  assert straight["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
  assert straight["tokenized_bleu_method"] == translation_eval.tokenized_bleu_method("tgt")
  # translate.py: as many lines out as in; U+2028, U+0085 and a form feed stay inside
  # their line; empty and blank lines stay empty.
  text = "".join(f"{line}\n" for line in (
      sources[0], "", f"{sources[1]}\u2028{sources[2]}", "a\x85cat\x0csees", "  ", "a dog"))
  result = subprocess.run([sys.executable, "translate.py", "--workdir",
                           str(tmp_path / "straight")], capture_output=True, input=text.encode())
  assert result.returncode == 0, result.stderr.decode()
  out = result.stdout.decode("utf-8").split("\n")
  assert len(out) == 7 and out[-1] == "" and out[1] == out[4] == ""


@pytest.mark.parametrize("variant", ["luna", "transformer", "lightconv", "lightconv_big",
                                     "dynamicconv", "dynamicconv_big", "cpu"])
def test_the_wmt_configs_validate_and_build_their_models(prepared, variant):
  import jax

  from configs import wmt14_en_de
  from luna_jax.training.config import build_model, validate

  c = wmt14_en_de.get_config(variant)
  c.translation_dir = str(prepared)
  task = validate(c, num_devices=1)
  model = build_model(c, task)
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.ones((1, 8), np.int32),
                          np.ones((1, 8), np.int32))["params"]
  layers = {k for k in shapes["decoder"] if k.startswith("layer_")}
  assert len(layers) == c.translation.decoder_layers
  assert shapes["source_embed"]["embedding"].shape == (task.vocab.size, c.model.d_model)
  if variant.startswith(("lightconv", "dynamicconv")):
    assert c.model[c.model.name].kernel_sizes[:6] == (3, 7, 15, 31, 31, 31)
    assert (c.model.num_layers, c.translation.decoder_layers) == (7, 6)
  if variant == "luna":
    assert (c.model.luna.proj_len, c.model.luna.tied_kv) == (32, True)


@pytest.mark.parametrize("key,value", [("search", "greedy"), ("min_len", 16),
                                       ("min_len", -1)])
def test_generation_settings_are_checked(tmp_path, key, value):
  from luna_jax import errors
  from luna_jax.training.config import validate

  c = _seq2seq_config(tmp_path)  # max_target_len 16: min_len 15 at most
  c.translation[key] = value
  with pytest.raises(errors.ConfigError, match=f"translation.{key}="):
    validate(c, num_devices=1)


@pytest.mark.parametrize("key,value,says", [
    ("decoder_self_mixer", "softmax", "is not a mixer"),
    ("decoder_cross_mixer", "luna", "only a mixer without P"),
])
def test_decoder_ablation_settings_are_checked(tmp_path, key, value, says):
  from luna_jax import errors
  from luna_jax.training.config import validate

  c = _seq2seq_config(tmp_path)
  c.model.name = "transformer"
  c.translation[key] = value
  with pytest.raises(errors.ConfigError, match=f"translation.{key}=.*{says}"):
    validate(c, num_devices=1)
