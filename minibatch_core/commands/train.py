"""``minibatch-bench train``: one run, printed the lesson's way."""

from __future__ import annotations

import argparse
import json
import statistics

from minibatch_core.commands.options import DATASET_HELP, add_data_options, add_model_options, parse_hidden
from minibatch_core.engines import engine_names
from minibatch_core.input.config import RunConfig, config_defaults
from minibatch_core.presentation.units import fmt_bytes
from minibatch_core.running.results import RunResult
from minibatch_core.running.trainer import train

D = config_defaults()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train once and print the lesson's per-epoch lines and a run summary",
        description="Train the lesson's MLP once. Prints 'Epoch [e/E] Average Loss: x' per epoch (the "
        "lesson's epoch loss: sum of batch loss x batch size over N) and a summary of time and memory.",
    )
    p.add_argument("--dataset", default=D["dataset"], help=f"dataset: {DATASET_HELP} (default {D['dataset']})")
    p.add_argument("--batch-size", default=str(D["batch_size"]), metavar="B",
                   help=f"positive integer or 'full' (= N); a size above N acts as full (default {D['batch_size']})")
    p.add_argument("--epochs", type=int, default=D["epochs"],
                   help=f"epochs, >= 1 (default {D['epochs']}, the lesson's)")
    p.add_argument("--seed", type=int, default=D["seed"],
                   help=f"torch.manual_seed before the model is built (default {D['seed']})")
    p.add_argument("--device", default=D["device"], help=f"cpu, cuda, cuda:N or auto (default {D['device']})")
    p.add_argument("--engine", default=D["engine"],
                   help=f"training engine: {', '.join(engine_names())} (default {D['engine']}, the lesson's loop)")
    p.add_argument("--lr", default=D["lr"], help=f"learning rate, > 0 (default {D['lr']})")
    p.add_argument("--threads", default=D["threads"], metavar="N|auto",
                   help=f"torch intra-op threads for the run (default {D['threads']}: these models are tiny and a "
                   "second thread only adds latency; 'auto' = torch's default, one per core)")
    add_model_options(p)
    add_data_options(p)
    g = p.add_argument_group("output")
    g.add_argument("--print-batches", action="store_true", help="also print every batch loss, as the lesson does")
    g.add_argument("--json", action="store_true", help="print the whole result as JSON instead")
    g.add_argument("--profile", action="store_true",
                   help="after training, split the mean step time into data/forward/backward/optimizer")
    g.add_argument("--no-isolate", action="store_true",
                   help="train in this process instead of a fresh worker (memory figures then less exact)")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        dataset=args.dataset,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        engine=args.engine,
        lr=args.lr,
        optimizer=args.optimizer,
        hidden=parse_hidden(args.hidden),
        target=args.target,
        scale=args.scale,
        n_samples=args.n_samples,
        n_features=args.n_features,
        n_classes=args.n_classes,
        data_seed=args.data_seed,
        record_batches=args.print_batches or args.json,
        threads=args.threads,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = train(config, isolate=not args.no_isolate, profile=args.profile)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print_lesson_lines(result, batches=args.print_batches)
    print()
    print(summary_text(result))
    return 0


def print_lesson_lines(result: RunResult, *, batches: bool) -> None:
    epochs = len(result.records)
    for record in result.records:
        if batches and record.batch_losses:
            for loss in record.batch_losses:
                print(f"Batch Loss: {loss:.4f}")
        print(f"Epoch [{record.epoch}/{epochs}] Average Loss: {record.loss:.4f}")


def summary_text(result: RunResult) -> str:
    last = result.records[-1]
    timed = [r.time_s for r in result.records[1:]] or [result.records[0].time_s]
    median = statistics.median(timed)
    m = result.memory
    lines = [
        f"engine {result.engine} | dataset {result.dataset} (N={result.n_samples}, {result.n_features} "
        f"features, {result.n_classes} classes) | device {result.device} ({result.device_name})",
        f"batch size {result.batch_size} (asked: {result.batch_spec}) | {result.steps_per_epoch} steps/epoch "
        f"| seed {result.seed} | lr {result.config.lr:g} ({result.config.optimizer})",
        f"final epoch loss {last.loss:.4f} | eval loss {last.eval_loss:.4f} | "
        f"eval accuracy {last.eval_accuracy:.3f}",
        f"time: warm-up epoch {result.warmup_time_s * 1e3:.2f} ms | median epoch (warm-up excluded) "
        f"{median * 1e3:.2f} ms | total {result.total_time_s:.3f} s | "
        f"{result.n_samples / median:,.0f} samples/s",
        f"peak memory {fmt_bytes(result.peak_memory_bytes)} ({result.memory_method})",
        f"tensors: parameters {fmt_bytes(m.parameters)}, gradients {fmt_bytes(m.gradients)}, optimizer state "
        f"{fmt_bytes(m.optimizer_state)}, activations of the largest batch {fmt_bytes(m.activations)}",
    ]
    if result.profile:
        total = sum(result.profile.values()) or 1.0
        parts = ", ".join(f"{k} {v * 1e6:.1f} us ({v / total:.0%})" for k, v in result.profile.items())
        lines.append(f"mean step: {total * 1e6:.1f} us = {parts}")
    return "\n".join(lines)
