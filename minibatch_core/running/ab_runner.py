"""Trials of ``minibatch-bench ab``: two versions of the project, each prepared once (a ``git worktree``
of a revision in a temporary folder, or a checkout given as a path) and imported straight from its
folder (``PYTHONPATH``, nothing reinstalled), measured in interleaved trials.

A trial pair is one fresh worker process per version, both alive together, each started as this interpreter
with its version's folder first on ``PYTHONPATH``, one torch thread. They import torch and their code side
by side (seconds: not timed), then take turns: for each of ``blocks`` rounds and each configuration, A and B
train it once each, back to back in a random order, in process, through the version's public ``train`` API
(``isolate=False``), while the other waits on its pipe. Each version's figure for a configuration is its
fastest timed epoch over the trial (warm-up epochs excluded; the engines synchronize CUDA around their
timed regions), with the median epoch, its loss curve and its peak memory beside it.

Why turns within a trial rather than a trial of A, then a trial of B: on this project's shared 2-core VM,
with nothing else running, a reference epoch switches between about 3.5 ms and 5.5-6.5 ms in stretches of
roughly 0.1 to 1 s (the host, not our processes; docs/gates.md), so a trial of A and the trial of B after it
often saw different machines. Turns a fraction of a second apart see the same one (duet benchmarking's idea,
Bulej et al. 2020, without sharing the core). Why the fastest epoch: another process sharing the core only
ever adds time to an epoch (timeit's rule). The epochs per configuration are set once, before the trials,
from an untimed pilot of A, so that each configuration's timed epochs add up to at least ``min_time_s`` and
every trial of A and B trains exactly the same number of epochs.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibatch_core.errors import MinibatchError

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Runs in the worker, against the version on PYTHONPATH: only its public API (RunConfig, train) is used,
# so an older revision is measured as it is. It imports, says "ready", then trains the configuration whose
# index it reads on stdin and answers with that run's timed epochs, until it reads -1. What the measured code
# prints goes to stderr: stdout carries only the answers.
WORKER = r'''
import dataclasses, gc, json, os, sys
answers = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr
plan = json.load(open(sys.argv[1]))
import torch
torch.set_num_threads(1)
import minibatch_core
from minibatch_core import RunConfig, train
known = {f.name for f in dataclasses.fields(RunConfig)}
configs = [RunConfig(**{k: v for k, v in job.items() if k in known}) for job in plan["configs"]]
print(json.dumps({"module": minibatch_core.__file__}), file=answers)
for line in sys.stdin:
    index = int(line)
    if index < 0:
        break
    gc.freeze()  # what is imported so far: the train() calls' collections need not walk it (~0.2 s each)
    try:
        result = train(configs[index], isolate=False)
    except TypeError:  # a version whose train() has no isolate option
        result = train(configs[index])
    times = [r.time_s for r in result.records[1:]] or [r.time_s for r in result.records]
    print(json.dumps({"times": times, "losses": list(result.epoch_losses), "peak": result.peak_memory_bytes}),
          file=answers)
'''


@dataclass(frozen=True)
class Version:
    label: str  # "A" | "B"
    spec: str  # what the user gave: a revision, a path, or "working tree"
    folder: Path  # the checkout whose minibatch_core is imported


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def project_repo() -> Path | None:
    """The git working tree of the project: the current folder's when it holds the project, else the one
    this code was loaded from; None outside git."""
    for start in (Path.cwd(), _PACKAGE_ROOT):
        done = _git(start, "rev-parse", "--show-toplevel")
        if done.returncode == 0:
            top = Path(done.stdout.strip())
            if (top / "minibatch_core" / "__init__.py").is_file():
                return top
    return None


def _is_checkout(path: Path) -> bool:
    return (path / "minibatch_core" / "__init__.py").is_file()


@contextmanager
def prepared(label: str, spec: str | None, work: Path) -> Iterator[Version]:
    """The version ``spec`` names, ready to import; a git worktree made for it is removed afterwards."""
    if spec is None:
        repo = project_repo()
        yield Version(label, "working tree", repo or _PACKAGE_ROOT)
        return
    path = Path(spec)
    if path.is_dir():
        if not _is_checkout(path):
            raise MinibatchError(f"{spec!r}: a folder without minibatch_core/ (give a checkout of the project "
                                 "or a git revision)")
        yield Version(label, spec, path.resolve())
        return
    repo = project_repo()
    if repo is None:
        raise MinibatchError(f"{spec!r} is not a folder, and there is no git repository here to find a revision "
                             "in: run ab inside a clone, or give two checkouts as paths")
    sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if sha.returncode != 0:
        raise MinibatchError(f"{spec!r}: unknown revision (not a commit of {repo}, nor a folder)")
    folder = work / f"version-{label}"
    added = _git(repo, "worktree", "add", "--detach", "--quiet", str(folder), sha.stdout.strip())
    if added.returncode != 0:
        raise MinibatchError(f"git worktree add for {spec!r} failed: {added.stderr.strip()[-300:]}")
    try:
        if not _is_checkout(folder):
            raise MinibatchError(f"{spec!r}: this revision has no minibatch_core/ package")
        yield Version(label, f"{spec} ({sha.stdout.strip()[:10]})", folder)
    finally:
        _git(repo, "worktree", "remove", "--force", str(folder))
        _git(repo, "worktree", "prune")


def _env(version: Version) -> dict[str, str]:
    inherited = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(version.folder), inherited]).strip(os.pathsep),
            # an older revision may still have the warm worker server: its commands must run in the trial
            "MINIBATCH_BENCH_SERVER": "off", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def check_imports(version: Version, work: Path) -> None:
    """The version imports from its own folder, with the public API the trials use; else one line."""
    code = "import minibatch_core; from minibatch_core import RunConfig, train; print(minibatch_core.__file__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(version),
                          cwd=work)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MinibatchError(f"version {version.label} ({version.spec}) fails to import: {last}")
    loaded = Path(done.stdout.strip()).resolve()
    if version.folder.resolve() not in loaded.parents:
        raise MinibatchError(f"version {version.label} ({version.spec}) imports minibatch_core from {loaded}, not "
                             f"from {version.folder} (a shadowing install?)")


class _Worker:
    """A fresh worker process of one version, answering one configuration at a time (WORKER)."""

    def __init__(self, version: Version, plan: Path, folder: Path):
        self.version = version
        self.log = open(folder / f"stderr-{version.label}.txt", "w+", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, str(plan)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, env=_env(version),
                                        cwd=folder)

    def answer(self) -> dict[str, Any]:
        """Its next line: "ready" after its imports, then one per configuration trained."""
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.seek(0)
            last = (self.log.read().strip().splitlines() or ["no output"])[-1]
            raise MinibatchError(f"a trial of version {self.version.label} ({self.version.spec}) failed: {last}")
        return json.loads(line)

    def train(self, index: int) -> dict[str, Any]:
        try:
            self.process.stdin.write(f"{index}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died: answer() says why
        return self.answer()

    def close(self, graceful: bool) -> None:
        """``graceful``: ask it to end and wait a while; else (or if it does not end) kill it."""
        if graceful and self.process.poll() is None:
            try:
                self.process.stdin.write("-1\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@contextmanager
def workers(versions: Sequence[Version], configs: Sequence[dict[str, Any]], work: Path) -> Iterator[dict]:
    """One fresh worker per version, started together (their imports overlap, untimed), each ready to
    train any configuration; all are gone when the block ends, however it ends."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        plan = Path(tmp) / "plan.json"
        plan.write_text(json.dumps({"configs": list(configs)}), encoding="utf-8")
        started: dict[str, _Worker] = {}
        graceful = False
        try:
            for version in versions:
                started[version.label] = _Worker(version, plan, Path(tmp))
            for worker in started.values():
                worker.answer()
            yield started
            graceful = True
        finally:
            for worker in started.values():
                worker.close(graceful)


