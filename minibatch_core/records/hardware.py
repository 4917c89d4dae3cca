"""A configuration measured on two kinds of hardware is two configurations, not one sample.

Runs of one sweep or study can come from several machines (``--executor ray``). Where the runs of one
configuration were trained on more than one kind of device (``device_name``: the CPU model or GPU name),
their ``device`` gets the hardware appended (``cpu [AMD EPYC 7B13]``), so every table, fit and verdict that
groups by the identity columns keeps them apart. Files from one kind of hardware are left as they are.
"""

from __future__ import annotations

import pandas as pd


def split_by_hardware(frame: pd.DataFrame, key: str = "config_id") -> pd.DataFrame:
    """``frame`` with ``device`` made distinct per hardware kind where ``key`` spans several kinds."""
    if frame.empty or not {"device", "device_name", key} <= set(frame.columns):
        return frame
    names = frame["device_name"].fillna("").astype(str)
    kinds = names.groupby(frame[key]).transform("nunique")
    mixed = kinds > 1
    if not mixed.any():
        return frame
    out = frame.copy()
    out["device"] = out["device"].astype(str)
    out.loc[mixed, "device"] = out.loc[mixed, "device"] + " [" + names[mixed] + "]"
    return out
