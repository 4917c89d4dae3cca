"""``minibatch-bench report DIR``: rebuild a sweep folder's tables, plots and report from its records."""

from __future__ import annotations

import argparse

from minibatch_core.commands import SUMMARIES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help=SUMMARIES["report"],
        description="Read DIR/runs.csv (and profile.csv, env.json, calibration.json when present) and rewrite "
        "summary.csv, summary.md, plots/*.png, report.md and report.html. Nothing is trained.",
    )
    p.add_argument("folder", metavar="DIR",
                   help="a results folder written by `minibatch-bench run` (or `study`: its report is rebuilt)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if (Path(args.folder) / "study.csv").exists():  # a study folder: its own report (no training either)
        from minibatch_core.presentation.study_report import build_study_report

        written = build_study_report(args.folder)
        print(f"rebuilt {args.folder}: report.md, report.html and {len(written) - 2} plots")
        return 0
    from minibatch_core.presentation.report import build

    written = build(args.folder)
    print(f"rebuilt {args.folder}: " + ", ".join(p.name for k, p in written.items() if not k.startswith("plot_"))
          + f" and {sum(k.startswith('plot_') for k in written)} plots")
    return 0
