"""`hidden` has one parser: train, run and their spellings of the same architecture agree."""

from __future__ import annotations

import pytest

from minibatch_core.cli import build_parser
from minibatch_core.commands.run import sweep_from_args
from minibatch_core.commands.train import config_from_args
from minibatch_core.errors import MinibatchError


@pytest.mark.parametrize("text", ["10x10", "10,10", "10-10"])
def test_train_and_run_read_hidden_alike(text):
    train = config_from_args(build_parser(["train"]).parse_args(["train", "--hidden", text]))
    run = sweep_from_args(build_parser(["run"]).parse_args(["run", "--hidden", text]))
    assert train.hidden == (10, 10)
    assert run.hidden == ((10, 10),)


@pytest.mark.parametrize("text", ["10,x", "10x0", ""])
def test_train_and_run_refuse_the_same_widths(text):
    with pytest.raises(MinibatchError, match="hidden"):
        config_from_args(build_parser(["train"]).parse_args(["train", "--hidden", text]))
    with pytest.raises(MinibatchError, match="hidden"):
        sweep_from_args(build_parser(["run"]).parse_args(["run", "--hidden", text]))
