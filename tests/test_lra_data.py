"""Builders on small files in the official formats, the grain pipelines, clear errors."""

import hashlib
import logging
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from luna_jax import data
from luna_jax.data import __main__ as cli
from luna_jax.data import prepared, readers, tasks, vocab
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
    want = sorted((im.tobytes(), int(lb)) for im, lb in zip(images, labels, strict=True))
    assert len(got) == len(want) and np.mean([g == w for g, w in zip(got, want, strict=True)]) > 0.99
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


def _assert_nothing_prepared(task_name, data_dir):
  """After a failed prepare: not prepared, no provenance, no half-written folder."""
  task = data.get_task(task_name)
  assert not data.is_prepared(task, data_dir)
  assert data.read_provenance(task, data_dir) is None
  assert not (pathlib.Path(data_dir) / task.builder).exists()


def test_unknown_listops_token_fails_at_prepare_naming_file_line_and_token(tmp_path, capsys):
  release = fx.write_listops(tmp_path / "release")
  val = release / "listops-1000" / "basic_val.tsv"  # train is written before val fails
  good = val.read_text()
  val.write_text(good + "( ( [FIRST 1 ) ] )\t1\n")
  args = ["prepare", "listops", "--data_dir", str(tmp_path / "tfds"), "--release_dir",
          str(release), "--no_progress"]
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]  # after tfds' progress bars
  assert err.startswith("error: ")
  assert f"{val}:6: unknown ListOps token '[FIRST'" in err
  _assert_nothing_prepared("listops", tmp_path / "tfds")
  val.write_text(good)  # fixed: a rerun works
  assert cli.main(args) == 0
  assert data.is_prepared(data.get_task("listops"), tmp_path / "tfds")


@pytest.mark.parametrize("task_name,label", [("listops", "nan"), ("listops", "inf"),
                                             ("retrieval", "nan"), ("retrieval", "-inf")])
def test_non_finite_labels_fail_at_prepare_naming_file_and_line(task_name, label, tmp_path):
  release = tmp_path / "release"
  if task_name == "listops":
    fx.write_listops(release, fx.LISTOPS_ROWS + [("( ( [MAX 1 ) ] )", label)])
    bad, line, classes = release / "listops-1000" / "basic_train.tsv", 6, "0..9"
  else:
    fx.write_aan(release, fx.AAN_ROWS[:2] + [(label,) + fx.AAN_ROWS[2][1:]])
    bad, line, classes = release / "tsv_data" / "new_aan_pairs.train.tsv", 3, "0..1"
  with pytest.raises(readers.DataFormatError) as e:
    data.prepare(task_name, tmp_path / "tfds", release_dir=release, progress=False)
  assert str(e.value) == (f"{bad}:{line}: label '{label}' is not a finite number; a label "
                          f"must be a whole number {classes}")
  _assert_nothing_prepared(task_name, tmp_path / "tfds")


def _truncate(path: pathlib.Path) -> None:
  path.write_bytes(path.read_bytes()[:-60])


@pytest.mark.parametrize("defect,message", [
    ("empty", "is empty (0 bytes)"), ("truncated", "is truncated"),
    ("no test", "has no test reviews"), ("no train", "has no train reviews")])
def test_incomplete_imdb_archive_fails_naming_it(defect, message, tmp_path):
  manual = tmp_path / "manual"
  archive = manual / "aclImdb_v1.tar.gz"
  if defect == "empty":
    manual.mkdir()
    archive.write_bytes(b"")
  elif defect == "truncated":
    _truncate(fx.write_imdb_archive(manual))
  else:
    fx._tar_gz(archive, {k: v for k, v in fx.IMDB_FILES.items()
                         if f"/{defect.split()[1]}/" not in k})
  with pytest.raises(readers.DataFormatError) as e:
    data.prepare("text", tmp_path / "tfds", source="manual", manual_dir=manual, progress=False)
  assert str(e.value).startswith(f"{archive} {message}")
  assert str(e.value).endswith(f"Download {data.builders.IMDB_URL} again and put it at "
                               f"{archive}.")
  _assert_nothing_prepared("text", tmp_path / "tfds")
  fx.write_imdb_archive(manual)  # a complete archive: a rerun works
  data.prepare("text", tmp_path / "tfds", source="manual", manual_dir=manual, progress=False)
  assert data.is_prepared(data.get_task("text"), tmp_path / "tfds")


