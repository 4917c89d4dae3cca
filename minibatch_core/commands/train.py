"""``minibatch-bench train``: one run, printed the lesson's way."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from minibatch_core.commands import SUMMARIES
from minibatch_core.commands.options import add_one_value_options, config_values
from minibatch_core.engines import is_distributed
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import MAX_EPOCHS, RunConfig
from minibatch_core.input.devices import BACKENDS
from minibatch_core.presentation.labels import fmt_bytes

LIVE_EVERY_S = 5.0  # a run longer than this prints a progress line on stderr at most this often

if TYPE_CHECKING:  # torch comes with these; run() imports them only once the input has been checked
    from minibatch_core.running.results import RunResult


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help=SUMMARIES["train"],
        description="Train the lesson's MLP once. Prints 'Epoch [e/E] Average Loss: x' per epoch (the "
        "lesson's epoch loss: sum of batch loss x batch size over N) and a summary of time and memory.",
    )
    groups = add_one_value_options(p)  # one per axis: --dataset, --batch-size, --seed, --threads, --hidden ...
    d = groups["ddp"]  # beside --workers
    d.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="torch.distributed backend: auto (nccl on CUDA, gloo on CPU), gloo or nccl")
    d.add_argument("--oversubscribe", action="store_true",
                   help="allow more CPU workers than cores (refused otherwise: they would time-share cores)")
    g = p.add_argument_group("output")
    g.add_argument("--print-batches", action="store_true", help="also print every batch loss, as the lesson does")
    g.add_argument("--json", action="store_true", help="print the whole result as JSON instead")
    g.add_argument("--profile", action="store_true",
                   help="after training, split the mean step time into data/forward/backward/optimizer")
    g.add_argument("--no-isolate", action="store_true",
                   help="train in this process instead of a fresh worker (memory figures then less exact)")
    g.add_argument("--yes", action="store_true",
                   help=f"train more than {MAX_EPOCHS:,} epochs instead of refusing them")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run the options ask for: every axis read by its parser (run, study and train read --hidden alike)."""
    return RunConfig(**config_values(args), record_batches=args.print_batches or args.json)


def run(args: argparse.Namespace) -> int:
    from minibatch_core.running.preflight import check_run_input

    config = config_from_args(args)
    if config.epochs > MAX_EPOCHS and not args.yes:
        raise MinibatchError(f"--epochs {config.epochs:,} is above the {MAX_EPOCHS:,} that train runs without "
                             "asking: give fewer, or add --yes")
    for note in check_run_input(config):  # bad input fails here, before torch or a worker starts
        print(note, file=sys.stderr)
    if is_distributed(config.engine) or config.workers > 1:
        # the ddp engine launches (or joins) its own ranks from this process
        from minibatch_core.running.distributed import DistributedOptions
        from minibatch_core.running.trainer import train

        options = DistributedOptions(backend=args.backend, oversubscribe=args.oversubscribe)
        result = train(config, isolate=not args.no_isolate, profile=args.profile, distributed=options)
    elif args.no_isolate:
        from minibatch_core.running import trainer
        from minibatch_core.running.trainer import train

        trainer.LIVE_EVERY_S = LIVE_EVERY_S  # a long run shows it is alive (stderr; stdout stays the lesson's)
        result = train(config, isolate=False, profile=args.profile)
    else:
        from minibatch_core.input.data import is_function_dataset, table_for
        from minibatch_core.running.isolation import start_workers
        from minibatch_core.running.oneshot import train_in_worker

        # Only the worker imports torch and the engine; this process never does. It loads the data (with
        # scikit-learn) meanwhile, on the other core, so that the worker need not import scikit-learn too;
        # a user's function returns tensors, so the worker loads that itself.
        start_workers([config.engine], load_data=is_function_dataset(config.dataset))
        table = table_for(config)
        result = train_in_worker(config, profile=args.profile, live_every_s=LIVE_EVERY_S, table=table)
    if args.json:
        print(json.dumps(json_ready(result.to_dict()), indent=2, allow_nan=False))
        return 0
    print_lesson_lines(result, batches=args.print_batches)
    print()
    print(summary_text(result))
    return 0


