"""Instructions executed by training, counted under Valgrind's callgrind: a measure of work that does not
move with the load of a shared machine.

All configurations run in ONE valgrind process (each process pays ~15 s to import torch under valgrind
even with instrumentation off; with it on from the start, about two minutes). Inside it, per
configuration: build the engine's session, train one warm-up epoch (lazy initialization, allocator
growth, first-call dispatch), then count the next ``epochs`` epochs only: collection is toggled on and
off around them with ``torch._C._valgrind_toggle()`` and each configuration's counts are dumped to their
own callgrind part file (``_valgrind_toggle_and_dump_stats``), as ``torch.utils.benchmark``'s
``collect_callgrind`` does. One torch thread: callgrind serializes threads anyway, and a second thread's
spin-waits would be counted as work.

Instrumentation starts off (``--instr-atstart=no``) and the worker switches it on with
``callgrind_control -i on`` once torch is imported, which is what makes the import cheap. Where that
control channel fails (no vgdb), the run is repeated with instrumentation on from the start: slower,
same counts.

The worker is this module run as a script (``python -m minibatch_core.running.counting PLAN RESULT``).
The data is loaded by the caller and handed over with ``torch.save``, so the worker never imports
scikit-learn or pandas under valgrind.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import data_key

INSTALL_HINT = ("valgrind is not installed (or not on PATH): `minibatch-bench count` runs training under "
                "valgrind's callgrind; install it with `apt-get install valgrind` (Debian/Ubuntu), "
                "`dnf install valgrind` (Fedora) or `brew install valgrind` (Linux only on Homebrew)")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # so the worker imports this very code


@dataclass(frozen=True)
class InstructionCount:
    """One configuration's count."""

    config: RunConfig
    instructions: int  # executed in the counted epochs: config.epochs - 1, after one warm-up epoch
    steps: int  # optimizer steps in the counted epochs
    samples: int  # samples seen in the counted epochs (N x epochs)
    batch_size: int  # resolved (``full`` -> N)
    n_samples: int
    n_features: int
    n_classes: int
    torch_threads: int  # what the worker ran with (one)
    final_loss: float  # the last counted epoch's loss: shows the counted code trained

    @property
    def instructions_per_step(self) -> float:
        return self.instructions / self.steps if self.steps else float("nan")

    @property
    def instructions_per_sample(self) -> float:
        return self.instructions / self.samples if self.samples else float("nan")


@dataclass(frozen=True)
class CountOutcome:
    counts: list[InstructionCount]
    env: dict[str, Any]  # valgrind version, and what torch saw under valgrind


def find_valgrind() -> str:
    """The valgrind executable, or MinibatchError with the one line saying how to install it."""
    exe = shutil.which("valgrind")
    if exe is None:
        raise MinibatchError(INSTALL_HINT)
    return exe


def valgrind_version(exe: str) -> str:
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MinibatchError(f"{exe} --version failed ({err}); {INSTALL_HINT}") from None
    return done.stdout.strip().removeprefix("valgrind-") or "unknown"


def _interpreter() -> tuple[str, list[str]]:
    """The interpreter to start under valgrind, and extra sys.path entries it needs.

    ``sys.executable`` as it is, not resolved: a virtualenv's ``bin/python`` is a link to the base
    interpreter, and it is the link's path that makes Python read ``pyvenv.cfg`` and see the venv's
    packages (resolved, the worker is the base interpreter and fails on ``import torch``). Only where
    ``sys.executable`` is a script (a launcher that execs the real binary, which valgrind would not
    follow) is it resolved to a binary, and then this process's ``sys.path`` is handed over so that
    the worker still sees the packages this process sees."""
    exe = sys.executable
    try:
        with open(exe, "rb") as handle:
            is_script = handle.read(2) == b"#!"
    except OSError:
        is_script = False
    if not is_script:
        return exe, []
    return os.path.realpath(exe), [p for p in sys.path if p and os.path.isdir(p)]


def _data_key(config: RunConfig) -> str:
    return json.dumps(list(data_key(config)))


