"""No process of the project outlives the command that started it: after `train`, `run`, `study` and a
`run` interrupted by SIGINT or SIGTERM, none of the processes the command started (its worker forkserver,
the workers forked from it, the report's plot workers) is still running.

Each command runs with a marker variable in its environment, which every process it starts inherits; after
the command exits, every process of this user that carries the marker must be gone (a reparented daemon is
found too, which a walk of the command's children would miss once it is orphaned).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow  # each case is a fresh interpreter that imports torch: seconds each

MARKER = "MINIBATCH_TEST_PROCESS_MARKER"
# a forkserver reads its command's exit as EOF on a pipe and leaves a moment later: a deadline, not a sleep
GONE_WITHIN_S = 10.0


def _marked(marker: str) -> list[psutil.Process]:
    """The processes of this user that inherited ``marker`` (alive and not zombies)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get(MARKER) == marker:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _left_behind(marker: str) -> list[str]:
    deadline = time.monotonic() + GONE_WITHIN_S
    while True:
        alive = _marked(marker)
        if not alive or time.monotonic() > deadline:
            return [f"{p.pid}: {' '.join(p.cmdline())[:200]}" for p in alive if p.is_running()]
        psutil.wait_procs(alive, timeout=0.2)


def _start(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "MPLBACKEND": "Agg", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "minibatch_core", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, marker


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


SMALL_RUN = ["--engines", "reference", "--batch-sizes", "32", "--seeds", "0", "--epochs", "2", "--quiet"]
COMMANDS = {
    "train": ["train", "--epochs", "2"],
    "run": ["run", *SMALL_RUN, "--out", "sweep"],
    "study": ["study", "--dataset", "wine", "--batch-sizes", "32", "--lrs", "0.01", "--seeds", "0",
              "--max-epochs", "1", "--quiet", "--out", "study"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_process_outlives_a_command_nor_writes_outside_its_out_folder(name, tmp_path):
    # issue 22: no file outside --out and the system's temporary folder; a fresh home and current folder show
    # any other write (caches, logs, a default results/ folder)
    home, work, tmp = tmp_path / "home", tmp_path / "work", tmp_path / "tmp"
    for folder in (home, work, tmp):
        folder.mkdir()
    proc, marker = _start(COMMANDS[name], work, {"HOME": str(home), "TMPDIR": str(tmp)})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert _left_behind(marker) == []
    # the libraries' own per-user caches are theirs, as in any program that plots: matplotlib's font cache
    # (~/.cache/matplotlib, ~/.config/matplotlib) and torch's inductor folder in the temporary folder
    library = (".cache", ".config", ".cache/matplotlib", ".config/matplotlib")
    assert [f for f in _files(home) if f not in library and not f.startswith(".cache/matplotlib/")] == []
    out = {"train": set(), "run": {"sweep"}, "study": {"study"}}[name]
    assert {p.name for p in work.iterdir()} == out
    assert [f for f in _files(tmp) if not f.startswith("torchinductor_")] == []  # ours are removed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_no_process_outlives_an_interrupted_run(sig, tmp_path):
    # a sweep long enough to be interrupted while a run trains in a worker
    proc, marker = _start(["run", "--engines", "reference", "--batch-sizes", "1", "--seeds", "0-9",
                           "--quiet", "--out", "sweep"], tmp_path)
    command = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    # the forkserver and a worker forked from it: two descendants at least
    while len(command.children(recursive=True)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    assert len(command.children(recursive=True)) >= 2, "no worker started within 120 s"
    assert len(_marked(marker)) >= 3  # the marker finds the command, its forkserver and the worker
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert _left_behind(marker) == []


def test_a_forkserver_still_importing_is_ended_with_its_command():
    """A command that refuses its input right after starting its forkserver must not leave it importing torch
    for seconds (holding the command's stdout and stderr): the exit handler ends it at once."""
    code = (
        "import psutil\n"
        "from minibatch_core.running import isolation\n"
        "isolation.start_workers(['reference'])\n"
        # a new child's command line reads empty until the kernel has exec'd it: wait for it (milliseconds,
        # against the seconds its imports take)
        "import time\n"
        "deadline = time.monotonic() + 10\n"
        "while True:\n"
        "    server = [c for c in psutil.Process().children()\n"
        "              if 'multiprocessing.forkserver' in ' '.join(c.cmdline())]\n"
        "    if server or time.monotonic() > deadline:\n"
        "        break\n"
        "    time.sleep(0.005)\n"
        "isolation._end_forkservers()  # what the command's exit runs\n"
        "gone, alive = psutil.wait_procs(server, timeout=30)\n"
        "print(len(server), [int(p.returncode) for p in gone], len(alive))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    # still importing when ended: killed by the signal, not exited after its imports (which would wait for
    # this interpreter's exit, long after the 30 s above)
    assert done.stdout.split("\n")[0] == f"1 [{-int(signal.SIGTERM)}] 0"
