"""Data-parallel scaling: the plot (time per epoch and efficiency against W) and the report's findings."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from minibatch_core.presentation.labels import fmt_seconds  # noqa: E402
from minibatch_core.presentation.plotkit import DPI, save  # noqa: E402
from minibatch_core.presentation.plots import Plot  # noqa: E402

TITLE = "Time per epoch and scaling efficiency vs workers"
CAPTION = ("Left: median epoch time (warm-up excluded) at each number of data-parallel workers W, global batch "
           "fixed; right: scaling efficiency = samples/s at W ÷ (W × samples/s at W=1), 100% = perfect. Dotted: "
           "the share of the epoch spent in the gradient all-reduce.")


def _label(row: pd.Series) -> str:
    batch = "full" if row["batch_spec"] == "full" else row["batch_spec"]
    return f"{row['engine']} · {row['dataset']} · {row['device']} · batch {batch}"


def scaling_plot(table: pd.DataFrame, path: Path) -> Plot:
    data = table.assign(line=table.apply(_label, axis=1), epoch_ms=table["epoch_time_median_s"] * 1e3)
    workers = sorted(data["workers"].unique())
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.95):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=DPI)
        sns.lineplot(data=data, x="workers", y="epoch_ms", hue="line", marker="o", ax=left)
        left.set(xlabel="workers W", ylabel="median epoch time (ms)", title="Time per epoch")
        left.set_ylim(bottom=0)
        sns.lineplot(data=data, x="workers", y="scaling_efficiency", hue="line", marker="o", ax=right,
                     legend=False)
        sns.lineplot(data=data, x="workers", y="allreduce_share", hue="line", marker="s", ax=right,
                     legend=False, linestyle=":")
        right.axhline(1.0, color="grey", linewidth=0.8)
        right.set(xlabel="workers W", ylabel="efficiency (solid), all-reduce share (dotted)",
                  title="Scaling efficiency and communication share")
        right.yaxis.set_major_formatter(PercentFormatter(1.0))
        right.set_ylim(0, max(1.05, float(data["scaling_efficiency"].max()) * 1.1))
        for ax in (left, right):
            ax.set_xticks(workers)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        left.legend(title=None, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.18), ncol=2)
        fig.subplots_adjust(wspace=0.32)
        fig.suptitle(TITLE, fontweight="bold")
        return Plot("scaling", TITLE, CAPTION, save(fig, path))


def findings(table: pd.DataFrame) -> list[str]:
    """Per configuration: the efficiency reached at each W > 1 and what limited it."""
    out = []
    for _, group in table.groupby(["engine", "dataset", "device", "batch_spec"], sort=False):
        base = group[group["workers"] == 1]
        head = _label(group.iloc[0])
        parts = []
        for _, r in group[group["workers"] > 1].iterrows():
            if pd.isna(r["scaling_efficiency"]):
                parts.append(f"W={r['workers']}: {fmt_seconds(r['epoch_time_median_s'])}/epoch (no W=1 run to "
                             "compare with)")
                continue
            share_one = f" (W=1: {base['allreduce_share'].iloc[0]:.0%})" if not base.empty else ""
            parts.append(f"W={r['workers']}: {fmt_seconds(r['epoch_time_median_s'])}/epoch, speedup "
                         f"{r['speedup']:.2f}×, efficiency {r['scaling_efficiency']:.0%}; the gradient "
                         f"all-reduce took {r['allreduce_share']:.0%} of the epoch{share_one}")
        if parts:
            out.append(f"{head} — " + "; ".join(parts) + ".")
    return out