def count_instructions(configs: Sequence[RunConfig], *, workdir: str | Path | None = None) -> CountOutcome:
    """Count each configuration in one valgrind process: of its ``epochs``, the first is a warm-up and
    the others are counted (so ``epochs`` must be at least 2)."""
    import torch

    from minibatch_core.running.trainer import load_for

    if not configs:
        raise MinibatchError("nothing to count: no configurations")
    for config in configs:
        if config.epochs < 2:
            raise MinibatchError(f"epochs {config.epochs!r}: one warm-up epoch plus at least one counted epoch")
        if not str(config.device).startswith("cpu"):
            raise MinibatchError(f"device {config.device!r}: instruction counts are CPU-only")
    exe = find_valgrind()
    version = valgrind_version(exe)
    with tempfile.TemporaryDirectory(prefix="minibatch-count-", dir=workdir) as tmp:
        tmp_path = Path(tmp)
        datasets = {}
        for config in configs:
            datasets.setdefault(_data_key(config), load_for(config))
        torch.save(datasets, tmp_path / "data.pt")
        plan = {"data": str(tmp_path / "data.pt"),
                "jobs": [{**c.to_dict(), "data_key": _data_key(c)} for c in configs]}
        (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        result = _run_valgrind(exe, tmp_path, instrument_at_start=False)
        if result.get("instrumentation") == "unavailable":
            result = _run_valgrind(exe, tmp_path, instrument_at_start=True)
        totals = read_parts(tmp_path)
        if len(totals) != len(configs):
            raise MinibatchError(f"callgrind wrote {len(totals)} counts for {len(configs)} configurations")
    counts = [
        InstructionCount(config=config, instructions=ir, steps=r["steps"], samples=r["samples"],
                         batch_size=r["batch_size"], n_samples=r["n_samples"],
                         n_features=r["n_features"], n_classes=r["n_classes"],
                         torch_threads=result["torch_threads"], final_loss=r["final_loss"])
        for config, ir, r in zip(configs, totals, result["jobs"], strict=True)
    ]
    env = {"valgrind_version": version, "torch_version": torch.__version__,
           "cpu_capability_under_valgrind": result["cpu_capability"],
           "torch_threads_under_valgrind": result["torch_threads"],
           "instrumentation": result["instrumentation"],
           # which environment ran under valgrind (a virtualenv's prefix when started from one)
           "python_prefix_under_valgrind": result.get("python_prefix")}
    return CountOutcome(counts, env)


def _run_valgrind(exe: str, tmp: Path, *, instrument_at_start: bool) -> dict[str, Any]:
    for old in tmp.glob("callgrind.out*"):
        old.unlink()
    interpreter, extra_path = _interpreter()
    command = [exe, "--tool=callgrind", f"--callgrind-out-file={tmp / 'callgrind.out'}",
               f"--instr-atstart={'yes' if instrument_at_start else 'no'}", "--collect-atstart=no",
               "--vgdb=yes", interpreter, "-m", "minibatch_core.running.counting",
               str(tmp / "plan.json"), str(tmp / "result.json"), "atstart" if instrument_at_start else "control"]
    # a fixed hash seed: str hashes decide dict and set layouts, and so some of the instructions
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join([str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", ""), *extra_path]
                                         ).strip(os.pathsep)}
    env[STACK_PAD] = _stack_pad(command[command.index(interpreter):], env)
    log = tmp / "valgrind.log"
    with open(log, "wb") as out:
        done = _run_to_end(command, out, env, tmp)
    result_path = tmp / "result.json"
    if done.returncode != 0 or not result_path.is_file():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith("==")]
        last = lines[-1] if lines else "no output"
        raise MinibatchError(f"the run under valgrind failed (exit {done.returncode}): {last}")
    return json.loads(result_path.read_text(encoding="utf-8"))


