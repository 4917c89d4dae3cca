"""A study's passes train as every run does: in a fresh worker per pass on the local executor (none on an
executor whose workers serve one task each), at the study's torch threads, the engine prewarmed first."""

from __future__ import annotations

import torch

from minibatch_core.running import to_target
from minibatch_core.sweep.executors import LocalExecutor
from minibatch_core.sweep.study import StudyConfig, execute, plan, run_job


def _study(**changes) -> StudyConfig:
    settings = {"datasets": "wine", "scale": "standard", "batch_sizes": "16", "lrs": "0.01", "seeds": "0",
                "target_accuracy": 0.9, "max_epochs": 2, "engines": "fast", "noise_scale": False,
                "lr_search": False}
    return StudyConfig(**{**settings, **changes})


def _summary(result) -> list:
    return [(o.reached, o.steps_to_target, [(c.step, c.val_loss, c.val_accuracy) for c in o.checks])
            for o in result.replicas]


def test_a_pass_in_a_fresh_worker_gives_the_in_process_result(monkeypatch):
    calls = []
    real = to_target.run_isolated

    def counted(fn, *args):
        calls.append(fn.__name__)
        return real(fn, *args)

    monkeypatch.setattr(to_target, "run_isolated", counted)
    study = _study()
    the_plan = plan(study)
    job, split, target = the_plan.jobs[0], the_plan.splits["wine"], the_plan.targets["wine"]
    here = run_job(study, job, split, target, isolate=False)
    assert calls == []
    isolated = run_job(study, job, split, target)  # the default: a fresh worker, as train's
    assert calls == ["_train_pass"]
    assert _summary(isolated) == _summary(here) and isolated.steps_run == here.steps_run


class _FreshWorkers(LocalExecutor):
    name = "ray"  # stands in for an executor whose every task has a worker of its own


def test_execute_starts_a_worker_per_pass_on_the_local_executor_only(monkeypatch, tmp_path):
    calls = []

    def in_process(fn, *args):
        calls.append(fn.__name__)
        return fn(*args)

    monkeypatch.setattr(to_target, "run_isolated", in_process)
    the_plan = plan(_study(seeds="0,1,2"))
    assert len(the_plan.jobs) == 3
    execute(the_plan, tmp_path / "local", {})
    assert calls == ["_train_pass"] * 3
    execute(the_plan, tmp_path / "fresh", {}, executor=_FreshWorkers())
    assert calls == ["_train_pass"] * 3, "a task whose worker is already fresh trained where it landed"
    execute(the_plan, tmp_path / "here", {}, isolate=False)
    assert calls == ["_train_pass"] * 3


def test_a_pass_prewarms_then_trains_at_the_study_threads(monkeypatch):
    seen = []
    prewarm, train = to_target.prewarm_engine, to_target.train_to_target

    def prewarm_spy(*args, **kwargs):
        seen.append(("prewarm", kwargs.get("eager"), torch.get_num_threads()))
        return prewarm(*args, **kwargs)

    def train_spy(*args, **kwargs):
        seen.append(("train", None, torch.get_num_threads()))
        return train(*args, **kwargs)

    monkeypatch.setattr(to_target, "prewarm_engine", prewarm_spy)
    monkeypatch.setattr(to_target, "train_to_target", train_spy)
    study = _study(threads=1)
    the_plan = plan(study)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_job(study, the_plan.jobs[0], the_plan.splits["wine"], the_plan.targets["wine"], isolate=False)
        assert torch.get_num_threads() == 2, "the caller's thread count comes back"
    finally:
        torch.set_num_threads(before)
    assert seen == [("prewarm", True, 1), ("train", None, 1)]
