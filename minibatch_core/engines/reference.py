"""``reference``: the lesson's training loop, exactly.

Seeding contract: the data is already loaded; ``torch.manual_seed(seed)`` is called immediately before
the model is built; then the criterion, the optimizer and ``DataLoader(TensorDataset(X, y), batch_size,
shuffle=True)``, with no other use of the global torch RNG. On CPU the per-epoch losses equal, bit for
bit, those of the lesson's code run after ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

from minibatch_core.engines.base import (
    Engine,
    EpochOutput,
    MemoryBreakdown,
    PhaseClock,
    batch_loss_fn,
    evaluate_logits,
    make_model,
)
from minibatch_core.engines.membytes import module_memory
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import synchronize
from minibatch_core.input.models import n_parameters


def make_optimizer(name: str, params, lr: float) -> optim.Optimizer:
    """The optimizers as the lesson writes them: torch defaults apart from the learning rate."""
    return optim.Adam(params, lr=lr) if name == "adam" else optim.SGD(params, lr=lr)


class ReferenceSession:
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int]):
        if len(seeds) != 1:
            raise ValueError("the reference engine trains one seed per run")
        self.seeds = list(seeds)
        self.config = config
        self.device = device
        self.data = data
        self.batch_size = resolve_batch_size(config.batch_size, data.n_samples)
        X, y = data.X, data.y
        torch.manual_seed(self.seeds[0])
        self.model = make_model(config, data)  # mlp on a table: build_mlp, the lesson's model
        self.n_parameters = n_parameters(self.model)
        if device.type != "cpu":
            self.model = self.model.to(device)  # as PyTorch's tutorials do: model once, batches per step
        self.criterion = nn.CrossEntropyLoss() if config.loss == "cross_entropy" else batch_loss_fn(config.loss)
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.lr)
        self.data_loader = DataLoader(TensorDataset(X, y), batch_size=self.batch_size, shuffle=True)
        # evaluation reads the whole dataset on the device; kept outside the timed region
        self._X_eval = X.to(device)
        self._y_eval = y.to(device)

    def run_epoch(self) -> EpochOutput:
        model, criterion, optimizer, data_loader = self.model, self.criterion, self.optimizer, self.data_loader
        on_device = self.device.type != "cpu"
        batch_losses: list[float] | None = [] if self.config.record_batches else None
        steps = 0
        # --- the lesson's loop -------------------------------------------------------------------
        model.train()
        running_loss = 0.0
        for batch_X, batch_y in data_loader:
            if on_device:
                batch_X, batch_y = batch_X.to(self.device), batch_y.to(self.device)
            optimizer.zero_grad()
            outputs = model(batch_X)
            loss = criterion(outputs, batch_y)
            loss.backward()
            optimizer.step()
            batch_loss = loss.item()
            if batch_losses is not None:
                batch_losses.append(batch_loss)
            running_loss += batch_loss * batch_X.size(0)
            steps += 1
        epoch_loss = running_loss / len(data_loader.dataset)
        # -----------------------------------------------------------------------------------------
        return EpochOutput([epoch_loss], steps, None if batch_losses is None else [batch_losses])

    def evaluate(self) -> list[tuple[float, float]]:
        self.model.eval()
        return [evaluate_logits(self.model, self._X_eval, self._y_eval, self.config.loss)]

    def memory(self) -> MemoryBreakdown:
        return module_memory(self.model, self.optimizer, self._X_eval[: self.batch_size])

    def profile(self, steps: int) -> dict[str, float]:
        """The same loop, with a synchronized clock read between its phases."""
        model, criterion, optimizer = self.model, self.criterion, self.optimizer
        sync = self.device
        phases = PhaseClock()
        model.train()
        while phases.steps < steps:
            iterator = iter(self.data_loader)
            while phases.steps < steps:
                t0 = time.perf_counter()
                try:
                    batch_X, batch_y = next(iterator)
                except StopIteration:
                    break
                if self.device.type != "cpu":
                    batch_X, batch_y = batch_X.to(self.device), batch_y.to(self.device)
                synchronize(sync)
                t1 = time.perf_counter()
                optimizer.zero_grad()
                t_zero = time.perf_counter() - t1
                t1 += t_zero  # zero_grad is optimizer work, not forward
                loss = criterion(model(batch_X), batch_y)
                synchronize(sync)
                t2 = time.perf_counter()
                loss.backward()
                synchronize(sync)
                t3 = time.perf_counter()
                optimizer.step()
                loss.item()
                t4 = time.perf_counter()
                phases.step(t1 - t0 - t_zero, t2 - t1, t3 - t2, t4 - t3 + t_zero)
        return phases.means()


ENGINE = Engine(
    name="reference",
    summary="the lesson's loop exactly: DataLoader(shuffle=True), the model as built, CrossEntropyLoss (or "
            "MSE), Adam; trains any model",
    start=ReferenceSession,
)