# The client's environment and arguments sit at the top of its stack, so their size decides the alignment of
# every stack frame below them, and with it some of the instructions counted (numpy's small-array loops):
# on an Intel Xeon VM, padding the environment by 24, 40 or 3,000 bytes moved the sklearn engine's batch-1
# count by +0.1%, +0.2% and +1.4%, and the same code counted 507M or 517M by where it ran. Padding them to
# one size modulo the page size gives every run the same layout below them, wherever it runs.
STACK_PAD = "MINIBATCH_COUNT_STACK_PAD"
_PAGE = 4096


def _stack_pad(argv: list[str], env: dict[str, str]) -> str:
    """The value of ``STACK_PAD`` that brings argv and env (their strings and pointers) to a multiple of
    the page size."""
    strings = [*argv, *(f"{k}={v}" for k, v in env.items() if k != STACK_PAD), f"{STACK_PAD}="]
    used = sum(len(os.fsencode(s)) + 1 for s in strings) + 8 * (len(strings) + 2)  # + NULL ends of both lists
    return "x" * (-used % _PAGE)


def _run_to_end(command: list[str], out, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """valgrind to its end; interrupted (Ctrl-C, or SIGTERM/SIGHUP, which the CLI turns into the same),
    it is asked to stop (it then removes its vgdb FIFOs from the temporary folder), killed if it does not
    within 10 s, and any FIFO it left is removed: nothing of ours stays behind."""
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        return subprocess.CompletedProcess(command, proc.wait())
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for fifo in Path(tempfile.gettempdir()).glob(f"vgdb-pipe-*-from-{proc.pid}-*"):
            fifo.unlink(missing_ok=True)
        raise


_PART = re.compile(r"^part:\s*(\d+)", re.M)
_TOTAL = re.compile(r"^(?:totals|summary):\s*(\d+)", re.M)


def read_parts(folder: Path) -> list[int]:
    """Instruction totals of the dumped parts (``callgrind.out.N``), in dump order. The final file
    without a part number holds what ran after the last dump (nothing is collected there)."""
    parts: list[tuple[int, int]] = []
    for path in folder.glob("callgrind.out.*"):
        text = path.read_text(errors="replace")
        part, total = _PART.search(text), _TOTAL.search(text)
        if part is None or total is None:
            raise MinibatchError(f"{path.name}: not a callgrind output file (no part/totals line)")
        parts.append((int(part.group(1)), int(total.group(1))))
    return [total for _, total in sorted(parts)]


# --- the worker: runs under valgrind --------------------------------------------------------------------

def _instrumentation_on() -> bool:
    done = subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, text=True)
    return done.returncode == 0 and "OK" in done.stdout


def _worker(plan_path: str, result_path: str, mode: str) -> int:
    import torch

    from minibatch_core.engines import get_engine

    torch.set_num_threads(1)
    result: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "python_prefix": sys.prefix,
                              "torch_threads": torch.get_num_threads(), "instrumentation": mode, "jobs": []}
    if mode == "control" and not _instrumentation_on():
        result["instrumentation"] = "unavailable"
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")
        return 0
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    datasets = torch.load(plan["data"], weights_only=False)
    for job in plan["jobs"]:
        data = datasets[job.pop("data_key")]
        config = RunConfig.from_dict(job)
        session = get_engine(config.engine).start(config, data, torch.device("cpu"), [config.seed])
        session.run_epoch()  # warm-up, not counted
        gc.collect()
        gc.disable()  # a collection inside the counted region would bill unrelated garbage to it
        epochs = config.epochs - 1
        steps = 0
        torch._C._valgrind_toggle()
        for _ in range(epochs):
            out = session.run_epoch()
            steps += out.steps
        torch._C._valgrind_toggle_and_dump_stats()
        gc.enable()
        loss = float(out.losses[0])
        batch = data.n_samples if config.batch_size == "full" else min(int(config.batch_size), data.n_samples)
        result["jobs"].append({"steps": steps, "samples": data.n_samples * epochs, "batch_size": batch,
                               "n_samples": data.n_samples, "n_features": data.n_features,
                               "n_classes": data.n_classes, "final_loss": loss})
        del session
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:4]))
