"""``ddp``: the lesson's model under ``torch.nn.parallel.DistributedDataParallel``, W processes.

Every rank builds the reference engine's model from ``torch.manual_seed(seed)`` and replays the
DataLoader's shuffle (:mod:`.shuffle`), so every rank knows the *global* batch the lesson's loader draws
at each step; rank r trains on the r-th of W contiguous shards of it. A rank's loss is the sum of its
shard's per-sample losses times W/B (B: this step's global batch): DDP averages gradients over the W
ranks, so the averaged gradient is (1/B) x the sum over the whole batch, the single-process mean, also
when shards are unequal (a last short batch, B not divisible by W, even an empty shard).

SPMD, as torchrun's model: every rank runs the same trainer loop on its own session (its own clock and
memory probe), so nothing is inside an epoch's clock but training and the all-reduces; rank 0's results
are the run's. Control flow stays in step because every decision the trainer takes (divergence) reads
all-reduced losses and the evaluation of weights that are identical on every rank. The process group is
made by the launcher (``running/distributed.py``), which :func:`attach`-es it here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from minibatch_core.engines.base import (
    Engine,
    EpochOutput,
    MemoryBreakdown,
    WorkerReport,
    evaluate_logits,
    make_model,
)
from minibatch_core.engines.ddp_group import Group, current_group
from minibatch_core.engines.membytes import module_memory
from minibatch_core.engines.reference import make_optimizer
from minibatch_core.engines.shuffle import LoaderShuffle
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import synchronize
from minibatch_core.input.models import n_parameters

PROFILE_PHASES = ("data", "forward", "backward", "allreduce", "optimizer")


def sum_loss(loss: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The batch's summed loss: cross-entropy over rows, or squared error over every target value."""
    if loss == "mse":
        return F.mse_loss(outputs.reshape(targets.shape), targets, reduction="sum")
    return F.cross_entropy(outputs, targets, reduction="sum")


def shard_bounds(size: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of a batch of ``size`` for ``rank``: W contiguous shards whose sizes differ by at
    most one, the larger first (as ``torch.tensor_split``)."""
    base, extra = divmod(size, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def rank_device(device: torch.device, group: Group) -> torch.device:
    """One process per GPU: rank r of a node uses cuda:LOCAL_RANK."""
    if device.type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", group.local_rank)


@dataclass
class AllreduceTimer:
    """State of the DDP comm hook: the gradient all-reduce as PyTorch's default hook does it (divide by
    W, sum), timed from launch to completion. CPU: host clock (gloo completes the future on its own
    thread). CUDA: events on the stream the future's callback is ordered after."""

    world: int
    cuda: bool
    seconds: float = 0.0
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)

    def take(self) -> float:
        """Seconds spent in all-reduce since the last take (synchronizes CUDA events)."""
        if self.events:
            self.events[-1][1].synchronize()
            self.seconds += sum(a.elapsed_time(b) for a, b in self.events) / 1e3
            self.events.clear()
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class BackwardWindow:
    """The backward pass's duration on the clock the all-reduce was timed with: CUDA events on the
    current stream on CUDA (the hook's events are on it too), the host clock's reading on CPU. Mixing
    the two would subtract device time from host time."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) if cuda else None

    def __enter__(self) -> BackwardWindow:
        if self.events:
            self.events[0].record()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.events:
            self.events[1].record()

    def seconds(self, host_s: float) -> float:
        """The window's seconds: from the events on CUDA (after they completed), else ``host_s``."""
        if not self.events:
            return host_s
        self.events[1].synchronize()
        return self.events[0].elapsed_time(self.events[1]) / 1e3


