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


ORPHAN_HELPER = textwrap.dedent("""
    import pathlib, time

    def mark_and_sleep(marker):
        pathlib.Path(marker).write_text("started")
        time.sleep(120)
        return "done"
""")

ORPHAN_MAIN = textwrap.dedent("""
    import sys
    from minibatch_core.running.isolation import run_isolated
    from orphan_helper import mark_and_sleep
    run_isolated(mark_and_sleep, sys.argv[1])
""")


@pytest.mark.slow
def test_worker_of_a_killed_sweep_exits_quietly_and_cleans_up(tmp_path):
    """SIGKILL of the sweep: its worker notices, removes multiprocessing's pymp-* folder (the killed
    process's exit handler never ran) and exits without a BrokenPipeError traceback."""
    import os
    import signal
    import time

    import psutil

    import minibatch_core

    temp = tmp_path / "tmp"
    temp.mkdir()
    package_root = os.path.dirname(os.path.dirname(minibatch_core.__file__))  # this checkout, not an install
    (tmp_path / "orphan_helper.py").write_text(ORPHAN_HELPER)
    (tmp_path / "orphan_main.py").write_text(ORPHAN_MAIN)
    marker = tmp_path / "started"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "orphan_main.py", str(marker)], cwd=tmp_path, stderr=err,
                                env={**os.environ, "TMPDIR": str(temp), "PYTHONPATH": package_root})
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), "the worker never started"
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert [p for p in temp.iterdir() if p.name.startswith("pymp-")]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(descendants, timeout=20)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "a worker outlived its sweep"
    assert not [p.name for p in temp.iterdir() if p.name.startswith("pymp-")]
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_workers_start_from_a_frozen_heap():
    """The forkserver freezes what it imported (gc.freeze), so a worker's garbage collections never walk,
    and copy page by page, the torch/scikit-learn heap it shares with the server."""
    import gc

    from minibatch_core.running.isolation import start_workers

    start_workers(["reference"])  # a no-op where this process's server already runs
    assert run_isolated(gc.get_freeze_count) > 10_000
    assert train(RunConfig(batch_size="full", epochs=2)).epoch_losses == train(
        RunConfig(batch_size="full", epochs=2), isolate=False).epoch_losses


SLOW_EXIT_HELPER = textwrap.dedent("""
    import os, threading, time

    def pid_with_a_slow_exit():
        threading.Thread(target=time.sleep, args=(1.0,)).start()  # not a daemon: the exit waits for it
        return os.getpid()
""")


def test_a_worker_is_gone_before_the_next_one_starts(tmp_path, monkeypatch):
    """run_isolated returns once the result is back, while the worker may still be exiting (tearing down its
    copy of the forkserver's heap takes about 7 ms); it is reaped before the next worker starts, so no exit
    overlaps another run (here a worker whose exit takes a second), and reap_workers leaves none behind."""
    import os

    import psutil

    from minibatch_core.running.isolation import reap_workers

    (tmp_path / "slow_exit_helper.py").write_text(SLOW_EXIT_HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))  # workers take this process's sys.path
    from slow_exit_helper import pid_with_a_slow_exit

    first = run_isolated(pid_with_a_slow_exit)
    assert run_isolated(psutil.pid_exists, first) is False  # asked from inside the next worker
    second = run_isolated(os.getpid)
    reap_workers()
    assert not psutil.pid_exists(second)
