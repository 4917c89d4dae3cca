"""What a study runs: ``StudyConfig``, validated at construction (one-line errors, before anything
trains). Field names mirror the CLI flags (``--batch-sizes`` -> ``batch_sizes``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig, check_loss, parse_threads
from minibatch_core.input.specs import parse_model_spec
from minibatch_core.input.split import check_val_fraction
from minibatch_core.records.axes import items as _items
from minibatch_core.records.axes import parse_hidden_list, parse_seeds
from minibatch_core.records.axes import parse_int as _int
from minibatch_core.records.axes import unique as _unique
from minibatch_core.records.study_axes import check_policy, default_target, parse_lr_grid, parse_study_batch_sizes
from minibatch_core.running.to_target import Target


@dataclass(frozen=True)
class StudyConfig:
    """What a study runs. Field names mirror the CLI flags (``--batch-sizes`` -> batch_sizes)."""

    datasets: tuple[str, ...] = ("wine",)
    batch_sizes: tuple[int | str, ...] = ("pow2",)
    lrs: tuple[float, ...] = (1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1)
    lr_policy: str = "constant"
    warmup_epochs: float = 0.0
    seeds: tuple[int, ...] = (0, 1)
    engines: tuple[str, ...] = ("stacked",)
    devices: tuple[str, ...] = ("cpu",)
    target_accuracy: float | None = None
    target_loss: float | None = None
    val_fraction: float = 0.2
    data_seed: int = 0
    max_epochs: int = 40
    max_steps: int | None = None  # a step budget for every batch size (None: epochs, floored, see study_search)
    time_budget_s: float | None = None
    full_budget: bool = False
    eval_every: int | None = None
    optimizer: str = "adam"
    hidden: tuple[int, ...] = (10, 10)
    model: str = "mlp"  # one model per study (mlp, linear, cnn or a user's factory spec)
    loss: str = "cross_entropy"  # or mse (float targets: no accuracy, so the target is a validation loss)
    scale: str = "none"
    target: str | None = None  # label column of a file dataset
    n_samples: int = 1000
    n_features: int = 20
    n_classes: int = 2
    noise_scale: bool = True  # measure B_simple (the gradient-noise prediction of the critical batch)
    threads: int | None = 1  # torch intra-op threads while training (None: torch's default), as RunConfig
    lr_search: bool = True  # extend the rates at an edge optimum, then refine (sweep/study_search.py)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "datasets", _unique(str(d) for d in _items("datasets", self.datasets)))
        set_(self, "batch_sizes", parse_study_batch_sizes(self.batch_sizes))
        set_(self, "lrs", parse_lr_grid(self.lrs))
        set_(self, "lr_policy", check_policy(str(self.lr_policy)))
        try:
            warm = float(self.warmup_epochs)
        except (TypeError, ValueError):
            warm = -1.0
        if not warm >= 0 or warm == float("inf"):
            raise MinibatchError(f"warm-up epochs {self.warmup_epochs!r} is not valid: use a number >= 0")
        set_(self, "warmup_epochs", warm)
        set_(self, "seeds", parse_seeds(self.seeds))
        set_(self, "engines", _unique(str(e) for e in _items("engines", self.engines)))
        set_(self, "devices", _unique(str(d).strip().lower() for d in _items("devices", self.devices)))
        if self.target_accuracy is not None and self.target_loss is not None:
            raise MinibatchError("both --target-accuracy and --target-loss were given: give exactly one "
                                 "(or neither, for the dataset's default target)")
        check_loss(self.loss)
        if self.loss == "mse" and self.target_accuracy is not None:
            raise MinibatchError("--loss mse has no accuracy, so --target-accuracy cannot be met: give the "
                                 "validation loss to reach with --target-loss")
        if self.loss == "mse" and self.target_loss is None:
            # a regression target's scale is the user's (units of y squared): no default level means anything
            raise MinibatchError("--loss mse needs a target: give the validation mean squared error to reach "
                                 "with --target-loss")
        if self.target_accuracy is not None:
            Target("accuracy", float(self.target_accuracy))
        if self.target_loss is not None:
            Target("loss", float(self.target_loss))
        set_(self, "val_fraction", check_val_fraction(self.val_fraction))
        set_(self, "data_seed", _int("data seed", self.data_seed, 0))
        set_(self, "max_epochs", _int("max epochs", self.max_epochs, 1))
        if self.max_steps is not None:
            set_(self, "max_steps", _int("max steps", self.max_steps, 1))
        set_(self, "lr_search", bool(self.lr_search))
        if self.time_budget_s is not None:
            try:
                budget = float(self.time_budget_s)
            except (TypeError, ValueError):
                budget = -1.0
            if not budget > 0:
                raise MinibatchError(f"time budget {self.time_budget_s!r} is not valid: use seconds > 0")
            set_(self, "time_budget_s", budget)
        if self.eval_every is not None:
            set_(self, "eval_every", _int("eval every", self.eval_every, 1))
        set_(self, "hidden", parse_hidden_list(self.hidden)[0])
        models = _unique(parse_model_spec(m) for m in _items("models", self.model))
        if len(models) != 1:
            raise MinibatchError(f"a study trains one model, got {len(models)} ({', '.join(models)}): run one "
                                 "study per model")
        set_(self, "model", models[0])
        set_(self, "threads", parse_threads(self.threads))
        for name, minimum in (("n_samples", 2), ("n_features", 1), ("n_classes", 2)):
            set_(self, name, _int(name.replace("_", " "), getattr(self, name), minimum))

    def target_for(self, dataset: str) -> Target:
        if self.target_accuracy is not None:
            return Target("accuracy", float(self.target_accuracy))
        if self.target_loss is not None:
            return Target("loss", float(self.target_loss))
        return Target(*default_target(dataset))

    def run_config(self, dataset: str, engine: str, device: str, batch: int | str, lr: float,
                   seed: int) -> RunConfig:
        return RunConfig(dataset=dataset, batch_size=batch, epochs=self.max_epochs, seed=seed, device=device,
                         engine=engine, lr=lr, optimizer=self.optimizer, hidden=self.hidden, model=self.model,
                         target=self.target, scale=self.scale, n_samples=self.n_samples,
                         n_features=self.n_features, n_classes=self.n_classes, data_seed=self.data_seed,
                         threads=self.threads, loss=self.loss)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = [str(b) for b in self.batch_sizes]
        d["hidden"] = list(self.hidden)
        return d