def timed_allreduce(state, bucket):  # no annotations: DDP checks them, and these would be strings
    if state.cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    buffer = bucket.buffer().div_(state.world)
    future = dist.all_reduce(buffer, async_op=True).get_future()

    def done(fut: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        if state.cuda:
            end.record()
            state.events.append((start, end))
        else:
            state.seconds += time.perf_counter() - t0
        return fut.value()[0]

    return future.then(done)


class DDPSession:
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int]) -> None:
        if len(seeds) != 1:
            raise ValueError("the ddp engine trains one seed per run")
        group = current_group()
        self.group, self.world, self.rank = group, group.world, group.rank
        self.batch_size = resolve_batch_size(config.batch_size, data.n_samples)
        if self.batch_size < self.world:
            raise MinibatchError(f"global batch {self.batch_size} is smaller than the {self.world} "
                                 "workers: every worker needs at least one row (lower --workers)")
        # each rank loaded its data itself: wait for the slowest here, on the control group's long timeout,
        # so that the training group's first collective (DDP's broadcast of the weights) does not time out
        dist.barrier(group=group.control)
        self.seeds = list(seeds)
        self.config = config
        self.device = device = rank_device(device, group)
        self.n = data.n_samples
        # the reference engine's order of RNG use: seed, build the model, then the loader's shuffle
        torch.manual_seed(self.seeds[0])
        self.model = make_model(config, data).to(device)  # any module; mlp on a table is the lesson's
        self.n_parameters = n_parameters(self.model)
        # mse: the batch loss is a mean over every target value, k per row
        self.values_per_row = data.n_outputs if config.loss == "mse" else 1
        self.shuffle = LoaderShuffle(self.n)
        self.ddp = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.timer = AllreduceTimer(self.world, device.type == "cuda")
        self.ddp.register_comm_hook(self.timer, timed_allreduce)
        self.optimizer = make_optimizer(config.optimizer, self.ddp.parameters(), config.lr)
        self.X, self.y = data.X.to(device), data.y.to(device)
        self.Xp, self.yp = torch.empty_like(self.X), torch.empty_like(self.y)
        bs = self.batch_size
        # (global batch size, this rank's rows of the permuted epoch) per step
        self.plan = [(min(bs, self.n - s), *(s + b for b in shard_bounds(min(bs, self.n - s), self.world,
                                                                          self.rank)))
                     for s in range(0, self.n, bs)]
        self.worker_batch_size = shard_bounds(bs, self.world, 0)[1]
        self.allreduce_s: list[float] = []  # per timed epoch, this rank

    def _permute(self) -> None:
        perm = self.shuffle.next_permutation().to(self.device)
        torch.index_select(self.X, 0, perm, out=self.Xp)
        torch.index_select(self.y, 0, perm, out=self.yp)

    def _step(self, size: int, lo: int, hi: int) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss_sum = sum_loss(self.config.loss, self.ddp(self.Xp[lo:hi]), self.yp[lo:hi])
        (loss_sum * (self.world / (size * self.values_per_row))).backward()
        self.optimizer.step()
        return loss_sum.detach()

    def run_epoch(self) -> EpochOutput:
        self.model.train()
        self._permute()
        self.timer.take()
        sums = torch.stack([self._step(size, lo, hi) for size, lo, hi in self.plan]).double()
        # one collective per epoch for the losses; it also makes rank 0's epoch end after every rank's
        dist.all_reduce(sums)
        self.allreduce_s.append(self.timer.take())
        sums = sums.tolist()
        epoch_loss = sum(sums) / (self.n * self.values_per_row)
        batches = [[s / (size * self.values_per_row) for s, (size, _, _) in zip(sums, self.plan, strict=True)]] \
            if self.config.record_batches else None
        return EpochOutput([epoch_loss], len(self.plan), batches)

    def evaluate(self) -> list[tuple[float, float]]:
        """Every rank, on identical weights: the trainer's divergence check then decides alike on all."""
        self.model.eval()
        return [evaluate_logits(self.model, self.X, self.y, self.config.loss)]

    def memory(self) -> MemoryBreakdown:
        return module_memory(self.model, self.optimizer, self.X[: self.worker_batch_size])

    def profile(self, steps: int) -> dict[str, float]:
        """Extra steps with a synchronized clock read between phases; backward is split into its own
        compute and the gradient all-reduce (timed by the comm hook) that DDP waits for at its end."""
        totals = dict.fromkeys(PROFILE_PHASES, 0.0)
        sync = self.device
        self.model.train()
        done = 0
        while done < steps:
            self._permute()
            for size, lo, hi in self.plan[: steps - done]:
                t0 = time.perf_counter()
                xb, yb = self.Xp[lo:hi], self.yp[lo:hi]
                self.optimizer.zero_grad()
                synchronize(sync)
                t1 = time.perf_counter()
                loss_sum = sum_loss(self.config.loss, self.ddp(xb), yb)
                synchronize(sync)
                t2 = time.perf_counter()
                self.timer.take()
                window = BackwardWindow(self.timer.cuda)
                with window:
                    (loss_sum * (self.world / size)).backward()
                synchronize(sync)
                t3 = time.perf_counter()
                reduce_s = self.timer.take()
                # compute = backward minus the all-reduce, both on the same clock (CUDA events on CUDA)
                compute_s = max(0.0, window.seconds(t3 - t2) - reduce_s)
                self.optimizer.step()
                loss_sum.item()
                t4 = time.perf_counter()
                for phase, seconds in zip(PROFILE_PHASES, (t1 - t0, t2 - t1, compute_s,
                                                           reduce_s, t4 - t3), strict=True):
                    totals[phase] += seconds
                done += 1
        dist.barrier(group=self.group.control)
        return {phase: total / max(1, done) for phase, total in totals.items()}

    def worker_report(self, peak_memory_bytes: int) -> WorkerReport:
        """Every rank gives its own probe's peak; rank 0's report holds the others' (and the all-reduce times)."""
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, int(peak_memory_bytes), group=self.group.control)
        return WorkerReport(
            workers=self.world,
            worker_batch_size=self.worker_batch_size,
            other_peak_memory_bytes=[int(g) for g in gathered[1:]],
            extra={"backend": self.group.backend, "launcher": self.group.launcher,
                   "allreduce_s": list(self.allreduce_s)},
        )


ENGINE = Engine(
    name="ddp",
    summary="DistributedDataParallel over W processes (gloo on CPU, NCCL on CUDA); the global batch is the "
    "lesson's, split into W shards",
    start=DDPSession,
    distributed=True,
)