@pytest.mark.parametrize("defect,message", [
    ("empty", "is empty (0 bytes)"), ("truncated", "is truncated"),
    ("no records", ": test_batch.bin has 0 bytes")])
def test_incomplete_cifar_archive_fails_naming_it(defect, message, tmp_path):
  manual = tmp_path / "manual"
  archive = fx.write_cifar_archive(manual)[0]
  if defect == "no records":
    with tarfile.open(archive) as tar:
      files = {m.name: tar.extractfile(m).read() for m in tar}
    fx._tar_gz(archive, {**files, "cifar-10-batches-bin/test_batch.bin": b""})
  elif defect == "empty":
    archive.write_bytes(b"")
  elif defect == "truncated":
    _truncate(archive)
  with pytest.raises(readers.DataFormatError) as e:
    data.prepare("image", tmp_path / "tfds", source="manual", manual_dir=manual, progress=False)
  assert str(e.value).startswith(f"{archive}{'' if message[0] == ':' else ' '}{message}")
  assert f"Download {data.builders.CIFAR_URL} again and put it at {archive}." in str(e.value)
  _assert_nothing_prepared("image", tmp_path / "tfds")


@pytest.mark.parametrize("kind,mode", [("rgb", "RGB"), ("16-bit", "I;16")])
def test_pathfinder_refuses_rgb_and_16_bit_pngs(kind, mode, tmp_path):
  from PIL import Image

  release = tmp_path / "release"
  fx.write_pathfinder(release, num_images=10, empty_index=3)
  bad = release / "pathfinder32" / "curv_contour_length_14" / "imgs" / "1" / "sample_8.png"
  pixels = (np.zeros((32, 32, 3), np.uint8) if kind == "rgb" else
            np.full((32, 32), 1000, np.uint16))
  Image.fromarray(pixels).save(bad)
  with pytest.raises(readers.DataFormatError) as e:
    data.prepare("pathfinder32", tmp_path / "tfds", release_dir=release, progress=False)
  assert str(e.value).startswith(f"image {bad} has PIL mode {mode!r}; LRA Pathfinder images "
                                 "are 8-bit grayscale (mode 'L')")
  _assert_nothing_prepared("pathfinder32", tmp_path / "tfds")


def test_prepare_records_and_prints_provenance(tmp_path, capsys):
  release = fx.write_listops(tmp_path / "release")
  data.prepare("listops", tmp_path / "rel", release_dir=release, progress=False)
  got = data.read_provenance("listops", tmp_path / "rel")
  assert got["source"] == "release" and got["release_dir"] == str(release.absolute())
  assert got["splits"] == {"train": 4, "validation": 4, "test": 4}
  assert f"listops data: read from the LRA release folder {release.absolute()}; train 4" in \
      capsys.readouterr().out

  d = _listops_dir(tmp_path, n=20)
  got = data.read_provenance("listops", d)
  assert (got["source"], got["generator"], got["seed"], got["num_examples"]) == (
      "generate", "luna_jax.data.listops", 5, 20)
  assert got["splits"]["train"] == 20 and pathlib.Path(got["generated_dir"]).is_dir()
  assert "generated by luna_jax.data.listops (seed 5)" in capsys.readouterr().out

  manual = tmp_path / "manual"
  archive = fx.write_imdb_archive(manual)
  data.prepare("text", tmp_path / "text", source="manual", manual_dir=manual, progress=False)
  got = data.read_provenance("text", tmp_path / "text")
  assert (got["source"], got["archive"], got["url"], got["size_bytes"], got["sha256"]) == (
      "manual", str(archive.absolute()), None, archive.stat().st_size,
      hashlib.sha256(archive.read_bytes()).hexdigest())
  capsys.readouterr()
  data.prepare("text", tmp_path / "text", progress=False)  # already prepared: says from what
  assert f"text data: read from {archive.absolute()} (" in capsys.readouterr().out

  folder = pathlib.Path(data.prepare("text", tmp_path / "text", progress=False))
  (folder / "provenance.json").unlink()  # as prepared before provenance was recorded
  assert data.read_provenance("text", tmp_path / "text") is None
  assert data.describe_provenance(None).startswith("unknown")


