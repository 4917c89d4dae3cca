"""The pytest-benchmark front door: the harness shared by ``bench/`` and the ``train_benchmark`` fixture that
users call from their own repositories (registered through the ``pytest11`` entry point)."""
