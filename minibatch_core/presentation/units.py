"""Kept for imports written before ``labels``: the number formatters now live in ``presentation.labels``."""

from __future__ import annotations

from minibatch_core.presentation.labels import fmt_bytes, fmt_num, fmt_ratio, fmt_seconds

__all__ = ["fmt_bytes", "fmt_num", "fmt_ratio", "fmt_seconds"]
