"""Builders on small files in the official formats, the grain pipelines, clear errors."""

import logging
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from luna_jax import data
from luna_jax.data import __main__ as cli
from luna_jax.data import readers, vocab
from tests import lra_fixtures as fx


def _all_batches(ds) -> list:
  return list(iter(ds))


def test_listops_from_a_release_folder(tmp_path):
  release = fx.write_listops(tmp_path / "release")
  data.prepare("listops", tmp_path / "tfds", release_dir=release, progress=False)
  cfg = data.InputConfig(max_len=12)
  batches = _all_batches(data.make_dataset("listops", "test", tmp_path / "tfds", cfg,
                                           global_batch=3, num_epochs=1))
  assert [b["inputs"].shape for b in batches] == [(3, 12), (3, 12)]
  weights = np.concatenate([b["weight"] for b in batches])
  np.testing.assert_array_equal(weights, [1, 1, 1, 1, 0, 0])  # the last batch is filled up
  rows = {tuple(b["inputs"][i]): int(b["label"][i]) for b in batches for i in range(3)
          if b["weight"][i]}
  want = {}
  for source, label in fx.LISTOPS_ROWS:
    ids = vocab.encode_listops(source)[:10]
    tokens = np.concatenate([[16], ids, [17]])
    want[tuple(np.pad(tokens, (0, 12 - len(tokens))))] = label
  assert rows == want


def test_retrieval_pairs_from_a_release_folder(tmp_path):
  release = fx.write_aan(tmp_path / "release")
  data.prepare("retrieval", tmp_path / "tfds", release_dir=release, progress=False)
  cfg = data.InputConfig(max_len=20, add_eos=False)
  (batch,) = _all_batches(data.make_dataset("retrieval", "validation", tmp_path / "tfds", cfg,
                                            global_batch=3, num_epochs=1))
  assert batch["inputs"].shape == (3, 2, 20)
  got = {(bytes((batch["inputs"][i, 0, 1:][batch["inputs"][i, 0, 1:] > 0] - 1).astype(np.uint8))
          ): int(batch["label"][i]) for i in range(3)}
  want = {t1[:19]: int(label) for label, _, _, t1, _ in fx.AAN_ROWS}
  assert got == want
  assert np.all(batch["inputs"][:, :, 0] == vocab.BYTE_VOCAB.cls_id)


def test_pathfinder_skips_the_empty_png_and_splits_80_10_10(tmp_path, caplog):
  release = tmp_path / "release"
  written = fx.write_pathfinder(release, num_images=10, empty_index=3)
  with caplog.at_level(logging.WARNING):
    data.prepare("pathfinder32", tmp_path / "tfds", release_dir=release, progress=False)
  assert any("empty image" in r.message for r in caplog.records)
  task = data.get_task("pathfinder32")
  sizes = {s: len(data.data_source(task, s, tmp_path / "tfds")) for s in
           ("train", "validation", "test")}
  assert sizes == {"train": 7, "validation": 1, "test": 1}
  (batch,) = _all_batches(data.make_dataset(task, "test", tmp_path / "tfds",
                                            data.InputConfig(max_len=1026), global_batch=1,
                                            num_epochs=1))
  image, label = written[9]
  np.testing.assert_array_equal(batch["inputs"][0, 1:1025], image.reshape(-1).astype(np.int32) + 1)
  assert batch["label"][0] == label and batch["inputs"][0, 1025] == vocab.PIXEL_VOCAB.eos_id


def test_text_from_the_official_imdb_archive(tmp_path):
  manual = tmp_path / "manual"
  fx.write_imdb_archive(manual)
  data.prepare("text", tmp_path / "tfds", source="manual", manual_dir=manual, progress=False)
  task = data.get_task("text")
  train = data.data_source(task, "train", tmp_path / "tfds")
  got = sorted((bytes(ex["text"]), int(ex["label"])) for ex in (train[i] for i in range(len(train))))
  assert got == sorted([(b"Awful.", 0), (b"Caf\xc3\xa9 scene was fun.", 1),
                        (b"Great film.<br />Loved it.", 1)])
  assert len(data.data_source(task, "validation", tmp_path / "tfds")) == 2  # = test, as LRA


def test_image_from_the_official_cifar_archive(tmp_path):
  manual = tmp_path / "manual"
  _, train_rgb, train_labels, test_rgb, test_labels = fx.write_cifar_archive(manual)
  data.prepare("image", tmp_path / "tfds", source="manual", manual_dir=manual, progress=False)
  task = data.get_task("image")
  # tf.image.rgb_to_grayscale on uint8, recomputed here in float64.
  gray = np.floor(np.clip((train_rgb.astype(np.float64) / 255) @ [0.2989, 0.5870, 0.1140]
                          * 255.5, 0, 255)).astype(np.uint8)
  for split, images, labels in (("train", gray[:18], train_labels[:18]),
                                ("validation", gray[18:], train_labels[18:])):
    src = data.data_source(task, split, tmp_path / "tfds")
    got = sorted((src[i]["image"].tobytes(), int(src[i]["label"])) for i in range(len(src)))
    want = sorted((im.tobytes(), int(lb)) for im, lb in zip(images, labels))
    assert len(got) == len(want) and np.mean([g == w for g, w in zip(got, want)]) > 0.99
  assert len(data.data_source(task, "test", tmp_path / "tfds")) == len(test_labels)


