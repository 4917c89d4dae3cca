"""The warm worker server (minibatch_core/running/warm.py): fresh workers that do not pay torch's import.

The suite runs with the server off (conftest.py); these tests turn it on, in a private folder of their own,
and stop what they started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from minibatch_core import RunConfig, train
from minibatch_core.running import warm
from minibatch_core.running.isolation import run_isolated


def _server_env(folder: Path, idle_s: float = 120) -> dict[str, str]:
    return {warm.ENV_SWITCH: "on", warm.ENV_DIR: str(folder), warm.ENV_IDLE: str(idle_s)}


def _stop_all(folder: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(warm.ENV_DIR, str(folder))
        pids = [int(s["pid"]) for s in warm.servers()]
        warm.stop()
    psutil.wait_procs([p for p in map(_proc, pids) if p], timeout=10)


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory):
    """The server on, for this module's tests, in a folder of its own (one server, reused)."""
    folder = tmp_path_factory.mktemp("srv")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _server_env(folder).items():
            mp.setenv(key, value)
        yield folder
        _stop_all(folder)


def _the_server(folder: Path, pid: int | None = None) -> dict:
    """The record of the server running in ``folder`` (the one with ``pid`` where several run there: a
    caller with another sys.path, e.g. the CLI in a subprocess, gets a server of its own)."""
    running = [s for s in warm.servers() if Path(s["socket"]).parent == folder and pid in (None, s["pid"])]
    assert len(running) == 1, running
    return running[0]


def test_runs_come_from_the_one_server_and_equal_the_forkservers(server_dir, monkeypatch):
    config = RunConfig(batch_size="32", epochs=3, seed=1)
    served = train(config)
    first, second = run_isolated(os.getppid), run_isolated(os.getppid)
    server = _the_server(server_dir, first)
    assert first == second != os.getpid()  # a child of the server, and the same server both times
    assert server["requests"] >= 3
    monkeypatch.setenv(warm.ENV_SWITCH, "off")
    assert not warm.enabled()
    own = train(config)
    assert run_isolated(os.getppid) != server["pid"]
    assert served.epoch_losses == own.epoch_losses
    assert served.memory_method == own.memory_method
    assert "one fresh worker process per run" in served.memory_method


def test_a_child_runs_in_the_callers_folder_environment_cpus_and_umask(server_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MB_TEST_ONLY_HERE", "42")  # not a variable that picks another server
    cpus = os.sched_getaffinity(0)
    old_umask = os.umask(0o027)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        assert run_isolated(os.getcwd) == str(tmp_path)
        assert run_isolated(os.getenv, "MB_TEST_ONLY_HERE") == "42"
        assert run_isolated(os.sched_getaffinity, 0) == {min(cpus)}
        assert run_isolated(os.umask, 0) == 0o027
    finally:
        os.sched_setaffinity(0, cpus)
        os.umask(old_umask)
    assert run_isolated(os.sched_getaffinity, 0) == cpus


def test_what_a_child_prints_reaches_the_callers_stdout(server_dir, capfd):
    run_isolated(print, "printed by the worker")
    assert "printed by the worker" in capfd.readouterr().out


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minibatch_core.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=cwd, timeout=300)


@pytest.mark.slow  # a server for the CLI's own sys.path, and a command without it
def test_the_cli_hands_whole_commands_to_a_running_server(tmp_path, monkeypatch):
    folder = tmp_path / "srv"  # the CLI's sys.path differs from pytest's: a server of its own, alone here
    env = _server_env(folder)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        _check_served_commands(env, folder, tmp_path)
    finally:
        _stop_all(folder)


