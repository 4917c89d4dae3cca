"""What a sweep runs: ``SweepConfig``, every axis of ``records.axes`` validated at construction (one-line
errors, before anything trains), from keywords, a mapping or a TOML file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import MAX_SMALL_BYTES, read_bytes_checked
from minibatch_core.input.config import MAX_EPOCHS, MAX_RUNS
from minibatch_core.records.axes import AXES, AXIS_BY_KEY


class SweepConfig:
    """What a sweep runs: the values of every axis (``records.axes.AXES``) plus ``profile``.

    Settings are the axes' keys, which are also the TOML keys and, with dashes, the ``run`` flags
    (``batch_sizes`` / ``--batch-sizes``). A multi-valued axis holds a tuple (the plan is their product), a
    single-valued one its value. Each is parsed and validated by its axis at construction; a setting not
    given takes the default sweep's value.
    """

    def __init__(self, *, profile: bool = True, **settings: Any) -> None:
        unknown = [k for k in settings if k not in AXIS_BY_KEY]
        if unknown:
            raise MinibatchError(f"unknown sweep setting {unknown[0]!r}: use "
                                 f"{', '.join(sorted([*AXIS_BY_KEY, 'profile']))}")
        if not isinstance(profile, bool):
            raise MinibatchError(f"profile {profile!r} is not valid: use true or false")
        self.profile = profile
        self.values: dict[str, Any] = {
            a.key: a.parse(settings[a.key]) if a.key in settings else a.sweep_value() for a in AXES}

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepConfig) and (self.values, self.profile) == (other.values, other.profile)

    def __repr__(self) -> str:
        return f"SweepConfig({self.to_dict()!r})"

    @property
    def engine_list(self) -> tuple[str, ...]:
        return self.values["engines"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (env.json's ``sweep``), readable back by ``from_mapping``."""
        def plain(value: Any) -> Any:
            return [plain(v) for v in value] if isinstance(value, tuple) else value

        out = {key: plain(value) for key, value in self.values.items()}
        out["batch_sizes"] = [str(b) for b in self.values["batch_sizes"]]
        out["profile"] = self.profile
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: SweepConfig | None = None) -> SweepConfig:
        """Keys as in a TOML file (``batch-sizes`` and ``batch_sizes`` both work); unknown keys are an
        error. Values override ``base`` (default: the default sweep)."""
        changes = {key.replace("-", "_"): value for key, value in values.items()}
        merged = {**(base.values if base else {}), **changes}
        profile = merged.pop("profile", base.profile if base else True)
        return cls(profile=profile, **merged)


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's sweep settings (top-level keys or a ``[sweep]`` table); its ``[executor]`` table is
    ``executors.ExecutorOptions``'s, read by ``read_toml``."""
    data = read_toml(path)
    data.pop("executor", None)
    # a [sweep] table is accepted as well as top-level keys
    if set(data) == {"sweep"} and isinstance(data["sweep"], dict):
        data = data["sweep"]
    return data


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(read_bytes_checked(path, limit=MAX_SMALL_BYTES, what="config file").decode("utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise MinibatchError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise MinibatchError(f"config file {str(path)!r} is not a TOML text file (undecodable byte at offset "
                             f"{err.start})") from None
    return data


def sweep_from_toml(path: str | Path, base: SweepConfig | None = None) -> SweepConfig:
    """A TOML file's settings over ``base``, each parsed by its axis (``records.axes``); a bad value is
    refused naming the file, the key and what it accepts."""
    data = load_toml(path)
    try:
        return SweepConfig.from_mapping(data, base=base)
    except MinibatchError as err:
        for key, value in data.items():  # which key: the first that fails on its own
            try:
                SweepConfig.from_mapping({key: value}, base=base)
            except MinibatchError as one:
                raise MinibatchError(f"config file {str(path)!r}: {key} = {value!r}: {one}") from None
        raise MinibatchError(f"config file {str(path)!r}: {err}") from None


def planned_size(sweep: SweepConfig) -> int:
    """The runs a sweep plans at most (the product of its axes and seeds), counted without expanding it."""
    size = len(sweep.seeds)
    for axis in AXES:
        if axis.key != "seeds" and axis.multi:
            size *= max(1, len(sweep.values[axis.key]))
    return size


def check_plan_size(sweep: SweepConfig, confirmed: bool, command: str = "run") -> None:
    """Refuse, before anything is expanded or loaded, a plan above MAX_RUNS runs or MAX_EPOCHS epochs
    unless ``confirmed`` (--yes)."""
    if confirmed:
        return
    runs = planned_size(sweep)
    if runs > MAX_RUNS:
        raise MinibatchError(f"this plan holds up to {runs:,} runs, above the {MAX_RUNS:,} that `{command}` starts "
                             "without asking: narrow the lists (seeds, batch sizes, lrs, ...) or add --yes")
    epochs = sweep.values.get("epochs")
    if isinstance(epochs, int) and epochs > MAX_EPOCHS:
        raise MinibatchError(f"epochs {epochs:,} is above the {MAX_EPOCHS:,} that `{command}` trains without "
                             "asking: give fewer, or add --yes")
