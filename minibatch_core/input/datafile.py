"""A user's CSV/Parquet file read and checked as a table, with pandas only (no torch).

Kept apart from ``data.py`` so that commands can check a file, and fail in one line, before they pay
for starting torch or worker processes.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minibatch_core.errors import MinibatchError

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Table:
    """Data as NumPy arrays, without torch: a checked file (finite float64 features, labels encoded 0..k-1
    in sorted order of their values), or a bundled or synthetic set (``data.load_table``)."""

    name: str
    features: np.ndarray  # (N, F) float64, every value finite; (N, C, H, W) for a bundled image set
    codes: np.ndarray  # (N,) int64
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]  # class_names[i] is the label value that became class i
    notes: tuple[str, ...] = ()  # what was changed on the way in (one line each), for the user


def read_table(path: str | Path, target: str | None) -> Table:
    """Read and check a data file; every problem is one ``MinibatchError`` line naming the file."""
    import pandas as pd

    path = Path(path)
    where = repr(str(path))
    if not path.exists() and not path.is_symlink():
        raise MinibatchError(f"data file {where} does not exist")
    if target is None:
        raise MinibatchError(f"data file {where} needs --target COLUMN naming the label column")
    is_csv = path.suffix.lower() not in PARQUET_SUFFIXES
    check_data_bounds(path, is_csv)
    if is_csv:
        _refuse_duplicate_header(path)
    try:
        frame = pd.read_parquet(path) if not is_csv else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise MinibatchError(f"data file {where} is empty") from None
    except Exception as err:  # parser errors come in many types; all mean "unreadable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MinibatchError(f"data file {where} could not be read: {first}") from None
    if frame.shape[0] == 0:
        raise MinibatchError(f"data file {where} is empty (no rows)")
    notes: list[str] = []
    if is_csv and _is_pandas_index(frame, target):
        notes.append(f"note: data file {where}: dropped its first column, unnamed and holding 0..{len(frame) - 1} "
                     "(the row index pandas writes by default; to_csv(index=False) avoids it)")
        frame = frame.drop(columns=[frame.columns[0]])
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20]))
        raise MinibatchError(f"target column {target!r} is not in {where} (columns: {cols})")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise MinibatchError(f"data file {where} has no feature columns besides {target!r}")
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise MinibatchError(
            f"data file {where} has non-numeric feature columns: {', '.join(non_numeric[:10])} "
            "(encode them as numbers first)"
        )
    missing = frame.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        listed = ", ".join(f"{c} ({n})" for c, n in missing.items())
        raise MinibatchError(f"data file {where} has missing values in: {listed}")
    values = features.to_numpy(dtype=np.float64)
    infinite = np.isinf(values).sum(axis=0)
    if infinite.any():
        listed = ", ".join(f"{c} ({n})" for c, n in zip(features.columns, infinite, strict=True) if n)
        raise MinibatchError(f"data file {where} has infinite values (inf/-inf) in: {listed}")
    huge = (np.abs(values) > FLOAT32_MAX).sum(axis=0)
    if huge.any():  # finite in float64, inf in the models' float32: the run would diverge at once
        listed = ", ".join(f"{c} ({n})" for c, n in zip(features.columns, huge, strict=True) if n)
        raise MinibatchError(f"data file {where} has values beyond float32's range (|x| > 3.4e38, infinite in "
                             f"the models' dtype) in: {listed}")
    # label-encode every target (numeric ones too) so that classes are exactly 0..k-1
    classes, codes = np.unique(frame[target].to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise MinibatchError(f"target column {target!r} in {where} has {len(classes)} class; at least 2 are needed")
    return Table(path.name, values, codes.reshape(-1).astype(np.int64), tuple(map(str, features.columns)),
                 tuple(map(str, classes)), tuple(notes))


FLOAT32_MAX = float(np.finfo(np.float32).max)
# bytes of memory per feature value while a file is read and prepared: pandas' frame, the float64 array,
# the float32 tensor and scaling copies
BYTES_PER_VALUE = 32


def check_data_bounds(path: Path, is_csv: bool) -> None:
    """Before the file is parsed: a regular file (no device, FIFO; symlinks followed) of at most
    ``fsio.data_limit()`` bytes, whose estimated size in memory fits what the machine has free."""
    from minibatch_core.fsio import DATA_LIMIT_ENV, available_memory, data_limit, regular_file, size_text

    real = regular_file(path, limit=data_limit(), what="data file", override=DATA_LIMIT_ENV)
    rows, columns = _estimated_shape(real, is_csv)
    need = rows * columns * BYTES_PER_VALUE
    free = available_memory()
    if need > free:
        raise MinibatchError(f"data file {str(path)!r}: about {rows:,} rows x {columns:,} columns would need about "
                             f"{size_text(need)} of memory to load, and {size_text(free)} is available: refused "
                             "(use a sample of the file)")


def _estimated_shape(path: Path, is_csv: bool) -> tuple[int, int]:
    """(rows, columns): exact for Parquet (its footer), estimated for CSV from its first 64 KiB."""
    if not is_csv:
        try:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            return int(meta.num_rows), int(meta.num_columns)
        except Exception:  # noqa: BLE001 - not readable as Parquet: pandas says why, in its own words
            return 0, 0
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(65536)
    if b"\0" in head:  # a sparse or binary file: no text CSV holds NUL bytes
        raise MinibatchError(f"data file {str(path)!r} holds NUL bytes: not a text CSV")
    lines = head.count(b"\n")
    first = head.split(b"\n", 1)[0]
    columns = first.count(b",") + 1
    if lines == 0:  # one line without end in 64 KiB: no row shorter than it
        return max(1, size // max(1, len(head))), columns
    return max(1, int(size / (len(head) / lines))), columns


def _refuse_duplicate_header(path: Path) -> None:
    """pandas silently renames a repeated column ``a`` to ``a.1``; the header as written tells them apart
    from a column really called ``a.1``. Empty names are skipped: pandas gives each its own name."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # pandas reports an unreadable file in its own words
    repeated = [name for name, n in Counter(h.strip() for h in header).items() if n > 1 and name]
    if repeated:
        raise MinibatchError(f"data file {str(path)!r} has duplicate column names: {', '.join(repeated[:10])} "
                             "(give every column its own name)")


def _is_pandas_index(frame, target: str) -> bool:
    """``DataFrame.to_csv`` writes the row index as a first column with an empty header, which pandas
    reads back as ``Unnamed: 0``; it holds 0..N-1 and would otherwise be trained on as a feature."""
    first = frame.columns[0]
    if first != "Unnamed: 0" or first == target or frame.shape[1] < 2:
        return False
    column = frame[first]
    import pandas as pd

    return bool(pd.api.types.is_integer_dtype(column) and np.array_equal(column.to_numpy(), np.arange(len(frame))))
