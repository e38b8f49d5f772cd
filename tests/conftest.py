"""Test-wide JAX settings: float64 available for the exactness tests, and implicit rank
promotion turned into an error so that broadcasting bugs cannot hide."""

import os

# The test extra installs libtpu (for the TPU compile tests, which need no TPU): without
# this, every test process would first try to start a TPU and print why it cannot.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """Every task's fixture files, prepared once per test process."""
  from tests.training_fixtures import prepare_fixture_data

  return prepare_fixture_data(tmp_path_factory.mktemp("lra"))