def test_generated_split_sizes(tmp_path):
  """--num_examples is the training split; validation and test get the official
  proportion (ListOps 2,000 per 96,000, Pathfinder 1 per 8) unless given."""
  listops, pathfinder = data.get_task("listops"), data.get_task("pathfinder32")
  assert data.generated_sizes(listops) == {"train": 96_000, "validation": 2_000, "test": 2_000}
  assert data.generated_sizes(pathfinder) == {"train": 160_000, "validation": 20_000,
                                              "test": 20_000}
  assert data.generated_sizes(pathfinder, 100) == {"train": 100, "validation": 12, "test": 12}
  assert data.generated_sizes(listops, 100, 10) == {"train": 100, "validation": 10, "test": 10}
  with pytest.raises(ValueError, match="num_eval_examples must be at least 1"):
    data.generated_sizes(listops, 100, 0)

  d = tmp_path / "tfds"
  data.prepare("listops", d, num_examples=96, progress=False)
  assert {s: len(data.data_source(listops, s, d)) for s in ("train", "validation", "test")} \
      == {"train": 96, "validation": 2, "test": 2}
  data.prepare("pathfinder32", d, num_examples=16, num_eval_examples=3, progress=False)
  assert {s: len(data.data_source(pathfinder, s, d)) for s in ("train", "validation", "test")} \
      == {"train": 16, "validation": 3, "test": 3}


def test_pathfinder_regenerated_smaller_keeps_no_old_images(tmp_path):
  """30 then 12 images (--overwrite) gives 12 + their validation and test, not 30's."""
  d, task = tmp_path / "tfds", data.get_task("pathfinder32")
  data.prepare("pathfinder32", d, num_examples=24, num_eval_examples=3, progress=False)
  data.prepare("pathfinder32", d, num_examples=8, num_eval_examples=2, progress=False,
               overwrite=True)
  sizes = {s: len(data.data_source(task, s, d)) for s in ("train", "validation", "test")}
  assert sizes == {"train": 8, "validation": 2, "test": 2}
  generated = d / "generated" / "lra_pathfinder_32_hard_seed0"
  assert len(list(generated.rglob("*.png"))) == 12


def test_failed_rebuild_keeps_the_earlier_dataset(tmp_path, capsys):
  """--overwrite with bad data: the error, and the dataset prepared before is untouched."""
  d, task = tmp_path / "tfds", data.get_task("listops")
  data.prepare("listops", d, num_examples=20, seed=1, progress=False)
  before = [data.data_source(task, "train", d)[i] for i in range(20)]
  release = fx.write_listops(tmp_path / "release")
  train = release / "listops-1000" / "basic_train.tsv"
  train.write_text(train.read_text() + "( ( [FIRST 1 ) ] )\t1\n")
  with pytest.raises(data.DataFormatError, match=r"unknown ListOps token '\[FIRST'"):
    data.prepare("listops", d, release_dir=release, overwrite=True, progress=False)
  assert "the earlier dataset" in capsys.readouterr().err
  assert data.is_prepared(task, d)
  assert [data.data_source(task, "train", d)[i] for i in range(20)] == before
  assert data.read_provenance(task, d)["source"] == "generate"
  assert not list(d.rglob("*.replaced"))
  data.prepare("listops", d, num_examples=12, seed=1, overwrite=True, progress=False)
  assert len(data.data_source(task, "train", d)) == 12 and not list(d.rglob("*.replaced"))


