"""Numbers as people read them (times, bytes, ratios). Shared by every presentation layer."""

from __future__ import annotations

import math


def _missing(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def fmt_seconds(s: float | None) -> str:
    if _missing(s):
        return "–"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_bytes(n: float | None) -> str:
    if _missing(n):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


def fmt_ratio(x: float | None) -> str:
    return "–" if _missing(x) else f"{x:.2f}×"


def fmt_num(x: float | None, digits: int = 4) -> str:
    return "–" if _missing(x) else f"{x:.{digits}f}"
