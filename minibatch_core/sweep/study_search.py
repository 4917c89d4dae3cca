"""The learning-rate search of a study (``--lr-search``) and its step budgets (``--max-steps``).

Search, per batch size (Shallue et al. 2018 tune every batch size until its best rate is inside the
searched range): after the grid, while the best rate (lowest median steps to target over seeds) sits at
an end of the rates tried, add one rate a grid step beyond that end and train it; stop when the best is
interior, or when the next rate would leave ``[LR_MIN, LR_MAX]`` or ``MAX_EXTENSIONS`` extensions were
made (a bound, said so). Then refine once: the geometric midpoints between the best rate and its
neighbours, so neighbouring batch sizes are not separated by grid spacing alone.

Budget: with ``--max-steps`` every batch size gets that many steps. Otherwise each gets ``--max-epochs``
epochs, and at least as many steps as the smallest batch size needed at its best rate (batch sizes run
smallest first): larger batches take fewer steps to a target, so that many steps is enough for any
batch size that can reach it at a good rate, where an epoch budget gives the full batch one step per
epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

LR_MIN = 1e-6  # bounds of the search on the rate used (after the policy)
LR_MAX = 10.0
MAX_EXTENSIONS = 6  # per batch size, both sides together
DEFAULT_STEP = math.sqrt(10.0)  # the grid step when the grid has one rate


def median_steps(results: list[tuple[float, bool, float | None]]) -> dict[float, float]:
    """{base rate: median steps to target over its seeds}, a run that did not reach it as +inf (the
    study's best-rate rule; a rate whose median seed failed cannot win)."""
    by_lr: dict[float, list[float]] = {}
    for lr, reached, steps in results:
        by_lr.setdefault(lr, []).append(float(steps) if reached and steps is not None else math.inf)
    out = {}
    for lr, values in by_lr.items():
        values = sorted(values)
        n = len(values)
        mid = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
        out[lr] = mid if not math.isnan(mid) else math.inf
    return out


@dataclass
class LrSearch:
    """The search state of one batch size: what was added when and why (the rates tried are the keys of
    the medians each round is given)."""

    factor: float = 1.0  # the policy's multiplier: rate used = base rate x factor
    extensions: int = 0
    refined: bool = False
    outcome: str = ""  # why the search stopped
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def _in_bounds(self, base: float) -> bool:
        return LR_MIN <= base * self.factor <= LR_MAX

    def next_round(self, medians: dict[float, float]) -> tuple[list[float], str] | None:
        """The base rates to train next and why, or None when the search is over (``outcome`` says why)."""
        finite = {lr: m for lr, m in medians.items() if math.isfinite(m)}
        if not finite:
            self.outcome = "no rate reached the target: nothing to search around"
            return None
        lrs = sorted(medians)
        best = min(finite.values())
        tied = sorted(lr for lr, m in finite.items() if m == best)
        if not self.refined:
            new, sides, bounds = [], [], []
            if tied[0] == lrs[0]:
                step = lrs[1] / lrs[0] if len(lrs) > 1 else DEFAULT_STEP
                sides.append(("low", lrs[0] / step))
            if tied[-1] == lrs[-1]:
                step = lrs[-1] / lrs[-2] if len(lrs) > 1 else DEFAULT_STEP
                sides.append(("high", lrs[-1] * step))
            for side, rate in sides:
                rate = float(f"{rate:.4g}")
                if self.extensions >= MAX_EXTENSIONS:
                    bounds.append(f"{MAX_EXTENSIONS} extensions made")
                elif not self._in_bounds(rate):
                    bounds.append(f"the next rate {rate * self.factor:.3g} is outside [{LR_MIN:g}, {LR_MAX:g}]")
                else:
                    new.append((side, rate))
            if new:
                self.extensions += len(new)
                reason = "; ".join(f"best rate {(tied[0] if side == 'low' else tied[-1]) * self.factor:.3g} at the "
                                   f"{side} end of the rates tried: extend to {rate * self.factor:.3g}"
                                   for side, rate in new)
                return self._add([rate for _, rate in new], reason, "extend")
            self.refined = True
            self.outcome = ("interior" if not sides else
                            "stopped at a bound (" + "; ".join(bounds) + "): the best rate is at the end of the "
                            "rates tried")
            below = [lr for lr in lrs if lr < tied[0]]
            above = [lr for lr in lrs if lr > tied[-1]]
            mids = ([math.sqrt(tied[0] * below[-1])] if below else []) + \
                   ([math.sqrt(tied[-1] * above[0])] if above else [])
            mids = [m for m in (float(f"{m:.4g}") for m in mids) if m not in lrs]
            if mids:
                return self._add(mids, f"refine between the best rate {tied[0] * self.factor:.3g} and its "
                                       "neighbours", "refine")
        return None

    def _add(self, rates: list[float], reason: str, kind: str) -> tuple[list[float], str]:
        self.rounds.append({"round": len(self.rounds) + 1, "kind": kind,
                            "lrs": [r * self.factor for r in rates], "base_lrs": rates, "reason": reason})
        return rates, reason

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "extensions": self.extensions, "refined": self.refined,
                "rounds": self.rounds}


def step_budget(max_steps: int | None, max_epochs: int, steps_per_epoch: int,
                floor: int | None) -> tuple[int, str]:
    """(steps a pass may train, the rule that set it). ``floor``: the steps the smallest batch size
    needed at its best rate (None: not known, or this is the smallest)."""
    if max_steps is not None:
        return max_steps, "max steps"
    by_epochs = max_epochs * steps_per_epoch
    if floor is not None and floor > by_epochs:
        return floor, "smallest batch's steps"
    return by_epochs, "max epochs"
