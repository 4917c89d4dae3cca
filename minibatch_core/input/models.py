"""The models: the lesson's MLP (``mlp``), ``linear``, a small LeNet-style ``cnn``, or a user's factory.

A user factory is ``package.module:function`` or ``path/to/file.py:function`` (see :mod:`.specs`), called
as ``function(input_shape, n_outputs)`` -> ``nn.Module``; ``input_shape`` is one example's shape without
the batch dimension, ``n_outputs`` the number of classes (or regression targets).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minibatch_core.errors import MinibatchError
from minibatch_core.input.specs import BUILTIN_MODELS, MODEL_ACCEPTED, is_file_spec, source_hash, split_spec


def build_mlp(n_inputs: int, hidden: Sequence[int], n_classes: int) -> nn.Sequential:
    """With hidden=(10, 10) on Wine this is the lesson's model layer for layer, so that the same
    ``torch.manual_seed`` draws the same initial weights in the same order."""
    layers: list[nn.Module] = []
    width = n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def build_cnn(input_shape: Sequence[int], n_outputs: int) -> nn.Sequential:
    """LeNet-style: two 3x3 convolutions (6 and 16 channels, padding 1) each with ReLU and 2x2 max pooling
    while the image is at least 2 pixels wide, then Linear(., 32)-ReLU-Linear(32, n). About 3.3k
    parameters on 1x8x8 digits."""
    if len(input_shape) != 3:
        raise MinibatchError(f"model 'cnn' needs image-shaped inputs (channels, height, width), got examples "
                             f"of shape {tuple(input_shape)}: use --dataset digits-images, or mlp/linear")
    channels, height, width = (int(s) for s in input_shape)
    layers: list[nn.Module] = []
    for out in (6, 16):
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out
    layers += [nn.Flatten(), nn.Linear(channels * height * width, 32), nn.ReLU(), nn.Linear(32, n_outputs)]
    return nn.Sequential(*layers)


def _import_file(path: str) -> Any:
    """Import a user's .py file by path, once per file content (a changed file is imported afresh). Its
    folder is put on sys.path first, so that it can import its neighbours as a user would expect."""
    resolved = Path(path).resolve()
    name = f"_minibatch_user_{resolved.stem}_{source_hash(str(path) + ':f') or 'x'}"
    if name in sys.modules:
        return sys.modules[name]
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise MinibatchError(f"{path!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def resolve_callable(what: str, spec: str, accepted: str) -> Callable[..., Any]:
    """The function a user spec names; a missing module, file or function, or an import that raises, is a
    one-line MinibatchError naming the spec and the exception's last line."""
    import pkgutil

    where, attr = split_spec(spec)
    try:
        if is_file_spec(spec):
            if not Path(where).is_file():
                raise MinibatchError(f"{what} {spec!r}: file {where!r} does not exist (use {accepted})")
            target: Any = _import_file(where)
            for part in attr.split("."):
                target = getattr(target, part)
        else:
            target = pkgutil.resolve_name(spec)
    except MinibatchError:
        raise
    except AttributeError:
        raise MinibatchError(f"{what} {spec!r}: {where!r} has no function {attr!r} (use {accepted})") from None
    except ModuleNotFoundError as err:
        raise MinibatchError(f"{what} {spec!r}: module {err.name or where!r} cannot be found (use {accepted})"
                             ) from None
    except Exception as err:  # the user's module raised while importing
        raise MinibatchError(f"{what} {spec!r}: importing {where!r} raised {exception_line(err)}") from None
    if not callable(target):
        raise MinibatchError(f"{what} {spec!r}: {attr!r} is not a function (use {accepted})")
    return target


def exception_line(err: BaseException) -> str:
    """An exception as its last line: ``ValueError: bad shape``."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1]}" if text else type(err).__name__


def build_model(spec: str, input_shape: Sequence[int], n_outputs: int, hidden: Sequence[int]) -> nn.Module:
    """The model of a configuration. ``mlp`` on 1-D examples is exactly ``build_mlp`` (the lesson's); on
    other shapes it flattens first (nn.Flatten has no parameters: the same draws initialize it)."""
    shape = tuple(int(s) for s in input_shape)
    width = math.prod(shape)
    if spec == "mlp":
        mlp = build_mlp(width, hidden, n_outputs)
        return mlp if len(shape) == 1 else nn.Sequential(nn.Flatten(), *mlp)
    if spec == "linear":
        return nn.Linear(width, n_outputs) if len(shape) == 1 else nn.Sequential(nn.Flatten(),
                                                                                  nn.Linear(width, n_outputs))
    if spec == "cnn":
        return build_cnn(shape, n_outputs)
    if spec in BUILTIN_MODELS:  # pragma: no cover - every built-in is handled above
        raise AssertionError(spec)
    factory = resolve_callable("model", spec, MODEL_ACCEPTED)
    try:
        model = factory(shape, int(n_outputs))
    except Exception as err:
        raise MinibatchError(f"model {spec!r}: {split_spec(spec)[1]}{shape, int(n_outputs)} raised "
                             f"{exception_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise MinibatchError(f"model {spec!r} returned {type(model).__name__}, not a torch.nn.Module: the "
                             "factory must return the model")
    return model


def n_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def has_randomness(model: nn.Module) -> bool:
    """Modules that draw random numbers in training (dropout and its kin)."""
    random_types = (nn.modules.dropout._DropoutNd, nn.RReLU)
    return any(isinstance(m, random_types) for m in model.modules())


def has_buffers(model: nn.Module) -> bool:
    """Buffers (BatchNorm's running statistics): state that training changes outside the optimizer."""
    return any(True for _ in model.buffers())


def check_output(spec: str, model: nn.Module, example: torch.Tensor, n_outputs: int) -> None:
    """One example through the model (eval mode, no grad, no RNG use): its output must be (1, n_outputs)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example.unsqueeze(0))
    except Exception as err:
        raise MinibatchError(f"model {spec!r} fails on one example of shape {tuple(example.shape)}: "
                             f"{exception_line(err)}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n_outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise MinibatchError(f"model {spec!r} outputs {got} for one example of shape {tuple(example.shape)}; "
                             f"expected (1, {n_outputs}) (batch, n_outputs)")


@dataclass(frozen=True)
class ModelFacts:
    n_parameters: int
    random: bool  # draws random numbers in training (dropout)
    buffers: bool  # has buffers (BatchNorm)
    batch_norm: bool = False  # batch statistics in training: a batch of one row cannot train


def check_model_and_data(spec: str, hidden: Sequence[int], loss: str, data: Any) -> ModelFacts:
    """Everything about a (model, dataset, loss) that can fail, checked before any run starts: targets that
    fit the loss, a factory that works and returns a module whose output for one example is
    (1, n_outputs). Returns the model's parameter count. The global RNG is left as it was."""
    if loss == "cross_entropy" and data.is_regression:
        raise MinibatchError(f"dataset {data.name!r} has float targets, which --loss cross_entropy cannot use: "
                             "give class numbers (integers 0..k-1), or use --loss mse")
    if loss == "mse" and not data.is_regression:
        raise MinibatchError(f"dataset {data.name!r} has class numbers as targets, which --loss mse cannot use: "
                             "give float targets of shape (N,) or (N, k), or use --loss cross_entropy")
    with torch.random.fork_rng(devices=[]):
        model = build_model(spec, data.input_shape, data.n_outputs, hidden)
        check_output(spec, model, data.X[0], data.n_outputs)
    norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return ModelFacts(n_parameters(model), has_randomness(model), has_buffers(model), norm)