@pytest.mark.parametrize("task_name", ["text", "image"])
def test_pipelines_on_tfds_mock_data(task_name, tmp_path):
  task = data.get_task(task_name)
  with tfds.testing.mock_data(num_examples=10):
    source = tfds.data_source(task.builder, split=task.splits["train"])
    batches = _all_batches(data.make_dataset(task, "train", tmp_path, data.InputConfig(64),
                                             global_batch=4, num_epochs=1, source=source))
  assert len(batches) == 3  # 10 examples: 4 + 4 + 2 real ones and 2 fillers
  assert sum(float(b["weight"].sum()) for b in batches) == 10
  for b in batches:
    assert b["inputs"].shape == (4, 64) and b["inputs"].dtype == np.int32
    assert np.all(b["inputs"][:, 0] == task.vocab.cls_id)
    assert np.all((b["label"] >= 0) & (b["label"] < task.num_classes))


def _listops_dir(tmp_path, n=30) -> pathlib.Path:
  d = tmp_path / "tfds"
  data.prepare("listops", d, num_examples=n, seed=5, progress=False)
  return d


def test_restored_iterator_continues_with_the_same_batches(tmp_path):
  d = _listops_dir(tmp_path)
  make = lambda: data.make_dataset("listops", "train", d, data.InputConfig(64),  # noqa: E731
                                   global_batch=4, seed=9)
  it = iter(make())
  for _ in range(11):  # into the second epoch
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(5)]
  resumed = iter(make())
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["inputs"], want["inputs"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_epochs_reshuffle_and_processes_split_each_global_batch(tmp_path):
  d = _listops_dir(tmp_path, n=24)
  cfg = data.InputConfig(64)
  ds = iter(data.make_dataset("listops", "train", d, cfg, global_batch=6, seed=1))
  epoch1 = np.concatenate([next(ds)["inputs"] for _ in range(4)])
  epoch2 = np.concatenate([next(ds)["inputs"] for _ in range(4)])
  assert sorted(map(bytes, epoch1)) == sorted(map(bytes, epoch2))  # same examples
  assert not np.array_equal(epoch1, epoch2)  # another order
  halves = [iter(data.make_dataset("listops", "train", d, cfg, global_batch=6, seed=1,
                                   process_index=p, process_count=2)) for p in range(2)]
  whole = iter(data.make_dataset("listops", "train", d, cfg, global_batch=6, seed=1))
  for _ in range(5):
    parts = [next(h)["inputs"] for h in halves]
    assert parts[0].shape == (3, 64)
    np.testing.assert_array_equal(np.concatenate(parts), next(whole)["inputs"])


def test_truncation_keeps_cls_and_eos():
  task = data.get_task("text")
  tokens = data.to_tokens(np.arange(1, 100, dtype=np.int32), task, data.InputConfig(10))
  np.testing.assert_array_equal(tokens, [257, 1, 2, 3, 4, 5, 6, 7, 8, 258])
  with pytest.raises(ValueError, match="no room"):
    data.to_tokens(np.arange(5), task, data.InputConfig(2))


def test_missing_and_malformed_inputs_fail_clearly(tmp_path, capsys):
  with pytest.raises(FileNotFoundError, match="python -m luna_jax.data prepare text --data_dir"):
    data.data_source(data.get_task("text"), "train", tmp_path)
  with pytest.raises(readers.DataFormatError, match="listops-1000/basic_train.tsv does not exist"):
    data.prepare("listops", tmp_path / "x", release_dir=tmp_path / "nowhere", progress=False)
  with pytest.raises(readers.DataFormatError, match="aclImdb_v1.tar.gz.*Download"):
    data.prepare("text", tmp_path / "x", source="manual", manual_dir=tmp_path, progress=False)
  with pytest.raises(ValueError, match="cannot use --source generate"):
    data.prepare("retrieval", tmp_path / "x", source="generate", progress=False)
  bad = tmp_path / "bad.tsv"
  bad.write_text("Source\tTarget\n( [MAX 1 ] )\t3\n( [MAX 1 ] )\n")
  with pytest.raises(readers.DataFormatError, match=r"bad.tsv:3: expected 2 tab-separated"):
    list(readers.read_listops_tsv(bad))
  bad.write_text("Source\tTarget\n( [MAX 1 ] )\t12\n")
  with pytest.raises(readers.DataFormatError, match=r"bad.tsv:2: label '12' is out of range"):
    list(readers.read_listops_tsv(bad))
  bad.write_bytes(b"1.0\ta\tb\tonly four\n")
  with pytest.raises(readers.DataFormatError, match=r"bad.tsv:1: expected 5 tab-separated"):
    list(readers.read_aan_tsv(bad))
  png = tmp_path / "big.png"
  from PIL import Image
  Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
  with pytest.raises(readers.DataFormatError, match=r"shape \(64, 64\), expected \(32, 32\)"):
    readers.read_png(png, 32)
  assert cli.main(["prepare", "retrieval", "--data_dir", str(tmp_path / "y"),
                   "--release_dir", str(tmp_path / "nowhere")]) == 2
  assert "new_aan_pairs.train.tsv does not exist" in capsys.readouterr().err


def test_command_line_generates_listops(tmp_path, capsys):
  assert cli.main(["prepare", "listops", "--data_dir", str(tmp_path), "--num_examples", "12",
                   "--no_progress"]) == 0
  assert "prepared in" in capsys.readouterr().out
  task = data.get_task("listops")
  assert len(data.data_source(task, "train", tmp_path)) == 12
  assert cli.main(["prepare", "listops", "--data_dir", str(tmp_path), "--no_progress"]) == 0
  assert "already prepared" in capsys.readouterr().out
