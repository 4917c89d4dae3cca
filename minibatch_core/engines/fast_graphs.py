"""``fast`` on CUDA: an epoch as a few replays of CUDA graphs of the indexed step (a chunk of full-size
steps, one full step, and the last, shorter step), which read their rows through a device-side offset."""

from __future__ import annotations

import torch

from minibatch_core.input.devices import synchronize

GRAPH_CHUNK = 64  # full-size steps captured in one CUDA graph


class StepGraphs:
    """Capture for :class:`~minibatch_core.engines.fast.FastSession` (its ``_indexed_step``, buffers and
    state); ``graphs`` holds (graph, replays) in epoch order."""

    def _capture(self) -> None:
        """Capture chunks of the indexed step. Warm-up runs on a side stream (as capture requires)
        on the real state, which is then restored, so capturing never changes the training.

        Everything happens with the run's device current and on streams of that device: the side stream,
        and a capture stream made here. ``torch.cuda.graph``'s own default capture stream is made once, on
        whichever device was current then (cuda:0); capturing kernels of ``cuda:1`` on it records nothing
        (they run once, eagerly, during capture) and every replay would be an empty graph."""
        with torch.cuda.device(self.device):
            self._capture_on_device()

    def _capture_on_device(self) -> None:
        state = [self.params.param, self.params.grad, *self.optimizer.state, self.Z]
        saved = [t.clone() for t in state]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.offset.zero_()
                for buf, _count in self._indexed_schedule():
                    self._indexed_step(buf)  # one step of each size keeps the offset in range
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for t, v in zip(state, saved, strict=True):
                t.copy_(v)
        self.offset.zero_()
        synchronize(self.device)
        pool = torch.cuda.graph_pool_handle()
        capture_stream = torch.cuda.Stream(self.device)

        def capture(buf, steps: int) -> torch.cuda.CUDAGraph:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=capture_stream):
                for _ in range(steps):
                    self._indexed_step(buf)
            return graph

        chunk = min(GRAPH_CHUNK, self.full_steps)
        chunks, single = divmod(self.full_steps, chunk) if chunk else (0, 0)
        if chunks:
            self.graphs.append((capture(self.main, chunk), chunks))
        if single:
            self.graphs.append((capture(self.main, 1), single))
        if self.last is not None:
            self.graphs.append((capture(self.last, 1), 1))