_READER = """
import sys
from luna_jax import data
d = sys.argv[1]
batches = list(data.make_dataset("listops", "validation", d, data.InputConfig(64),
                                 global_batch=2, num_epochs=1))
assert len(batches) == 1 and data.read_provenance("listops", d)["source"] == "generate"
data.ensure_prepared("listops", d, generate=10)  # prepared: nothing to build
print([m for m in ("luna_jax.data.build", "luna_jax.data.builders", "luna_jax.data.prepare",
                   "tensorflow") if m in sys.modules])
"""


def test_reading_never_imports_the_build_code(tmp_path):
  d = _listops_dir(tmp_path, n=8)
  out = subprocess.run([sys.executable, "-c", _READER, str(d)], capture_output=True,
                       text=True, cwd=pathlib.Path(__file__).parents[1], check=True)
  assert out.stdout.strip() == "[]", out.stderr


def test_repeated_evaluation_reuses_one_reader_until_a_rebuild(tmp_path, monkeypatch):
  d = _listops_dir(tmp_path, n=16)
  opened = []
  real = tfds.builder_from_directory
  monkeypatch.setattr(tfds, "builder_from_directory", lambda p: opened.append(p) or real(p))

  def evaluate():
    return _all_batches(data.make_dataset("listops", "validation", d, data.InputConfig(64),
                                          global_batch=2, num_epochs=1))

  assert [len(evaluate()) for _ in range(3)] == [1, 1, 1]
  assert len(opened) == 1
  data.prepare("listops", d, num_examples=48, seed=5, overwrite=True, progress=False)
  assert len(evaluate()) == 1 and len(opened) == 2  # the rebuilt dataset, opened once
  assert len(data.data_source(data.get_task("listops"), "train", d)) == 48


def test_each_record_names_the_folder_its_builder_writes(tmp_path):
  records = [data.get_task(n) for n in data.task_names()] + [
      data.get_task("pathfinder64", d) for d in ("easy", "intermediate")]
  for task in records:
    assert pathlib.Path(data.build.builder_for(task, tmp_path).data_dir) == \
        prepared.dataset_folder(task, tmp_path)
  assert data.get_task("pathx") is data.get_task("pathfinder128", "hard")
  with pytest.raises(ValueError, match="unknown Pathfinder difficulty 'hardest'"):
    data.get_task("pathfinder32", "hardest")
  with pytest.raises(TypeError):
    data.Task("x", "lra_x", 2, vocab.BYTE_VOCAB, None, 8)  # keywords only


def test_ensure_prepared_generates_on_first_use_else_names_the_command(tmp_path, capsys):
  d, calls = tmp_path / "tfds", []
  with pytest.raises(FileNotFoundError, match="python -m luna_jax.data prepare text --data_dir"):
    data.ensure_prepared("text", d, generate=10)  # cannot be generated
  with pytest.raises(FileNotFoundError, match="prepare listops"):
    data.ensure_prepared("listops", d)  # generate=0: never
  with pytest.raises(FileNotFoundError, match="prepare listops"):  # only the lead generates
    data.ensure_prepared("listops", d, generate=10, lead=False, barrier=lambda: calls.append(1))
  assert calls == [1]
  task = data.get_task("pathfinder32")
  for _ in range(2):
    folder = data.ensure_prepared(task, d, generate=4, num_eval_examples=1, progress=False,
                                  barrier=lambda: calls.append(2))
  assert calls == [1, 2, 2] and folder == prepared.dataset_folder(task, d)
  assert capsys.readouterr().out.count("Pathfinder 32 is not prepared") == 1
  assert {s: len(data.data_source(task, s, d)) for s in ("train", "validation", "test")} == \
      {"train": 4, "validation": 1, "test": 1}
  assert data.read_provenance(task, d)["difficulty"] == "hard"


