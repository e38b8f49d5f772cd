"""The benchmarks' --quick modes run end to end (no timing assertions: they must not rot)."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, out):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick",
                         "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)


def test_luna_rate_quick_reports_rates_paths_and_memory(tmp_path):
  run = _run("luna_rate.py", tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  (json_path,) = tmp_path.glob("luna_rate_*_quick.json")
  saved = json.loads(json_path.read_text())
  for r in saved["records"]:
    assert r["softmax_path"] in ("chunked", "cudnn", "xla", "explicit")
    for key in ("attention", "layer"):
      assert r[key]["fraction_of_projection_rate"] > 0 and r[key]["executed_fraction"] > 0
    assert r["causal"]["ratio_to_attention"] > 0 and r["luna_speedup_over_softmax"] > 0
  assert 0 < saved["memory"]["ratio_explicit"] and 0 < saved["memory"]["ratio_picked"]
  assert "| 512 |" in json_path.with_suffix(".md").read_text()


def test_mlm_perplexity_quick_trains_every_mixer_at_every_length(tmp_path):
  run = _run("mlm_perplexity.py", tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  (json_path,) = tmp_path.glob("mlm_perplexity_*_quick.json")
  records = json.loads(json_path.read_text())["records"]
  assert {(r["mixer"], r["seq_len"]) for r in records} == {
      (m, n) for m in ("transformer", "luna-16", "linformer-64") for n in (64, 128)}
  assert all(r["test_perplexity"] > 1 and r["tokens_per_step"] == 512 for r in records)


def test_pathfinder_speed_quick_reports_every_worker_count(tmp_path):
  run = _run("pathfinder_speed.py", tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  (json_path,) = tmp_path.glob("pathfinder_speed_*_quick.json")
  records = json.loads(json_path.read_text())["records"]
  assert {r["resolution"] for r in records} == {32, 128}
  assert 1 in {r["workers"] for r in records}
  assert all(r["images_per_second"] > 0 for r in records)


def test_pathfinder_cnn_probe_quick_trains_and_records_each_epoch(tmp_path):
  run = _run("pathfinder_cnn_probe.py", tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  (json_path,) = tmp_path.glob("pathfinder_cnn_probe_*_quick.json")
  record = json.loads(json_path.read_text())
  assert record["num_train"] == 128 and record["epochs"]
  assert all(0.0 <= e["test_accuracy"] <= 1.0 for e in record["epochs"])
  assert 0.5 <= record["test_majority_rate"] <= 1.0


def test_accelerator_check_dry_run_runs_every_stage_on_the_cpu(tmp_path):
  """benchmarks/accelerator_check.sh --dry-run: each stage of the GPU check, tiny, on the
  CPU; its mixers and train_speed stages are those benchmarks' --quick modes (bf16)."""
  out = tmp_path / "check"
  run = subprocess.run(["bash", "benchmarks/accelerator_check.sh", "--dry-run", "--out",
                        str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  summary = (out / "summary.txt").read_text()
  for stage in ("cudnn_test", "mixers", "train_speed", "listops"):
    assert f"{stage}: exit 0 " in summary, summary
  assert "curve: validation accuracy" in summary, summary
  assert (out / "listops_curve.png").stat().st_size > 1000
  assert not (out / "listops_run").exists()  # checkpoints and data are not kept
  _check_mixers_quick(out)
  _check_train_speed_quick(out)


def _check_mixers_quick(out):
  (json_path,) = out.glob("mixers_*_quick.json")
  records = json.loads(json_path.read_text())["records"]
  mixers = {r["mixer"] for r in records}
  assert {"transformer", "luna-16", "luna-causal-16", "linformer-128", "lightconv-31",
          "dynamicconv-31"} <= mixers
  for r in records:
    assert {"mixer", "seq_len", "fwd_bwd_ms", "temp_bytes"} <= set(r)
    assert r["temp_bytes"] > 0 and (r["fwd_bwd_ms"] is None or r["fwd_bwd_ms"] > 0)
  assert all(r["attention_path"] in ("chunked", "cudnn", "xla", "explicit")
             for r in records if r["mixer"] == "transformer")
  assert "| luna-16 |" in json_path.with_suffix(".md").read_text()
  assert json_path.with_suffix(".png").stat().st_size > 1000


def _check_train_speed_quick(out):
  (json_path,) = out.glob("train_speed_*_quick.json")
  records = json.loads(json_path.read_text())["records"]
  assert {(r["mechanism"], r["seq_len"]) for r in records} >= {("transformer", 256),
                                                              ("luna-16", 512)}
  assert all(r["steps_per_s"] > 0 and r["temp_bytes"] > 0 for r in records)
  assert {r["attention_path"] for r in records if r["mechanism"] == "transformer"} <= {
      "chunked", "cudnn", "xla", "explicit"}