def json_ready(value: Any) -> Any:
    """Strict JSON: a non-finite float (a diverged run's losses) becomes null, never a bare NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def print_lesson_lines(result: RunResult, *, batches: bool) -> None:
    epochs = result.config.epochs
    for record in result.records:
        if batches and record.batch_losses:
            for loss in record.batch_losses:
                print(f"Batch Loss: {loss:.4f}")
        print(f"Epoch [{record.epoch}/{epochs}] Average Loss: {record.loss:.4f}")
    if result.diverged:
        print(f"diverged at epoch {result.diverged_epoch}: the loss or the weights became non-finite; "
              "training stopped")


def time_line(result: RunResult) -> str:
    """Epoch times; the warm-up epoch is never passed off as the median of the timed ones."""
    m = result.measurement
    warm = f"time: warm-up epoch {m.warmup_s * 1e3:.2f} ms"
    total = f"total {result.total_time_s:.3f} s"
    if not m.n:
        return f"{warm} | no timed epoch (only the warm-up epoch ran) | {total}"
    median = m.median
    rate = f"{result.n_samples / median:,.0f} samples/s" if median > 0 else "samples/s n/a"
    line = (f"{warm} | median epoch (warm-up excluded) {median * 1e3:.2f} ms, IQR {m.q1 * 1e3:.2f}-"
            f"{m.q3 * 1e3:.2f} ms | {total} | {rate}")
    return line + (f"\nwarning: {m.spread_warning}" if m.spread_warning else "")


def summary_text(result: RunResult) -> str:
    last = result.records[-1]
    m = result.memory
    outcome = (f"diverged at epoch {result.diverged_epoch} (non-finite loss or weights; training stopped)"
               if result.diverged else
               f"final epoch loss {last.loss:.4f} | eval loss {last.eval_loss:.4f} | "
               f"eval accuracy {last.eval_accuracy:.3f}")
    lines = [
        *([f"classes: {class_mapping_text(result.class_names)}"] if result.class_names else []),
        f"engine {result.engine} | dataset {result.dataset} (N={result.n_samples}, {result.n_features} "
        f"features, {result.n_classes} classes) | device {result.device} ({result.device_name})",
        f"batch size {result.batch_size} (asked: {result.batch_spec}) | {result.steps_per_epoch} steps/epoch "
        f"| seed {result.seed} | lr {result.config.lr:g} ({result.config.optimizer})",
        outcome,
        time_line(result),
        f"peak memory {fmt_bytes(result.peak_memory_bytes)} ({result.memory_method})",
        f"tensors: parameters {fmt_bytes(m.parameters)}, gradients {fmt_bytes(m.gradients)}, optimizer state "
        f"{fmt_bytes(m.optimizer_state)}, activations of the largest batch {fmt_bytes(m.activations)}",
    ]
    if result.workers > 1 or result.engine == "ddp":
        lines.append(workers_text(result, list(result.measurement.samples) or [result.warmup_time_s]))
    if result.profile:
        total = sum(result.profile.values()) or 1.0
        parts = ", ".join(f"{k} {v * 1e6:.1f} us ({v / total:.0%})" for k, v in result.profile.items())
        lines.append(f"mean step: {total * 1e6:.1f} us = {parts}")
    return "\n".join(lines)


def workers_text(result: RunResult, timed: list[float]) -> str:
    peaks = ", ".join(fmt_bytes(p) for p in result.worker_peak_memory_bytes)
    line = (f"workers {result.workers} ({result.extra.get('backend', '?')}, "
            f"{result.extra.get('launcher', 'local')} launch) | per-worker batch "
            f"{result.worker_batch_size} | peak memory per worker {peaks} (sum "
            f"{fmt_bytes(result.peak_memory_sum_bytes)})")
    allreduce = result.allreduce_time_s
    if allreduce:
        spent = allreduce[1:] if len(allreduce) > 1 else allreduce
        share = sum(spent) / (sum(timed) or 1.0)
        line += f" | gradient all-reduce {share:.0%} of epoch time (warm-up excluded)"
    return line


def class_mapping_text(class_names) -> str:
    """``0 = class_0, 1 = class_1``: which label of the data became which class number."""
    return ", ".join(f"{i} = {name}" for i, name in enumerate(class_names))
