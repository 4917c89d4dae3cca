"""``train(RunConfig) -> RunResult``: picks the engine and wraps it in measurement."""

from __future__ import annotations

import gc
import inspect
import math
import sys
import time
from collections.abc import Sequence

import torch

from minibatch_core.engines import Engine, check_model_facts, check_model_support, get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset, Table, data_options, load_dataset, to_dataset
from minibatch_core.input.devices import resolve_device, torch_threads
from minibatch_core.input.models import check_model_and_data
from minibatch_core.input.specs import source_hash
from minibatch_core.running.distributed import DistributedOptions, run_distributed
from minibatch_core.running.isolation import run_isolated
from minibatch_core.running.measure import MemoryProbe, Stopwatch, device_name
from minibatch_core.running.results import EpochRecord, RunResult

PROFILE_MAX_STEPS = 200


def profile_steps(steps_per_epoch: int) -> int:
    """Two epochs' worth of steps, at least 10 and at most 200: enough for a stable mean, cheap at
    batch size full on large data."""
    return max(10, min(PROFILE_MAX_STEPS, 2 * steps_per_epoch))


def load_for(config: RunConfig, table: Table | None = None) -> Dataset:
    """The run's data; ``table``: already loaded for it (``data.table_for``), in a process without torch."""
    return to_dataset(table) if table is not None else load_dataset(**data_options(config))


def train(config: RunConfig, *, isolate: bool = True, profile: bool = False,
          distributed: DistributedOptions | None = None, fresh_process: bool = False,
          table: Table | None = None) -> RunResult:
    """Train one run. ``isolate`` (default) runs it in a fresh worker process so that its peak
    memory is its own; in-process runs give the same losses (and are what tests of determinism use).
    Distributed engines always run in fresh processes (``distributed``: backend, oversubscription), and
    their ranks load the data themselves; the others train on ``table`` when given (``data.table_for``)."""
    return train_seeds(config, [config.seed], isolate=isolate, profile=profile, distributed=distributed,
                       fresh_process=fresh_process, table=table)[0]


def train_seeds(config: RunConfig, seeds: Sequence[int], *, isolate: bool = True,
                profile: bool = False, distributed: DistributedOptions | None = None,
                fresh_process: bool = False, table: Table | None = None) -> list[RunResult]:
    """One result per seed. Multi-seed engines train all seeds in one timed pass; the others run
    one fresh process per seed (W processes for a distributed engine). ``fresh_process``: with
    ``isolate=False``, the caller is itself a fresh worker (what the memory method then says)."""
    engine = get_engine(config.engine)
    resolve_device(config.device)  # fail fast, in this process, with the one-line error
    if config.workers > 1 and not engine.distributed:
        raise MinibatchError(f"--workers {config.workers} needs a distributed engine (ddp): the "
                             f"{engine.name} engine trains in one process")
    groups = [list(seeds)] if engine.multi_seed else [[s] for s in seeds]
    out: list[RunResult] = []
    for group in groups:
        cfg = config.with_(seed=group[0])
        if engine.distributed:
            out += run_distributed(_measure, cfg, group, profile, options=distributed)
        else:
            out += (run_isolated(_measure, cfg, group, profile, True, table) if isolate
                    else _measure(cfg, group, profile, isolated=fresh_process, table=table))
    return out


def start_session(engine: Engine, config: RunConfig, data: Dataset, device: torch.device, seeds: list[int], *,
                  eager: bool = False):
    """``engine.start``; ``eager``: without CUDA graphs where the engine offers them (a study steps in
    segments of varying length, which graphs captured for whole epochs cannot do)."""
    options = {"use_graphs": False} if eager and "use_graphs" in inspect.signature(engine.start).parameters else {}
    return engine.start(config, data, device, seeds, **options)


