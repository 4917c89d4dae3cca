"""The CUDA choices, checked on a CPU machine with torch.cuda's calls replaced by recording fakes: which
device is current and which stream graphs are captured on, what the memory probe subtracts. What only a GPU
can show (graphs that replay, real allocator figures) is in tests/test_cuda.py and scripts/gpu-check.sh."""

from __future__ import annotations

import contextlib

import pytest
import torch

from minibatch_core.engines.fast import FastSession
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import load_dataset
from minibatch_core.running import measure
from minibatch_core.running.measure import MemoryProbe

CUDA1 = torch.device("cuda", 1)


class FakeStream:
    def __init__(self, device=None) -> None:
        self.device = torch.device(device) if device is not None else None

    def wait_stream(self, other) -> None:
        pass


@pytest.fixture
def cuda_calls(monkeypatch):
    """torch.cuda's graph and stream calls replaced by fakes that record what they were given and which
    device was current at the time."""
    log: list[tuple] = []
    current = {"device": torch.device("cuda", 0)}

    @contextlib.contextmanager
    def device(d):
        before = current["device"]
        current["device"] = torch.device(d)
        log.append(("device", torch.device(d)))
        try:
            yield
        finally:
            current["device"] = before

    def stream_factory(device=None):
        made = FakeStream(device if device is not None else current["device"])
        log.append(("stream", made.device, current["device"]))
        return made

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None):
        log.append(("graph", stream.device if stream is not None else None, current["device"]))
        yield

    @contextlib.contextmanager
    def use_stream(s):
        yield

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "Stream", stream_factory)
    monkeypatch.setattr(torch.cuda, "stream", use_stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream(device))
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: (0, 1))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    return log


@pytest.mark.parametrize("batch_size", [1, 32, 177, "full"])
def test_graphs_are_captured_on_the_runs_own_device_and_streams(cuda_calls, batch_size):
    data = load_dataset("wine")
    session = FastSession(RunConfig(batch_size=batch_size, epochs=1), data, torch.device("cpu"), [0],
                          use_graphs=False, indexed=True)
    session.device = CUDA1  # the capture code's choices, as on the second GPU (tensors stay on the CPU)
    session._capture()
    assert cuda_calls[0] == ("device", CUDA1), "capture must make the run's device current first"
    streams = [entry for entry in cuda_calls if entry[0] == "stream"]
    graphs = [entry for entry in cuda_calls if entry[0] == "graph"]
    assert streams and all(made == CUDA1 and current == CUDA1 for _, made, current in streams)
    # every graph on a stream of cuda:1 made here (never torch's default capture stream, made on cuda:0)
    assert graphs and all(on == CUDA1 and current == CUDA1 for _, on, current in graphs)
    full, rest = divmod(data.n_samples, session.batch_size)
    assert len(graphs) == len(session.graphs) == (full > 0) + (full % min(64, full) > 0 if full else 0) + (rest > 0)


class FakeAllocator:
    """torch.cuda's memory counters driven by a script: allocations, workspaces and their clearing."""

    def __init__(self) -> None:
        self.allocated = 0
        self.peak = 0
        self.workspaces = 0

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def free(self, n: int) -> None:
        self.allocated -= n

    def clear_workspaces(self) -> None:
        self.free(self.workspaces)
        self.workspaces = 0

    def reset_peak(self, device=None) -> None:
        self.peak = self.allocated


@pytest.fixture
def allocator(monkeypatch):
    fake = FakeAllocator()
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: fake.allocated)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: fake.peak)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", fake.reset_peak)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", fake.clear_workspaces, raising=False)
    return fake


MIB = 1 << 20


def test_cuda_peak_is_growth_over_the_runs_baseline_without_workspaces_or_set_up(allocator):
    allocator.alloc(100 * MIB)  # earlier work in the process (a pytest session, the pre-warm)
    allocator.workspaces = 8 * MIB  # a workspace left from the pre-warm's matmuls
    allocator.alloc(8 * MIB)
    probe = MemoryProbe(torch.device("cuda", 0))
    probe.start()
    assert allocator.workspaces == 0 and probe.baseline == 100 * MIB  # freed before the baseline
    allocator.alloc(3 * MIB)  # the session's resident tensors
    allocator.alloc(50 * MIB)  # set-up transients (graph capture's warm-up), freed again
    allocator.free(50 * MIB)
    probe.rearm()
    allocator.workspaces = 2 * 8 * MIB  # the run's two streams' workspaces
    allocator.alloc(16 * MIB)
    allocator.alloc(1 * MIB)  # an epoch's activations
    allocator.free(1 * MIB)
    probe.sample()
    assert probe.peak == (3 + 16 + 1) * MIB
    probe.finish()
    assert probe.workspace == 16 * MIB and probe.peak == 4 * MIB  # tensors + activations: what training uses
    assert "growth of torch.cuda.max_memory_allocated" in probe.method and "apart" in probe.method


def test_without_the_clear_call_the_workspace_is_unknown_and_the_peak_kept(allocator, monkeypatch):
    monkeypatch.delattr(torch._C, "_cuda_clearCublasWorkspaces")
    probe = MemoryProbe(torch.device("cuda", 0))
    probe.start()
    allocator.alloc(5 * MIB)
    probe.sample()
    probe.finish()
    assert probe.workspace is None and probe.peak == 5 * MIB
    assert measure.clear_cublas_workspaces() is False


def test_cpu_probe_reports_no_workspace():
    probe = MemoryProbe(torch.device("cpu"))
    probe.start()
    probe.sample()
    probe.finish()
    assert probe.workspace is None


def test_the_ddp_backward_window_reads_the_clock_the_all_reduce_was_timed_with(monkeypatch):
    from minibatch_core.engines.ddp import BackwardWindow

    class FakeEvent:
        recorded: list[str] = []

        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing

        def record(self) -> None:
            FakeEvent.recorded.append("record")

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end) -> float:
            return 2.5  # milliseconds, as CUDA events report

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    with BackwardWindow(cuda=True) as window:
        pass
    # on CUDA: the events' 2.5 ms, not the host reading (which would mix device and host time)
    assert window.seconds(host_s=9.0) == pytest.approx(2.5e-3) and FakeEvent.recorded == ["record", "record"]
    with BackwardWindow(cuda=False) as window:
        pass
    assert window.seconds(host_s=9.0) == 9.0


def test_activation_bytes_runs_the_forward_on_the_models_device():
    # stacked's example model stays on the CPU while its data is on the GPU: on the first H200 run every
    # stacked job of a conv net failed with "Input type (torch.cuda.FloatTensor) and weight type
    # (torch.FloatTensor)". A model on the meta device stands in for one on another device here.
    from minibatch_core.engines.membytes import activation_bytes

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 3))
    x = torch.randn(5, 1, 8, 8)
    on_cpu = activation_bytes(net, x)
    assert on_cpu == 5 * (4 * 8 * 8 * 4 * 3 + 3 * 4)  # conv, relu, flatten outputs (float32), then the logits
    assert activation_bytes(net.to("meta"), x) == on_cpu