def _check_served_commands(env: dict[str, str], folder: Path, tmp_path: Path) -> None:
    _cli(["train", "--epochs", "2"], env, tmp_path)  # runs here and starts the server
    before = _the_server(folder)["requests"]
    served = _cli(["train", "--epochs", "2"], env, tmp_path)
    assert served.returncode == 0, served.stderr
    assert _the_server(folder)["requests"] == before + 2  # the command itself, then its worker
    alone = _cli(["train", "--epochs", "2"], {warm.ENV_SWITCH: "off"}, tmp_path)
    epoch_lines = [line for line in alone.stdout.splitlines() if line.startswith("Epoch")]
    assert epoch_lines == [line for line in served.stdout.splitlines() if line.startswith("Epoch")]
    assert len(epoch_lines) == 2

    bad = _cli(["train", "--epochs", "0"], env, tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "minibatch-bench train: error: epochs 0 is not valid: use an integer >= 1"]
    usage = _cli(["train", "--bogus"], env, tmp_path)
    assert usage.returncode == 2 and "unrecognized arguments: --bogus" in usage.stderr
    helped = _cli(["train", "--help"], env, tmp_path)
    assert helped.returncode == 0 and "--batch-size" in helped.stdout
    missing = _cli(["report", str(tmp_path / "nowhere")], env, tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert _the_server(folder)["requests"] == before + 6


def test_status_and_stop(server_dir, tmp_path):
    env = _server_env(server_dir)
    pid = run_isolated(os.getppid)  # the server that ran it (the folder may hold others: other sys.paths)
    status = _cli(["server", "status"], env, tmp_path)
    assert status.returncode == 0 and f"pid {pid} " in status.stdout
    stopped = _cli(["server", "stop"], env, tmp_path)
    assert stopped.stdout.strip().startswith("stopped ")
    psutil.wait_procs([p for p in [_proc(pid)] if p], timeout=10)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "no warm worker server is running" in _cli(["server", "status"], env, tmp_path).stdout
    off = _cli(["server", "status"], {warm.ENV_SWITCH: "off"}, tmp_path)
    assert "the warm worker server is off" in off.stdout


@pytest.mark.slow  # a second server start
def test_a_killed_servers_socket_is_replaced_by_a_new_server(server_dir):
    old = _the_server(server_dir, run_isolated(os.getppid))
    os.kill(old["pid"], signal.SIGKILL)
    psutil.wait_procs([p for p in [_proc(old["pid"])] if p], timeout=10)
    assert Path(old["socket"]).exists()  # left behind: nobody removed it
    new = run_isolated(os.getppid)
    assert new != old["pid"] and _the_server(server_dir, new)["socket"] == old["socket"]


@pytest.mark.slow  # a server of its own
def test_an_idle_server_exits_and_removes_its_files(tmp_path, monkeypatch):
    for key, value in _server_env(tmp_path, idle_s=1).items():
        monkeypatch.setenv(key, value)
    pid = run_isolated(os.getppid)
    try:
        psutil.Process(pid).wait(timeout=30)
    finally:
        _stop_all(tmp_path)
    assert [p.suffix for p in tmp_path.glob("server-*")] == [".lock"], list(tmp_path.iterdir())


CALLER = textwrap.dedent("""
    import sys, time
    from minibatch_core.running.isolation import run_isolated
    run_isolated(time.sleep, 120)
""")


@pytest.mark.slow
def test_the_worker_of_a_killed_caller_exits(server_dir, tmp_path):
    def children() -> list[psutil.Process]:  # of every server there (the caller's sys.path picks its own)
        procs = [_proc(int(s["pid"])) for s in warm.servers()]
        return [c for p in procs if p for c in p.children()]

    before = {c.pid for c in children()}
    caller = subprocess.Popen([sys.executable, "-c", CALLER], env={**os.environ, **_server_env(server_dir)})
    deadline = time.monotonic() + 60
    while not (workers := [c for c in children() if c.pid not in before]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers, "the caller's worker never started"
    caller.kill()
    caller.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


@pytest.mark.slow
def test_ctrl_c_reaches_a_served_sweep(server_dir, tmp_path):
    env = _server_env(server_dir)
    run_isolated(os.getpid)  # warm: the sweep below is handed to the server whole
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "minibatch_core.cli", "run", "--out", str(out), "--quiet",
                             "--engines", "reference", "--batch-sizes", "1", "--epochs", "15", "--seeds", "0,1,2"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "runs.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted after" in err and "--resume" in err
    assert json.loads((out / "env.json").read_text())["status"] == "interrupted"


def test_the_server_key_follows_the_settings_that_change_a_run(monkeypatch):
    """Variables that change how torch computes pick another server; what importing scikit-learn sets
    itself (whether or not this process imported it yet) does not, nor do the server's own switches."""
    for name in ("KMP_INIT_AT_FORK", "KMP_DUPLICATE_LIB_OK", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    plain = warm.socket_path()
    monkeypatch.setenv("KMP_INIT_AT_FORK", "FALSE")
    monkeypatch.setenv("KMP_DUPLICATE_LIB_OK", "True")
    monkeypatch.setenv(warm.ENV_IDLE, "5")
    assert warm.socket_path() == plain
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert warm.socket_path() != plain


@pytest.mark.slow  # a server start
def test_a_server_that_exits_as_a_caller_connects_is_replaced(tmp_path, monkeypatch):
    """An idle server may close its socket just after a caller connected: nothing ran, so the caller starts
    a new server and asks it (once), instead of reporting a dead worker."""
    import socket
    import threading

    for key, value in _server_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    path = warm.socket_path()
    exiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    exiting.bind(str(path))
    exiting.listen(1)

    def accept_then_exit() -> None:
        conn, _ = exiting.accept()
        path.unlink()
        conn.close()
        exiting.close()

    thread = threading.Thread(target=accept_then_exit)
    thread.start()
    try:
        assert run_isolated(os.getppid) == _the_server(tmp_path)["pid"]
    finally:
        thread.join(timeout=10)
        _stop_all(tmp_path)
