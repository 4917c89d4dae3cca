"""Every CUDA path, checked on the machine's GPUs, one verdict per check (``bash scripts/gpu-check.sh``).

1. the CUDA tests (``pytest -m cuda``) and 2. the bench's CUDA cases, as subprocesses;
3. the default sweep with ``--devices auto``: it completes, plans nothing it cannot run, fails no job;
4. per visible device and batch sizes 1, N-1 (a last batch of one row), 32 and full: ``fast`` with and
   without CUDA graphs against ``reference`` on that device and on the CPU: losses close, graphs
   non-empty (a replay moves the weights), epochs > 0 s, the project's timer beside CUDA events;
5. peak memory of reference / fast / stacked with the cuBLAS workspace share, each in a fresh worker;
6. the generic engines (any nn.Module: the built-in cnn and examples/models.py's conv net on digits-images):
   fast and stacked against reference on that device and on the CPU, through the trainer;
7. ddp over NCCL at one worker (and two where two GPUs exist) against reference.
Without a GPU: one line, exit 0. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = ("gpu-check: no CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing to check "
          "here; run scripts/gpu-check.sh on a machine with an NVIDIA GPU")
EPOCHS = 3
FIRST_EPOCH_REL, CURVE_REL, SAME_DEVICE_REL = 1e-3, 1e-2, 1e-5  # as tests/test_cuda.py argues
TIMER_SLACK_S = 0.005  # the host clock may exceed the CUDA events by launches and syncs, not by more


def timers_agree(host_s: float, events_s: float) -> bool:
    """The project's timer (synchronized host clock) against CUDA events around the same epoch: never
    shorter (beyond rounding) and not longer by more than the launch and sync overhead."""
    return events_s > 0 and 0.8 * events_s <= host_s <= events_s + max(4 * events_s, TIMER_SLACK_S)


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def worst_rel(curve: list[float], against: list[float]) -> float:
    return max(rel(a, b) for a, b in zip(curve, against, strict=True))


def one_row_last_batch(n: int) -> int:
    """A batch size whose epoch ends with a batch of one row: N - 1."""
    return max(1, n - 1)


def batch_sizes(n: int) -> list[int | str]:
    return list(dict.fromkeys([1, one_row_last_batch(n), 32, "full"]))


def subprocess_check(name: str, argv: list[str], timeout_s: float) -> Verdict:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    ok = done.returncode == 0
    if not ok:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
    return Verdict(name, ok, f"{tail} (exit {done.returncode}, {time.perf_counter() - started:.0f} s)")


def check_default_sweep() -> Verdict:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        argv = [sys.executable, "-m", "minibatch_core", "run", "--devices", "auto", "--seeds", "0",
                "--epochs", str(EPOCHS), "--quiet", "--out", str(out)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return Verdict("default sweep --devices auto", False, (done.stderr.strip().splitlines() or ["?"])[-1])
        runs = pd.read_csv(out / "runs.csv")
        env = json.loads((out / "env.json").read_text())
        on_cuda = sorted(set(runs.loc[runs["device"].str.startswith("cuda"), "engine"]))
        failed = env.get("failed_runs") or []
        ok = env["status"] == "complete" and not failed and {"reference", "fast", "stacked"} <= set(on_cuda) \
            and "sklearn" not in on_cuda
        left = [line.split("left out: ", 1)[1] for line in done.stderr.splitlines() if "left out: " in line]
        return Verdict("default sweep --devices auto", ok,
                       f"{env['runs_done']} runs, engines on CUDA: {', '.join(on_cuda)}; failed jobs: {len(failed)}; "
                       f"left out: {' / '.join(left) or 'nothing'}")


def timed_epochs(session, device) -> tuple[list[float], list[float], list[float]]:
    """Per epoch: the loss, the project's timer (Stopwatch) and CUDA events around the same region."""
    import torch

    from minibatch_core.running.measure import Stopwatch

    losses, host, events = [], [], []
    clock = Stopwatch(device)
    for _ in range(EPOCHS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with clock.region():
            start.record()
            out = session.run_epoch()
            end.record()
        end.synchronize()
        losses.append(out.losses[0])
        host.append(clock.elapsed_s)
        events.append(start.elapsed_time(end) / 1e3)
    return losses, host, events


def check_fast_on(device_name: str, batch_size: int | str) -> Verdict:
    import torch

    from minibatch_core.engines import get_engine
    from minibatch_core.engines.fast import FastSession
    from minibatch_core.input.config import RunConfig
    from minibatch_core.input.data import load_dataset

    device = torch.device(device_name)
    data = load_dataset("wine")
    config = RunConfig(engine="fast", batch_size=batch_size, epochs=EPOCHS, seed=0, device=device_name)
    graphs = FastSession(config, data, device, [0], use_graphs=True)
    before = graphs.params.param.clone()
    g_loss, g_host, g_events = timed_epochs(graphs, device)
    moved = not torch.equal(before, graphs.params.param)  # an empty graph replays nothing: weights stay
    eager_loss, _, _ = timed_epochs(FastSession(config, data, device, [0], use_graphs=False), device)
    reference = get_engine("reference")
    ref_loss, _, _ = timed_epochs(reference.start(config.with_(engine="reference"), data, device, [0]), device)
    cpu = torch.device("cpu")
    cpu_session = reference.start(config.with_(engine="reference", device="cpu"), data, cpu, [0])
    cpu_loss = [cpu_session.run_epoch().losses[0] for _ in range(EPOCHS)]
    problems = []
    if not graphs.graphs or not moved:
        problems.append("graphs empty (weights unchanged by replay)")
    if worst_rel(g_loss, eager_loss) > SAME_DEVICE_REL:
        problems.append(f"graphs vs eager {worst_rel(g_loss, eager_loss):.1e}")
    if worst_rel(g_loss, ref_loss) > CURVE_REL or rel(g_loss[0], ref_loss[0]) > FIRST_EPOCH_REL:
        problems.append(f"vs reference on {device_name} {worst_rel(g_loss, ref_loss):.1e}")
    if worst_rel(g_loss, cpu_loss) > CURVE_REL or rel(g_loss[0], cpu_loss[0]) > FIRST_EPOCH_REL:
        problems.append(f"vs reference on cpu {worst_rel(g_loss, cpu_loss):.1e}")
    if not all(t > 0 for t in g_host + g_events):
        problems.append("an epoch of 0 s")
    if not all(timers_agree(h, e) for h, e in zip(g_host, g_events, strict=True)):
        problems.append("timer and CUDA events disagree")
    detail = (f"{len(graphs.graphs)} graph(s); loss {g_loss[-1]:.6g} (eager {eager_loss[-1]:.6g}, reference "
              f"{ref_loss[-1]:.6g}, cpu {cpu_loss[-1]:.6g}); epoch {min(g_host) * 1e3:.2f} ms by the timer, "
              f"{min(g_events) * 1e3:.2f} ms by CUDA events")
    return Verdict(f"fast graphs/eager vs reference | {device_name} | batch {batch_size}", not problems,
                   "; ".join(problems) + (" -- " if problems else "") + detail)


def check_memory(device_name: str) -> list[Verdict]:
    from minibatch_core.input.config import RunConfig
    from minibatch_core.presentation.labels import fmt_bytes
    from minibatch_core.running.trainer import train

    out = []
    for engine in ("reference", "fast", "stacked"):
        result = train(RunConfig(engine=engine, batch_size=32, epochs=EPOCHS, seed=0, device=device_name))
        workspace = result.cuda_workspace_bytes
        share = workspace / (workspace + result.peak_memory_bytes) if workspace else 0.0
        ok = result.peak_memory_bytes > 0 and workspace is not None
        out.append(Verdict(f"peak memory | {engine} | {device_name} | batch 32", ok,
                           f"peak {fmt_bytes(result.peak_memory_bytes)} (growth over the run's start, fresh worker), "
                           f"cuBLAS workspace {fmt_bytes(workspace or 0)} apart ({share:.0%} of both)"))
    return out


def check_generic_on(device_name: str, model: str) -> Verdict:
    """The generic paths (any nn.Module): fast and stacked against reference on this device and reference
    on the CPU, each through the trainer (a fresh worker, memory breakdown and profile included)."""
    from minibatch_core.input.config import RunConfig
    from minibatch_core.running.trainer import train

    config = RunConfig(dataset="digits-images", model=model, batch_size=32, epochs=EPOCHS, seed=0,
                       device=device_name)
    losses = {engine: train(config.with_(engine=engine), profile=True).epoch_losses
              for engine in ("reference", "fast", "stacked")}
    cpu = train(config.with_(device="cpu")).epoch_losses
    gaps = {f"{engine} vs reference": worst_rel(losses[engine], losses["reference"]) for engine in ("fast", "stacked")}
    gaps["reference vs cpu"] = worst_rel(losses["reference"], cpu)
    problems = [f"{pair} {gap:.1e}" for pair, gap in gaps.items() if gap > CURVE_REL]
    detail = "; ".join(f"{e} {v[-1]:.6g}" for e, v in losses.items()) + f"; cpu {cpu[-1]:.6g}"
    return Verdict(f"generic fast/stacked vs reference | {model} | {device_name}", not problems,
                   "; ".join(problems) + (" -- " if problems else "") + detail)


def check_ddp(workers: int) -> Verdict:
    from minibatch_core.input.config import RunConfig
    from minibatch_core.running.distributed import DistributedOptions
    from minibatch_core.running.trainer import train

    config = RunConfig(batch_size=32, epochs=EPOCHS, seed=0, device="cuda")
    ddp = train(config.with_(engine="ddp", workers=workers), profile=True,
                distributed=DistributedOptions(backend="nccl"))
    reference = train(config, isolate=False)
    worst = worst_rel(ddp.epoch_losses, reference.epoch_losses)
    ok = ddp.extra.get("backend") == "nccl" and worst < CURVE_REL and ddp.profile["allreduce"] >= 0
    return Verdict(f"ddp over NCCL | {workers} worker(s)", ok,
                   f"worst loss difference vs reference {worst:.1e}; all-reduce {ddp.profile['allreduce'] * 1e6:.0f} "
                   f"us/step; peaks {ddp.worker_peak_memory_bytes}")


def guarded(name: str, fn: Callable[[], Verdict | list[Verdict]]) -> list[Verdict]:
    try:
        found = fn()
    except Exception as err:  # noqa: BLE001 - a check that crashes is a failed check, with its reason
        traceback.print_exc(file=sys.stderr)
        return [Verdict(name, False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")]
    return found if isinstance(found, list) else [found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the pytest suites (CUDA tests, bench cases)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    print(f"gpu-check: {len(devices)} GPU(s): "
          + "; ".join(f"{d} {torch.cuda.get_device_name(i)}" for i, d in enumerate(devices))
          + f"; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    from minibatch_core.input.data import load_dataset

    checks: list[tuple[str, Callable[[], Verdict | list[Verdict]]]] = []
    if not args.quick:
        py = sys.executable
        checks += [("CUDA tests", lambda: subprocess_check("CUDA tests (pytest -m cuda)",
                                                           [py, "-m", "pytest", "tests", "-m", "cuda", "-q"], 900)),
                   ("bench CUDA cases", lambda: subprocess_check(
                       "bench CUDA cases", [py, "-m", "pytest", "bench/test_bench_training.py", "-k", "cuda",
                                            "--mb-epochs", "3", "-q"], 900))]
    checks.append(("default sweep --devices auto", check_default_sweep))
    for device in devices:
        for size in batch_sizes(load_dataset("wine").n_samples):
            checks.append((f"fast | {device} | batch {size}", lambda d=device, s=size: check_fast_on(d, s)))
        checks.append((f"peak memory | {device}", lambda d=device: check_memory(d)))
        for model in ("cnn", "examples/models.py:small_convnet"):
            checks.append((f"generic | {model} | {device}", lambda d=device, m=model: check_generic_on(d, m)))
    checks.append(("ddp over NCCL | 1 worker", lambda: check_ddp(1)))
    if len(devices) >= 2:
        checks.append(("ddp over NCCL | 2 workers", lambda: check_ddp(2)))
    verdicts: list[Verdict] = []
    started = time.perf_counter()
    for name, fn in checks:
        for verdict in guarded(name, fn):
            print(verdict.line(), flush=True)
            verdicts.append(verdict)
    failed = [v for v in verdicts if not v.ok]
    print(f"gpu-check: {len(verdicts) - len(failed)} passed, {len(failed)} failed in "
          f"{time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
