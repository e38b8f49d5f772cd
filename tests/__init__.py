"""The pytest suite (`python -m pytest -q -n 2`): each mechanism against float64 NumPy
references (numpy_reference), training end to end on tiny configs (resume, errors
through the command line, notebooks, benchmarks with tiny sizes), and the commands of
the README and docs/ (test_docs). Shared fixtures and helpers: conftest, helpers,
lra_fixtures, training_fixtures, train_subprocess. CI (.ci/run) runs the README's test
command, ruff then this suite, in a fresh virtual environment.
"""