def _write_parity(root, sizes, seed, progress, workers=None):
  rng = np.random.default_rng(seed)
  (root / "parity").mkdir(parents=True, exist_ok=True)
  for split, n in sizes.items():
    bits = rng.integers(0, 2, (n, 8))
    (root / "parity" / f"{split}.txt").write_text(
        "".join(f"{''.join(map(str, b))}\t{b.sum() % 2}\n" for b in bits))


class LunaTestParity(tfds.core.GeneratorBasedBuilder):
  """The builder of a task added by a test: the parity of 8 bits."""

  VERSION = tfds.core.Version(tasks.DATASET_VERSION)
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place parity/{train,validation,test}.txt here."

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {"bits": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(pathlib.Path(dl_manager.manual_dir) / name)
            for split, name in data.get_task("parity").release_files.items()}

  def _generate_examples(self, path):
    for i, line in enumerate(path.read_text().splitlines()):
      bits, label = line.split("\t")
      yield i, {"bits": bits, "label": int(label)}


def test_adding_a_task_is_one_record(tmp_path):
  data.register_task(data.Task(
      name="parity", builder="luna_test_parity", num_classes=2, vocab=vocab.BYTE_VOCAB,
      encode=lambda ex: vocab.encode_bytes(ex["bits"]), default_length=8,
      release_files={s: f"parity/{s}.txt" for s in tasks.SPLITS}, release_what="parity file",
      generator=tasks.Generator(module=__name__, title="Parity", write=_write_parity,
                                official_sizes={"train": 80, "validation": 10, "test": 10})))
  try:
    task = data.get_task("parity")
    assert task.sources == ("generate", "release") and "parity" in data.task_names()
    d = tmp_path / "tfds"
    data.prepare("parity", d, num_examples=12, progress=False)
    batches = _all_batches(data.make_dataset("parity", "train", d, data.InputConfig(10),
                                             global_batch=4, num_epochs=1))
    inputs = np.concatenate([b["inputs"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert inputs.shape == (12, 10) and inputs[0, 0] == vocab.BYTE_VOCAB.cls_id
    np.testing.assert_array_equal((inputs[:, 1:9] - 1 - ord("0")).sum(1) % 2, labels)
    assert data.read_provenance("parity", d)["splits"] == {"train": 12, "validation": 2,
                                                           "test": 2}
    release = d / "generated" / "luna_test_parity_seed0"
    data.prepare("parity", tmp_path / "again", release_dir=release, progress=False)
    assert len(data.data_source(task, "test", tmp_path / "again")) == 2
    with pytest.raises(data.DataFormatError, match=r"missing parity file: .*parity/train.txt "
                       "does not exist.*Or generate Parity with --source generate"):
      data.prepare("parity", tmp_path / "x", release_dir=tmp_path / "nowhere", progress=False)
  finally:
    tasks.unregister_task("parity")
  with pytest.raises(ValueError, match="unknown task 'parity'"):
    data.get_task("parity")


def test_train_py_generates_pathfinder_on_first_use_with_the_configs_sizes(tmp_path):
  """As ListOps: a generated task missing from data_dir is generated by the run itself
  (config.generate_examples; -1 would be the official 160,000)."""
  from configs import lra_pathfinder
  from luna_jax.training.workloads.lra import ensure_task_data

  c = lra_pathfinder.get_config("cpu")
  c.data_dir, c.generate_examples, c.generate_eval_examples = str(tmp_path), 6, 2
  c.progress_bar = False
  task = data.get_task(c.task, c.difficulty)
  ensure_task_data(c, task)
  assert {s: len(data.data_source(task, s, tmp_path)) for s in ("train", "validation",
                                                                "test")} == {
      "train": 6, "validation": 2, "test": 2}
  c.generate_examples = 0  # never: the prepared data is used, nothing regenerated
  ensure_task_data(c, task)
  with pytest.raises(FileNotFoundError, match="prepare pathfinder32"):
    c.data_dir = str(tmp_path / "other")
    ensure_task_data(c, task)
