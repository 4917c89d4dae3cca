"""The harness's options, fixtures and terminal summary live in the package (``minibatch_core.bench.plugin``),
which pytest loads through the ``pytest11`` entry point once minibatch-bench is installed; named here too,
so that a checkout run with PYTHONPATH (no entry point) gets the same harness. Loaded once either way."""

pytest_plugins = ["minibatch_core.bench.plugin"]
