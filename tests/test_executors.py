"""Executors without Ray: options, TOML, the local executor, the driver's records, hardware kept apart.

The Ray executor's own tests (a local instance, a cluster joined, a simulated two-node cluster) are in
test_ray.py, skipped where Ray is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from minibatch_core.cli import main
from minibatch_core.errors import MinibatchError
from minibatch_core.records.hardware import split_by_hardware
from minibatch_core.running.distributed import WorkerFailed
from minibatch_core.running.envinfo import executor_notes
from minibatch_core.sweep import sweep as sweep_module
from minibatch_core.sweep.executors import ExecutorOptions, LocalExecutor, Outcome, Task, open_executor

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = [{"workload": "test", "device": "cpu", "step_s": 1e-3, "repeats_step_s": [1e-3], "torch_threads": 1}]


def test_options_are_checked():
    assert ExecutorOptions() == ExecutorOptions("local", None, 1)
    assert ExecutorOptions("ray", "auto", 2).runs_per_node == 2
    for bad in [dict(kind="dask"), dict(kind="ray", runs_per_node=0), dict(kind="ray", runs_per_node=True),
                dict(kind="local", address="auto"), dict(kind="local", runs_per_node=2), dict(kind="ray", address=" ")]:
        with pytest.raises(MinibatchError):
            ExecutorOptions(**bad)
    assert ExecutorOptions.from_mapping({"kind": "ray", "runs-per-node": 3}).runs_per_node == 3
    with pytest.raises(MinibatchError, match="unknown executor setting"):
        ExecutorOptions.from_mapping({"kind": "ray", "nodes": 3})


def test_toml_executor_table_is_read_apart_from_the_sweep(tmp_path):
    from minibatch_core.commands.executor_options import executor_from_toml

    config = tmp_path / "s.toml"
    config.write_text('engines = ["reference"]\nseeds = [0, 1]\n\n[executor]\nkind = "ray"\naddress = "auto"\n'
                      'runs-per-node = 2\n')
    sweep = sweep_module.sweep_from_toml(config)
    assert sweep.engines == ("reference",) and sweep.seeds == (0, 1)
    assert ExecutorOptions.from_mapping(executor_from_toml(str(config))) == ExecutorOptions("ray", "auto", 2)
    (tmp_path / "bad.toml").write_text('[executor]\nkind = "spark"\n')
    with pytest.raises(MinibatchError, match=r"bad.toml.*\[executor\].*spark"):
        executor_from_toml(str(tmp_path / "bad.toml"))
    assert executor_from_toml(str(tmp_path / "s.toml")) is not None
    (tmp_path / "none.toml").write_text('engines = ["reference"]\n')
    assert executor_from_toml(str(tmp_path / "none.toml")) is None


def test_ray_flags_without_the_ray_executor_are_refused(tmp_path, capsys):
    rc = main(["run", "--engines", "reference", "--batch-sizes", "32", "--seeds", "0", "--epochs", "1",
               "--runs-per-node", "2", "--out", str(tmp_path / "o"), "--no-isolate", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--executor ray" in err[0]
    assert not (tmp_path / "o").exists()


def test_missing_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is absent
    with pytest.raises(MinibatchError, match=r"pip install .*minibatch-bench\[ray\]"):
        open_executor(ExecutorOptions("ray"))
    rc = main(["run", "--engines", "reference", "--batch-sizes", "32", "--seeds", "0", "--epochs", "1",
               "--executor", "ray", "--out", str(tmp_path / "o"), "--no-isolate", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install" in err[0] and "[ray]" in err[0]
    assert not (tmp_path / "o").exists()


def test_the_default_path_never_imports_ray():
    code = ("import sys\n"
            "import minibatch_core.cli, minibatch_core.commands.run, minibatch_core.commands.study\n"
            "from minibatch_core.sweep import executors, sweep, study\n"
            "ex = executors.open_executor(None)\n"
            "out = list(ex.run([executors.Task(len, ('abc',))]))\n"
            "assert out[0].value == 3 and out[0].host, out\n"
            "print('ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_local_executor_runs_in_order_and_records_declared_failures():
    def boom(x):
        raise WorkerFailed(f"worker {x} died")

    tasks = [Task(abs, (-1,)), Task(boom, (2,)), Task(abs, (-3,))]
    out = list(LocalExecutor().run(tasks, failures=(WorkerFailed,)))
    assert [o.index for o in out] == [0, 1, 2]
    assert [o.value for o in out] == [1, None, 3]
    assert out[1].error == "worker 2 died"
    with pytest.raises(ZeroDivisionError):  # anything else propagates, as in-process code raises it
        list(LocalExecutor().run([Task(divmod, (1, 0))]))


class _Shuffled:
    """An executor that completes tasks out of plan order (as a cluster does), computing them here."""

    name = "ray"

    def __init__(self, order: list[int], interrupt_after: int | None = None):
        self.order, self.interrupt_after = order, interrupt_after

    def run(self, tasks, failures=()):
        for n, i in enumerate(self.order):
            if n == self.interrupt_after:
                raise KeyboardInterrupt
            yield Outcome(i, tasks[i].fn(*tasks[i].args), host=f"host{i % 2}", node=f"node{i % 2}",
                          hardware={"cpu_model": f"model{i % 2}"})

    def close(self):
        pass


def _small_plan():
    return sweep_module.plan(sweep_module.SweepConfig(engines="reference", batch_sizes="32,64", seeds="0,1",
                                                      epochs=1, datasets="wine", profile=False))


def test_driver_writes_completion_order_then_plan_order(tmp_path):
    the_plan = _small_plan()
    local = tmp_path / "local"
    sweep_module.execute(the_plan, local, {}, isolate=False, calibration=CALIBRATION)
    shuffled = tmp_path / "shuffled"
    sweep_module.execute(the_plan, shuffled, {}, isolate=False, calibration=CALIBRATION,
                         executor=_Shuffled([3, 1, 0, 2]))
    a, b = pd.read_csv(local / "runs.csv"), pd.read_csv(shuffled / "runs.csv")
    assert list(a["run_id"]) == list(b["run_id"])  # the plan's order restored
    assert a["epoch_loss"].tolist() == b["epoch_loss"].tolist()
    assert set(a["executor"]) == {"local"} and set(b["executor"]) == {"ray"}
    assert a["host"].notna().all() and set(b["host"]) == {"host0", "host1"}
    env = json.loads((shuffled / "env.json").read_text())
    assert env["status"] == "complete" and set(env["hosts"]) == {"host0", "host1"}
    assert len(env["run_nodes"]) == 4 and set(env["run_nodes"].values()) == {"node0", "node1"}


def test_interrupted_driver_keeps_completed_runs(tmp_path):
    the_plan = _small_plan()
    with pytest.raises(KeyboardInterrupt):
        sweep_module.execute(the_plan, tmp_path, {}, isolate=False, calibration=CALIBRATION,
                             executor=_Shuffled([2, 0, 1, 3], interrupt_after=2))
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs["run_id"].nunique() == 2  # the two that completed, in completion order
    done = runs.drop_duplicates("run_id")
    expected = [(str(the_plan.jobs[i].config.batch_size), the_plan.jobs[i].seeds[0]) for i in (2, 0)]
    assert list(zip(done["batch_spec"].astype(str), done["seed"], strict=True)) == expected
    assert json.loads((tmp_path / "env.json").read_text())["status"] == "interrupted"


def test_one_configuration_on_two_kinds_of_hardware_is_two():
    frame = pd.DataFrame({"config_id": ["c", "c", "d", "d"], "device": ["cpu"] * 4,
                          "device_name": ["EPYC", "Xeon", "EPYC", "EPYC"]})
    split = split_by_hardware(frame)
    assert split["device"].tolist() == ["cpu [EPYC]", "cpu [Xeon]", "cpu", "cpu"]
    same = frame.assign(device_name="EPYC")
    assert split_by_hardware(same) is same


def test_reports_say_where_runs_executed_and_that_they_shared_a_node():
    assert executor_notes({}) == [] and executor_notes({"executor": {"kind": "local"}}) == []
    hosts = {"a": {"cpu_model": "EPYC", "cpu_cores": 2, "gpus": []}}
    lines = executor_notes({"executor": {"kind": "ray", "runs_per_node": 1}, "hosts": hosts})
    assert len(lines) == 1 and "a: EPYC, 2 cores" in lines[0]
    shared = executor_notes({"executor": {"kind": "ray", "runs_per_node": 2}, "hosts": hosts})
    assert len(shared) == 2 and "--runs-per-node 2" in shared[1] and "contended" in shared[1]
