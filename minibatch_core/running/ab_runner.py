"""Trials of ``minibatch-bench ab``: two versions of the project, each prepared once (a ``git worktree``
of a revision in a temporary folder, or a checkout given as a path) and imported straight from its
folder (``PYTHONPATH``, nothing reinstalled), measured in alternating trials in a random order.

A trial is one fresh worker process of one version, started as this interpreter with that version's
folder first on ``PYTHONPATH``, one torch thread. It imports torch and the version's code (seconds: not
timed), then trains every configuration of the grid once, in process, through the version's public
``train`` API (``isolate=False``), ``blocks`` times round robin (a configuration's blocks are apart in
time), and reports each configuration's fastest timed epoch (warm-up epoch
excluded; the engines synchronize CUDA around their timed regions), the median epoch, its loss curve and
its peak memory. So the process start is paid outside every timed region, and A and B always run the
same sequence.

Why the fastest epoch: another process sharing the core only ever adds time to an epoch, so on a busy
machine an epoch's median moves with the scheduler (measured: 5.6-13.2 ms between fresh workers of the
same code with one core spinning) while its minimum stays within a few percent (timeit's rule). The
epochs per configuration are set once, before the trials, from an untimed pilot trial of A, so that each
configuration's timed epochs (over its blocks) add up to at least ``min_time_s`` and every trial of A and B
trains exactly the same number of epochs. Blocks apart in time make it unlikely that one scheduling
episode (the worker sharing its core for a while) covers every epoch of a configuration in a trial.
"""

from __future__ import annotations

import json
import math
import os
import random
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
# so an older revision is measured as it is.
WORKER = r'''
import dataclasses, gc, json, statistics, sys
plan = json.load(open(sys.argv[1]))
import torch
torch.set_num_threads(1)
import minibatch_core
from minibatch_core import RunConfig, train
known = {f.name for f in dataclasses.fields(RunConfig)}
configs = [RunConfig(**{k: v for k, v in job.items() if k in known}) for job in plan["configs"]]
found = [{"times": [], "losses": None, "peak": None} for _ in configs]
for _ in range(plan.get("blocks", 1)):  # round robin: a configuration's blocks are apart in time
    for config, mine in zip(configs, found):
        gc.freeze()  # what is imported so far: the train() calls' collections need not walk it (~0.2 s each)
        try:
            result = train(config, isolate=False)
        except TypeError:  # a version whose train() has no isolate option
            result = train(config)
        mine["times"] += [r.time_s for r in result.records[1:]] or [r.time_s for r in result.records]
        if mine["losses"] is None:
            mine["losses"], mine["peak"] = list(result.epoch_losses), result.peak_memory_bytes
out = {"module": minibatch_core.__file__,
       "results": [{"time_s": min(m["times"]), "median_time_s": statistics.median(m["times"]),
                    "timed_epochs": len(m["times"]), "losses": m["losses"], "peak_memory_bytes": m["peak"]}
                   for m in found]}
json.dump(out, open(sys.argv[2], "w"))
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


def run_trial(version: Version, configs: Sequence[dict[str, Any]], work: Path, blocks: int = 1) -> dict[str, Any]:
    """One fresh worker of ``version`` training every configuration ``blocks`` times, round robin."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        plan, result = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan.write_text(json.dumps({"configs": list(configs), "blocks": blocks}), encoding="utf-8")
        done = subprocess.run([sys.executable, "-c", WORKER, str(plan), str(result)], capture_output=True,
                              text=True, env=_env(version), cwd=tmp)
        if done.returncode != 0 or not result.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise MinibatchError(f"a trial of version {version.label} ({version.spec}) failed: {last}")
        return json.loads(result.read_text(encoding="utf-8"))


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


def schedule(pairs: int, seed: int) -> list[tuple[int, str]]:
    """(pair, version) in running order: each pair runs A and B back to back, in a random order."""
    rng = random.Random(seed)
    order = []
    for pair in range(pairs):
        both = ["A", "B"]
        rng.shuffle(both)
        order += [(pair, v) for v in both]
    return order


def run_trials(versions: dict[str, Version], configs: Sequence[dict[str, Any]], pairs: int, seed: int,
               work: Path, progress: Callable[[str], None] | None = None, blocks: int = 1,
               ) -> list[tuple[int, str, dict]]:
    out = []
    plan = schedule(pairs, seed)
    for i, (pair, label) in enumerate(plan, 1):
        out.append((pair, label, run_trial(versions[label], configs, work, blocks)))
        if progress:
            progress(f"trial {i}/{len(plan)} (pair {pair + 1}, version {label})")
    return out
