"""How plots tell series apart: colours, line styles, markers and hatches.

Batch sizes get Okabe-Ito colours that stay distinguishable for colour-blind readers and in greyscale
(each also has its own line style and marker); the values of any other swept axis get line styles.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import seaborn as sns

BATCH_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
PHASE_COLORS = ["#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854"]
# line styles for the values of the other swept axes (lr, hidden, ...): solid first, then dashes
VARIANT_STYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 3))]
HATCHES = {"-": None, "--": "//", ":": "..", "-.": "xx"}


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str
    marker: str


def palette(n: int) -> list[str]:
    """n distinct colours: the colour-blind-safe eight, or evenly spaced hues beyond eight."""
    return BATCH_COLORS[:n] if n <= len(BATCH_COLORS) else list(sns.color_palette("husl", n).as_hex())


def series_styles(order: list[str], first: dict[str, str], variant: dict[str, str]) -> dict[str, Style]:
    """A style per series (e.g. batch size x lr): colour and marker by its first part (batch size or
    engine), line style by its variant (or by the first part when nothing else varies), so every
    combination is told apart and each swept axis maps to one visual channel."""
    firsts = list(dict.fromkeys(first[s] for s in order))
    variants = list(dict.fromkeys(variant[s] for s in order))
    colors = palette(len(firsts))
    out = {}
    for s in order:
        i, j = firsts.index(first[s]), variants.index(variant[s])
        dash = VARIANT_STYLES[j % len(VARIANT_STYLES)] if len(variants) > 1 else LINESTYLES[i % len(LINESTYLES)]
        out[s] = Style(colors[i], dash, MARKERS[i % len(MARKERS)])
    return out


def hatch(linestyle) -> str | None:
    """A bar's hatching for a series' line style (bars have no line style)."""
    return HATCHES.get(linestyle, "\\\\") if isinstance(linestyle, str) else "++"


def variant_count(runs: pd.DataFrame) -> int:
    return len(runs.attrs.get("variant_order", [""]))


def styles_of(runs: pd.DataFrame, kind: str = "series") -> dict[str, Style]:
    """``kind`` "series" (batch size x variant) or "engine_series" (engine x variant), from
    ``plotkit.prepare``."""
    order = runs.attrs[f"{kind}_order"]
    head = "batch" if kind == "series" else "engine"
    pairs = runs.drop_duplicates(kind).set_index(kind)
    return series_styles(order, pairs[head].to_dict(), pairs["variant"].to_dict())