def prewarm_engine(engine: Engine, config: RunConfig, data: Dataset, device: torch.device, seeds: list[int], *,
                   eager: bool = False) -> None:
    """Run the engine once on a few rows first (``eager``: as ``start_session``). A fresh worker faults in
    torch's code pages and allocator arenas lazily; without this, tens of MB of that would be billed to the
    measured run, and its first steps' time to the clock."""
    rows = slice(None, None, max(1, data.n_samples // max(8, config.workers)))  # a row for every worker
    tiny = Dataset(data.name, data.X[rows], data.y[rows], data.n_classes)
    if resolve_batch_size(config.batch_size, tiny.n_samples) > 1 and \
            tiny.n_samples % resolve_batch_size(config.batch_size, tiny.n_samples) == 1:
        tiny = Dataset(data.name, tiny.X[:-1], tiny.y[:-1], data.n_classes)  # BatchNorm: no batch of one
    session = start_session(engine, config.with_(epochs=1, record_batches=False), tiny, device, seeds, eager=eager)
    session.run_epoch()
    session.evaluate()
    session.memory()
    del session
    gc.collect()


def _measure(config: RunConfig, seeds: list[int], profile: bool, isolated: bool = True,
             table: Table | None = None) -> list[RunResult]:
    with torch_threads(config.threads):
        return _measure_run(config, seeds, profile, isolated, table)


# set by `train` (in its worker): a run longer than this many seconds prints a line on stderr at most this
# often, so that a long run is visibly alive; None (sweeps, tests): silent
LIVE_EVERY_S: float | None = None


def _measure_run(config: RunConfig, seeds: list[int], profile: bool, isolated: bool,
                 table: Table | None) -> list[RunResult]:
    run = open_run(config, seeds, isolated=isolated, table=table)
    started = last = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        run.train_epoch()
        run.finish_epoch()
        if run.all_diverged:  # nothing left to train: a diverged model stays non-finite
            break
        if LIVE_EVERY_S is not None and time.perf_counter() - last >= LIVE_EVERY_S:
            last = time.perf_counter()
            print(f"minibatch-bench train: epoch {epoch:,}/{config.epochs:,} done, {last - started:.0f} s elapsed",
                  file=sys.stderr, flush=True)
    return run.results(profile=profile)


def open_run(config: RunConfig, seeds: Sequence[int], *, prewarm: bool = True, isolated: bool = True,
             table: Table | None = None) -> Run:
    """A measured run, driven one epoch at a time (the trainer's loop, and the bench harness, whose
    pytest-benchmark rounds time ``train_epoch``). ``isolated``: whether this process is a fresh worker
    (it only changes what ``memory_method`` says)."""
    engine = get_engine(config.engine)
    device = resolve_device(config.device)
    data = load_for(config, table)
    check_model(config, data)
    if prewarm:
        prewarm_engine(engine, config, data, device, list(seeds))
    return Run(config, list(seeds), engine, data, device, isolated=isolated)


def check_model(config: RunConfig, data: Dataset) -> None:
    """The model on its data and engine, checked on one example before anything trains (one line if bad).
    The lesson's own case (mlp, a table, classes) needs no check."""
    if config.model == "mlp" and data.X.dim() == 2 and config.loss == "cross_entropy" and not data.is_regression:
        return
    facts = check_model_engines(config.model, config.hidden, config.loss, data, [config.engine])
    size = resolve_batch_size(config.batch_size, data.n_samples)
    if facts.batch_norm and (size == 1 or data.n_samples % size == 1):
        raise MinibatchError(f"model {config.model!r} has BatchNorm, which cannot train on a batch of one row, and "
                             f"batch size {config.batch_spec} on {data.n_samples} rows makes one: choose another "
                             "batch size")


def check_model_engines(model: str, hidden: Sequence[int], loss: str, data: Dataset, engines: Sequence[str]):
    """The model on one example of its data (its output shape, targets that fit the loss), then each engine's
    support for it (a user's model, dropout, buffers): one line if bad. Returns the model's facts. ``train``,
    ``run`` and ``study`` check with this one function."""
    facts = check_model_and_data(model, hidden, loss, data)
    for engine in engines:
        check_engine_support(engine, model, loss, facts)
    return facts


def check_engine_support(engine: str, model: str, loss: str, facts) -> None:
    """Whether ``engine`` trains ``model`` with ``loss``, given the model's checked ``facts``: one line if not."""
    check_model_support(engine, model, loss)
    check_model_facts(engine, model, facts.random, facts.buffers)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


class Run:
    """One engine session under the trainer's clock and memory probe. ``train_epoch`` is the timed region;
    ``finish_epoch`` evaluates outside it and records the epoch; ``results`` builds one RunResult per seed.

    Divergence is a result, not an error: when a seed's epoch loss or its evaluation after the epoch (which
    reads the weights) is non-finite, that epoch is recorded with NaN losses, ``diverged[k]`` holds its
    number, and the seed gets no further records. Other seeds of a multi-seed engine train on; the loop
    stops once every seed diverged (``all_diverged``)."""

    def __init__(self, config: RunConfig, seeds: list[int], engine: Engine, data: Dataset,
                 device: torch.device, *, isolated: bool = True) -> None:
        self.config, self.seeds, self.engine, self.data, self.device = config, seeds, engine, data, device
        self.batch_size = resolve_batch_size(config.batch_size, data.n_samples)
        self.diverged: list[int | None] = [None for _ in seeds]
        self._epochs = 0
        self.probe = MemoryProbe(device, isolated=isolated)
        self.probe.start()
        self.session = engine.start(config, data, device, seeds)
        # the session's tensors stay counted (they are allocated above the baseline), but not its set-up's
        # transients: CUDA graph capture runs warm-up steps on copies of the state
        self.probe.rearm()
        self.clock = Stopwatch(device)
        self.per_seed: list[list[EpochRecord]] = [[] for _ in seeds]
        self._pending = None

    @property
    def epochs_done(self) -> int:
        return self._epochs

    @property
    def all_diverged(self) -> bool:
        return all(d is not None for d in self.diverged)

    def train_epoch(self) -> None:
        with self.clock.region():
            self._pending = self.session.run_epoch()
        self.probe.sample()

    def finish_epoch(self) -> None:
        out, self._pending = self._pending, None
        if out is None:
            return
        evals = self.session.evaluate()
        self.probe.rearm()
        seconds = self.clock.elapsed_s
        self._epochs += 1
        epoch = self._epochs
        for k in range(len(self.seeds)):
            if self.diverged[k] is not None:
                continue
            loss, eval_loss, accuracy = float(out.losses[k]), float(evals[k][0]), float(evals[k][1])
            if not _finite(loss, eval_loss):
                self.diverged[k] = epoch
                loss = eval_loss = accuracy = math.nan  # the accuracy of non-finite weights means nothing
            self.per_seed[k].append(EpochRecord(
                epoch=epoch, loss=loss, eval_loss=eval_loss,
                eval_accuracy=accuracy, time_s=seconds, steps=out.steps,
                samples_per_s=self.data.n_samples / seconds if seconds > 0 else 0.0,
                batch_losses=None if out.batch_losses is None else list(out.batch_losses[k]),
            ))

    def results(self, *, profile: bool = False) -> list[RunResult]:
        self.finish_epoch()
        memory = self.session.memory()
        # sessions training in several processes report what rank 0's probe cannot see (optional method)
        report = self.session.worker_report(self.probe.peak) if hasattr(self.session, "worker_report") else None
        # a profile times steps on the weights as they are: non-finite ones would time NaN arithmetic
        # one model's parameter count: the session's own, else from the float32 bytes of all replicas
        n_params = int(getattr(self.session, "n_parameters", 0) or memory.parameters // 4 // len(self.seeds))
        split = (self.session.profile(profile_steps(self.per_seed[0][-1].steps))
                 if profile and not self.all_diverged else None)
        self.probe.finish()  # CUDA: the cuBLAS workspaces, counted apart from the peak
        majority = None  # regression targets have no largest class
        if not self.data.is_regression:
            counts = torch.bincount(self.data.y, minlength=self.data.n_classes)
            majority = float(counts.max()) / max(1, self.data.n_samples)
        return [
            RunResult(
                config=self.config.with_(seed=seed),
                engine=self.engine.name,
                dataset=self.data.name,
                n_samples=self.data.n_samples,
                n_features=self.data.n_features,
                n_classes=self.data.n_classes,
                device=str(self.device),
                device_name=device_name(self.device),
                batch_spec=self.config.batch_spec,
                batch_size=self.batch_size,
                seed=seed,
                records=self.per_seed[k],
                peak_memory_bytes=self.probe.peak,
                memory_method=self.probe.method,
                memory=memory,
                replicas=len(self.seeds),
                torch_threads=torch.get_num_threads(),
                profile=split,
                diverged_epoch=self.diverged[k],
                workers=report.workers if report else 1,
                worker_batch_size=report.worker_batch_size if report else self.batch_size,
                worker_peak_memory_bytes=[self.probe.peak, *(report.other_peak_memory_bytes if report else [])],
                extra=dict(report.extra) if report else {},
                class_names=self.data.class_names,
                cuda_workspace_bytes=self.probe.workspace,
                majority_accuracy=majority,
                n_parameters=n_params,
                model_hash=source_hash(self.config.model),
            )
            for k, seed in enumerate(self.seeds)
        ]
