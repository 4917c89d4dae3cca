"""The fresh-worker isolation must be invisible to API users."""

import subprocess
import sys
import textwrap

import pytest

from minibatch_core import MinibatchError, RunConfig, train
from minibatch_core.running.isolation import run_isolated

SCRIPT = textwrap.dedent("""
    from minibatch_core import RunConfig, train
    print("top level")
    result = train(RunConfig(batch_size="full", epochs=2, seed=0))
    print(len(result.epoch_losses))
""")


@pytest.mark.slow  # two fresh interpreters, each starting its own worker forkserver
def test_a_script_without_a_main_guard_trains_once(tmp_path):
    """multiprocessing re-imports __main__ in its children; the worker must not run the script again."""
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    for argv in ([sys.executable, str(script)], [sys.executable, "-"]):
        proc = subprocess.run(argv, input=SCRIPT if argv[-1] == "-" else None, capture_output=True, text=True,
                              timeout=180, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["top level", "2"]


def test_worker_runs_in_another_process_and_reports_user_errors_as_such():
    import os

    assert run_isolated(os.getpid) != os.getpid()
    with pytest.raises(MinibatchError, match="n_samples >= n_classes"):
        train(RunConfig(dataset="synthetic", n_samples=3, n_classes=5))


def test_workers_start_from_a_frozen_heap():
    """The forkserver freezes what it imported (gc.freeze), so a worker's garbage collections never walk,
    and copy page by page, the torch/scikit-learn heap it shares with the server."""
    import gc

    from minibatch_core.running.isolation import start_workers

    start_workers(["reference"])  # a no-op where this process's server already runs
    assert run_isolated(gc.get_freeze_count) > 10_000
    assert train(RunConfig(batch_size="full", epochs=2)).epoch_losses == train(
        RunConfig(batch_size="full", epochs=2), isolate=False).epoch_losses
