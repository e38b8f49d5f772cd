"""Expected mistakes on the command line: one "error:" message, exit status 2, no
traceback; an unexpected error keeps its traceback."""

import json
import subprocess
import sys

import pytest

from tests import lra_fixtures as fx

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _run(*args, stdin=""):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                        input=stdin, timeout=300)


def _assert_clean_error(result, *phrases):
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  # One message (a tfds build may print its progress bars before it).
  assert ("\n" + result.stderr).count("\nerror: ") == 1, result.stderr
  for phrase in phrases:
    assert phrase in result.stderr, result.stderr


@pytest.mark.parametrize("args, phrases", [
    (["--config", "configs/lra_listops.py:bogus"], ["unknown variant 'bogus'", "cpu_spt"]),
    (["--config", "configs/no_such_file.py"], ["cannot load the config", "no_such_file.py"]),
    (["--config.model.d_model=abc"], ["--config.model.d_model=abc", "invalid literal"]),
    (["--config.model.num_heads=3"], ["invalid config: model.num_heads=3 must divide"]),
    (["--config", "configs/lra_text.py", "--config.data_dir={tmp}/empty"],
     ["text data is not prepared", "python -m luna_jax.data prepare text"]),
    (["--config", "configs/wmt14_en_de.py:luna", "--config.translation_dir={tmp}/none"],
     ["no prepared parallel text", "prepare_translation"]),
])
def test_train_py_reports_expected_mistakes_in_one_line(tmp_path, args, phrases):
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  _assert_clean_error(_run("train.py", "--workdir", str(tmp_path / "w"), *args), *phrases)


def test_eval_py_reports_bad_workdirs(tmp_path):
  _assert_clean_error(_run("eval.py", "--workdir", str(tmp_path)), "config.json not found",
                      "a train.py workdir")
  (tmp_path / "config.json").write_text(json.dumps(
      __import__("configs.lra_listops", fromlist=["x"]).get_config("cpu").to_dict()))
  _assert_clean_error(_run("eval.py", "--workdir", str(tmp_path)), "no best checkpoint")


def test_prepare_reports_a_malformed_file_with_its_line(tmp_path):
  release = tmp_path / "release"
  fx.write_listops(release, fx.LISTOPS_ROWS)
  train = next(release.rglob("basic_train.tsv"))
  train.write_text(train.read_text() + "( [MAX 1 2 ] )\n")  # no label column
  result = _run("-m", "luna_jax.data", "prepare", "listops", "--data_dir",
                str(tmp_path / "tfds"), "--release_dir", str(release), "--no_progress")
  _assert_clean_error(result, "basic_train.tsv:", "expected 2 tab-separated fields")


def test_an_unexpected_error_keeps_its_traceback():
  code = ("from luna_jax import cli\n"
          "def main(argv):\n  raise RuntimeError('a bug')\n"
          "cli.run(main)\n")
  result = _run("-c", code)
  assert result.returncode != 0 and "Traceback" in result.stderr
  assert "RuntimeError: a bug" in result.stderr
