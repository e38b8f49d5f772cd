"""The pytest suite (`python -m pytest -q -n 2`): each mechanism against float64 NumPy
references (numpy_reference), training end to end on tiny configs (resume, errors
through the command line, notebooks, benchmarks with tiny sizes), and the commands of
the README and docs/ (test_docs), and a workdir's safety under signals, failed saves,
a second process, damaged checkpoints and config changes (test_workdir_safety). Shared
fixtures and helpers: conftest, helpers, lra_fixtures, training_fixtures,
train_subprocess, train_with_full_disk. CI (.ci/run) runs the README's test command,
ruff then this suite, in a fresh virtual environment: 612 tests in 13 min 45 s on this
project's 2-core machine (conftest explains the compile settings that make it so).
"""
