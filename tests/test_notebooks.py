"""The notebooks run top to bottom on a CPU (tiny settings in their "parameters" cell), and
are committed without outputs."""

import json
import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# A tiny ListOps run: a few generated examples, 64 tokens, a one-layer width-16 model.
TINY_CONFIG = {
    "batch_size": 4, "max_len": 64, "model.num_layers": 1, "model.d_model": 16,
    "model.num_heads": 2, "model.ffn_dim": 32, "model.classifier_hidden": 16,
    "model.luna.proj_len": 8, "log_every": 5, "eval_every": 10, "checkpoint_every": 10,
    "max_eval_batches": 2, "progress_bar": False,
}


def _parameters(tmp_path, **knobs) -> str:
  knobs = {"NUM_STEPS": 20, "NUM_EXAMPLES": 40, "DATA_DIR": str(tmp_path / "data"),
           "WORKDIR": str(tmp_path / "run"), "CONFIG_OVERRIDES": TINY_CONFIG, **knobs}
  return "\n".join(f"{name} = {value!r}" for name, value in knobs.items())


def _execute(name: str, parameters: str):
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
  # The notebook's own defaults first, then the tiny values over them.
  tagged[0].source += "\n\n# tiny settings of tests/test_notebooks.py\n" + parameters
  # Raises CellExecutionError (with the cell and its traceback) if any cell fails.
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT)}}).execute()
  code = [c for c in nb.cells if c.cell_type == "code"]
  for cell in code:
    assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
  return code


def _text(cell) -> str:
  return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                 for o in cell.outputs)


def test_quickstart_runs(tmp_path):
  code = _execute("quickstart.ipynb", _parameters(tmp_path, SEQ_LENGTHS=[64, 128]))
  everything = "".join(_text(c) for c in code)
  assert "Test accuracy" in everything and "test accuracy" in everything
  assert "reproduce LunaAttention's packed output" in everything
  assert "P row  0:" in everything
  assert any("image/png" in o.get("data", {}) for o in code[-1].outputs), \
      "the last cell should draw the pack attention"
  assert (tmp_path / "run" / "checkpoints" / "best").is_dir()


def test_lra_colab_runs(tmp_path):
  code = _execute("lra_colab.ipynb", _parameters(tmp_path, TASK="listops",
                                                 CONFIG_VARIANT="cpu", MECHANISM="luna"))
  everything = "".join(_text(c) for c in code)
  assert "device count: " in everything
  assert "test accuracy of the best checkpoint (step" in everything
  assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
  assert "checkpoints/latest: steps [10, 20]" in _text(code[-1])
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["steps"] == 20 and 0.0 <= summary["test_accuracy"] <= 1.0


@pytest.mark.parametrize("name", ["quickstart.ipynb", "lra_colab.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
  nb = json.loads((NOTEBOOKS / name).read_text())
  code = [c for c in nb["cells"] if c["cell_type"] == "code"]
  assert "parameters" in code[0]["metadata"].get("tags", []), \
      "the first code cell holds the parameters"
  for cell in code:
    assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])
