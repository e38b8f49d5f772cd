"""Test-wide JAX settings: float64 available for the exactness tests, implicit rank
promotion turned into an error so that broadcasting bugs cannot hide, and one persistent
compilation cache per test session, and quicker XLA compiles."""

import atexit
import os
import shutil
import tempfile

# The test extra installs libtpu (for the TPU compile tests, which need no TPU): without
# this, every test process would first try to start a TPU and print why it cannot.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same small programs, in the xdist workers and in the train.py
# processes they start (a killed run and its resumption compile the same steps): one
# compilation cache for the session, made by the first process to load this file (the
# xdist controller), inherited by the others and removed when that process exits.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="luna_jax_test_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# Most of the suite's time is XLA compiling small CPU programs. At the CPU backend's
# optimisation level 0 a 4-step ListOps run takes 8.8 s instead of 12.8 s; no test
# asserts anything that depends on it (the float64 references hold either way). Only the
# tests and the processes they start: train.py and the benchmarks keep XLA's default.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """Every task's fixture files, prepared once per test process."""
  from tests.training_fixtures import prepare_fixture_data

  return prepare_fixture_data(tmp_path_factory.mktemp("lra"))


# The longest tests (a minute or more each on 2 cores, `--durations`) go first, so that
# the two xdist workers do not end with one of them running alone.
LONGEST_FIRST = (
    "tests/test_benchmarks.py::test_accelerator_check_dry_run",
    "tests/test_benchmarks.py::test_mlm_perplexity_quick",
    "tests/test_translation.py::test_a_translation_run_resumes",
    "tests/test_training.py::test_eight_devices_and_two_processes",
    "tests/test_aot.py::test_a_config_that_does_not_fit",
    "tests/test_aot.py::test_train_py_compiles_for_v5e_8",
    "tests/test_seq2seq.py::test_a_long_reference",
    "tests/test_notebooks.py::test_quickstart_runs",
)


def pytest_collection_modifyitems(items):
  def rank(item):
    for i, prefix in enumerate(LONGEST_FIRST):
      if item.nodeid.startswith(prefix):
        return i
    return len(LONGEST_FIRST)

  items.sort(key=rank)  # stable: the rest keep their order