def _summary(found: dict[str, Any]) -> dict[str, Any]:
    times = found["times"]
    return {"time_s": min(times), "median_time_s": statistics.median(times), "timed_epochs": len(times),
            "turn_times_s": found["turns"], "epoch_times_s": times, "losses": found["losses"],
            "peak_memory_bytes": found["peak"]}


def run_pair(versions: Sequence[Version], configs: Sequence[dict[str, Any]], work: Path, blocks: int = 1,
             rng: random.Random | None = None) -> dict[str, dict[str, Any]]:
    """One trial of each version, interleaved: a fresh worker per version, alive together; for each of
    ``blocks`` rounds and each configuration, every version trains it once, back to back in a random order.
    So whatever the machine does during the trial hits both versions within a fraction of a second.
    Per version and configuration: its fastest timed epoch, the median one, its loss curve and peak memory."""
    rng = rng or random.Random(0)
    found = {v.label: [{"times": [], "turns": [], "losses": None, "peak": None} for _ in configs] for v in versions}
    with workers(versions, configs, work) as running:
        for _ in range(blocks):
            for index in range(len(configs)):
                for label in rng.sample(list(running), len(running)):
                    answer, mine = running[label].train(index), found[label][index]
                    mine["times"] += answer["times"]
                    mine["turns"].append(min(answer["times"]))
                    if mine["losses"] is None:
                        mine["losses"], mine["peak"] = answer["losses"], answer["peak"]
    return {label: {"results": [_summary(f) for f in per_config]} for label, per_config in found.items()}


def run_trial(version: Version, configs: Sequence[dict[str, Any]], work: Path, blocks: int = 1) -> dict[str, Any]:
    """One fresh worker of ``version`` training every configuration ``blocks`` times, round robin."""
    return run_pair([version], configs, work, blocks)[version.label]


MAX_EPOCHS = 5_000  # a bound on what the pilot may ask for (a configuration of a few microseconds)


def calibrated(configs: Sequence[dict[str, Any]], pilot: dict[str, Any], min_time_s: float,
               blocks: int = 1) -> list[dict[str, Any]]:
    """The configurations with ``epochs`` raised so that, at the pilot's median epoch, the timed epochs (all
    but the first) of ``blocks`` runs add up to at least ``min_time_s``; never lowered below what was asked."""
    min_time_s /= max(1, blocks)
    if min_time_s <= 0:
        return [dict(c) for c in configs]
    out = []
    for config, res in zip(configs, pilot["results"], strict=True):
        per_epoch = float(res.get("median_time_s", res["time_s"]))
        wanted = math.ceil(min_time_s / per_epoch) + 1 if per_epoch > 0 else MAX_EPOCHS
        out.append({**config, "epochs": max(int(config["epochs"]), min(wanted, MAX_EPOCHS))})
    return out


def run_trials(versions: dict[str, Version], configs: Sequence[dict[str, Any]], pairs: int, seed: int,
               work: Path, progress: Callable[[str], None] | None = None, blocks: int = 1,
               ) -> list[tuple[int, str, dict]]:
    """``pairs`` interleaved trials of A and B (run_pair), the turns' order drawn from ``seed``."""
    rng, out = random.Random(seed), []
    for pair in range(pairs):
        found = run_pair([versions["A"], versions["B"]], configs, work, blocks, rng)
        out += [(pair, label, found[label]) for label in ("A", "B")]
        if progress:
            progress(f"trial pair {pair + 1}/{pairs}")
    return out
