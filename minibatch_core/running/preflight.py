"""A run's input checked before anything slow starts: no torch, no worker processes.

A typo in an engine or device name, or a broken data file, is then a one-line error in well under a
second instead of after the seconds that starting torch and the workers take.
"""

from __future__ import annotations

from minibatch_core.engines import check_engine_name, check_model_support
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import (
    BUNDLED,
    DATA_ACCEPTED,
    IMAGE_SETS,
    is_file_dataset,
    is_function_dataset,
    known_datasets,
)
from minibatch_core.input.datafile import read_table
from minibatch_core.input.devices import check_device_name
from minibatch_core.input.specs import normalize_user_spec, parse_model_spec


def check_run_input(config: RunConfig) -> tuple[str, ...]:
    """Raise ``MinibatchError`` for what can be checked without torch; return the data file's notes
    (one line each, e.g. a dropped index column) for the caller to show once."""
    check_engine_name(config.engine)
    check_device_name(config.device)
    parse_model_spec(config.model)  # a user model's file or module must exist
    check_model_support(config.engine, config.model, config.loss)
    return check_dataset(config.dataset, config.target)


def check_dataset(name: str, target: str | None) -> tuple[str, ...]:
    """A data file is read and checked in full (pandas only); a name must be one the loader knows."""
    if name in BUNDLED or name in IMAGE_SETS or name == "synthetic":
        return ()
    if is_function_dataset(name):
        normalize_user_spec("dataset", name, DATA_ACCEPTED)  # the file or module exists
        return ()
    if not is_file_dataset(name):
        raise MinibatchError(f"unknown dataset {name!r}: use {known_datasets()}")
    return read_table(name, target).notes
