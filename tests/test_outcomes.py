"""Time to a target: a seed that never gets there is slower than any, never dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from minibatch_core.analysis.outcomes import _censored_median


@pytest.mark.parametrize(("times", "expected"), [
    ([1.0, 3.0], 2.0),  # every seed got there: the usual median
    ([1.0, np.nan], 1.0),  # half got there: the lower-middle value is known
    ([1.0, 2.0, np.nan], 2.0),
    ([1.0, np.nan, np.nan], np.nan),  # most never got there: no median
    ([np.nan], np.nan),
])
def test_censored_median(times: list[float], expected: float) -> None:
    assert _censored_median(pd.Series(times)) == pytest.approx(expected, nan_ok=True)
