"""Randomly corrupted copies of valid files fed to ``compare`` (CLI main) and the data loader (``train
--dataset file.csv``): never a traceback (cli.main turns one into "internal error", which fails here),
never exit 0 on a corrupted *current* side unless the corruption left a valid, complete results file.

Seeded, and a failing case prints its seed, kind and the line it changed: the valid results file is made by a
real run, so its times (and the bytes a seed corrupts) differ from machine to machine. The quick version runs a
couple of hundred cases; ``-m slow`` adds the big one.
"""

from __future__ import annotations

import csv
import io
import math
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from minibatch_core.cli import main
from minibatch_core.errors import MinibatchError
from minibatch_core.records.io import load_runs
from minibatch_core.sweep import sweep as sweep_module
from minibatch_core.sweep.sweep import SweepConfig, execute, plan

TOKENS = ["", "abc", "nan", "inf", "-inf", "-1", "1.5", "True", "False", "1e400", "0x10", "\u00e9", " ", '"',
          ",", "1,2", "\n", "99999999999999999999999"]


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setattr(sweep_module, "calibrate", lambda devices, isolate=True: [
        {"workload": "test", "device": "cpu", "step_s": 1e-3, "repeats_step_s": [1e-3], "torch_threads": 1}])
    try:
        folder = tmp_path_factory.mktemp("fuzz") / "valid"
        the_plan = plan(SweepConfig(engines="reference", batch_sizes="32,full", seeds="0,1", epochs=4,
                                    devices="cpu", profile=False))
        execute(the_plan, folder, {"torch_version": "x"}, isolate=False)
        return folder
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory) -> Path:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    path = tmp_path_factory.mktemp("fuzzdata") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


# --- corruptions: bytes -> bytes ------------------------------------------------------------------------

def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def _write(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def _drop_column(data: bytes, rng: random.Random) -> bytes:
    rows = _rows(data)
    k = rng.randrange(len(rows[0]))
    return _write([r[:k] + r[k + 1:] for r in rows])


def _change_type(data: bytes, rng: random.Random) -> bytes:
    rows = _rows(data)
    for _ in range(rng.randint(1, 3)):
        r, c = rng.randrange(1, len(rows)), rng.randrange(len(rows[0]))
        rows[r][c] = rng.choice(TOKENS)
    return _write(rows)


def _lines(data: bytes, rng: random.Random) -> bytes:
    """Delete, duplicate or swap whole lines (the header included)."""
    lines = data.decode("utf-8").splitlines(keepends=True)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    what = rng.choice(["delete", "duplicate", "swap"])
    if what == "delete":
        del lines[i]
    elif what == "duplicate":
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines).encode("utf-8")


CORRUPTIONS = {"truncate": _truncate, "flip": _flip, "drop-column": _drop_column, "change-type": _change_type,
               "lines": _lines}


def _changed(original: bytes, corrupted: bytes) -> str:
    """The first line the corruption changed, as repr: the valid file's times differ from machine to machine,
    so a seed alone does not give another machine the same bytes, and a failure must show them."""
    before, after = original.splitlines(), corrupted.splitlines()
    for n, (a, b) in enumerate(zip(before, after, strict=False), start=1):
        if a != b:
            return f"line {n} was {a!r}, now {b!r}"
    return f"{len(before)} lines, now {len(after)}"


def _cases(n: int, seed: int):
    rng = random.Random(seed)
    kinds = sorted(CORRUPTIONS)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        yield i, kind, random.Random(rng.getrandbits(64))


def _valid_and_complete(path: Path, original: pd.DataFrame) -> str:
    """'' when the corrupted file is still a valid results file holding every run with finite losses
    (e.g. a digit changed in a time): exit 0 is then a legitimate verdict. Otherwise why not."""
    try:
        runs = load_runs(path)
    except MinibatchError as err:
        return f"the loader refuses it ({err}) but compare passed it"
    if set(runs["run_id"]) != set(original["run_id"]):
        return "runs are missing or renamed"
    if not runs["epoch_loss"].map(math.isfinite).all():
        return "a non-finite loss passed"
    return ""


# --- compare ------------------------------------------------------------------------------------------------

def _fuzz_compare(valid: Path, tmp_path: Path, n: int, seed: int, capsys) -> dict[str, int]:
    original = load_runs(valid)
    data = (valid / "runs.csv").read_bytes()
    outcomes: dict[str, int] = {}
    current = tmp_path / "current"
    for i, kind, rng in _cases(n, seed):
        shutil.rmtree(current, ignore_errors=True)
        shutil.copytree(valid, current)
        corrupted = CORRUPTIONS[kind](data, rng)
        (current / "runs.csv").write_bytes(corrupted)
        case = f"case {i} (seed {seed}, {kind}; {_changed(data, corrupted)})"
        code = main(["compare", str(valid), str(current), "--bootstrap", "100"])
        err = capsys.readouterr().err
        assert "internal error" not in err and "Traceback" not in err, f"{case}: {err}"
        assert code in (0, 1, 2), case
        if code == 2:
            assert len(err.strip().splitlines()) == 1, f"{case}: {err}"
        if code == 0 and corrupted != data:
            why = _valid_and_complete(current / "runs.csv", original)
            assert not why, f"{case}: exit 0 on a corrupted current side: {why}"
        outcomes[f"exit {code}"] = outcomes.get(f"exit {code}", 0) + 1
    return outcomes


def test_compare_survives_corrupted_current_files(valid: Path, tmp_path: Path, capsys) -> None:
    outcomes = _fuzz_compare(valid, tmp_path, 150, seed=10, capsys=capsys)
    # most corruptions must be refused; some leave a valid file (a digit of a time changed)
    assert outcomes.get("exit 2", 0) > 75, outcomes


@pytest.mark.slow
def test_compare_survives_corrupted_current_files_big(valid: Path, tmp_path: Path, capsys) -> None:
    outcomes = _fuzz_compare(valid, tmp_path, 400, seed=11, capsys=capsys)
    assert outcomes.get("exit 2", 0) > 200, outcomes


def test_compare_survives_corrupted_env_and_calibration(valid: Path, tmp_path: Path, capsys) -> None:
    current = tmp_path / "current"
    for i, kind, rng in _cases(40, seed=12):
        shutil.rmtree(current, ignore_errors=True)
        shutil.copytree(valid, current)
        name = "env.json" if i % 2 else "calibration.json"
        before = (current / name).read_bytes()
        after = _flip(before, rng) if kind != "truncate" else _truncate(before, rng)
        (current / name).write_bytes(after)
        code = main(["compare", str(valid), str(current), "--bootstrap", "100", "--normalize", "calibration"])
        err = capsys.readouterr().err
        assert "internal error" not in err and code in (0, 1, 2), f"case {i} ({name}: {_changed(before, after)}): {err}"


# --- the data loader through train ----------------------------------------------------------------------

def _fuzz_data(wine_csv: Path, tmp_path: Path, n: int, seed: int, capsys) -> dict[str, int]:
    data = wine_csv.read_bytes()
    outcomes: dict[str, int] = {}
    path = tmp_path / "data.csv"
    for i, kind, rng in _cases(n, seed):
        corrupted = CORRUPTIONS[kind](data, rng)
        path.write_bytes(corrupted)
        code = main(["train", "--dataset", str(path), "--target", "target", "--epochs", "1", "--batch-size",
                     "full", "--no-isolate"])
        err = capsys.readouterr().err
        case = f"case {i} (seed {seed}, {kind}; {_changed(data, corrupted)})"
        assert "internal error" not in err and "Traceback" not in err, f"{case}: {err}"
        assert code in (0, 2), case
        if code == 2:
            assert len(err.strip().splitlines()) == 1, f"{case}: {err}"
        outcomes[f"exit {code}"] = outcomes.get(f"exit {code}", 0) + 1
    return outcomes


def test_data_loader_survives_corrupted_csv(wine_csv: Path, tmp_path: Path, capsys) -> None:
    outcomes = _fuzz_data(wine_csv, tmp_path, 60, seed=20, capsys=capsys)
    assert outcomes.get("exit 2", 0) > 0, outcomes


@pytest.mark.slow
def test_data_loader_survives_corrupted_csv_big(wine_csv: Path, tmp_path: Path, capsys) -> None:
    _fuzz_data(wine_csv, tmp_path, 150, seed=21, capsys=capsys)


# --- shapes no byte-level corruption makes: devices, FIFOs, huge files, JSON of the wrong type, impossible
# times. Each is refused in one line (exit 2) by compare and report, without reading the file to the end ---

def _shape_cases(valid: Path, tmp_path: Path):
    """(name, folder) pairs: a copy of ``valid`` with one shape put in place of one of its files."""
    import os

    from minibatch_core.fsio import MAX_RESULTS_BYTES

    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(valid, folder)
        return folder

    folder = copy("device")
    (folder / "runs.csv").unlink()
    os.symlink("/dev/zero", folder / "runs.csv")
    yield "runs.csv -> /dev/zero", folder
    folder = copy("fifo")
    (folder / "runs.csv").unlink()
    os.mkfifo(folder / "runs.csv")
    yield "runs.csv a FIFO", folder
    folder = copy("sparse")
    with open(folder / "runs.csv", "r+b") as fh:  # a hole: no disk used, above the limit
        fh.truncate(MAX_RESULTS_BYTES + 1)
    yield "runs.csv sparse and huge", folder
    for what, text in (("a list", "[1, 2]"), ("a string", '"x"'), ("a number", "3")):
        folder = copy(f"env-{what.split()[1]}")
        (folder / "env.json").write_text(text)
        yield f"env.json {what}", folder
    folder = copy("calibration")
    (folder / "calibration.json").write_text('[{"device": "cpu", "step_s": "fast", "workload": "x"}]')
    yield "calibration.json with a string step_s", folder
    for label, value in (("negative", "-0.5"), ("inf", "inf"), ("nan", "nan"), ("1e308", "1e308")):
        folder = copy(f"time-{label}")
        frame = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
        frame["epoch_time_s"] = value
        frame.to_csv(folder / "runs.csv", index=False)
        yield f"every epoch_time_s {label}", folder
    folder = copy("memory")
    frame = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    frame["peak_memory_bytes"] = "-1"
    frame.to_csv(folder / "runs.csv", index=False)
    yield "negative peak memory", folder


def test_compare_and_report_refuse_special_files_wrong_json_and_impossible_times(valid: Path, tmp_path: Path,
                                                                                  capsys) -> None:
    for name, folder in _shape_cases(valid, tmp_path):
        code = main(["compare", str(valid), str(folder), "--bootstrap", "100", "--normalize", "calibration"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "internal error" not in err, f"{name}: {err}"
        code = main(["report", str(folder)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "internal error" not in err, f"{name}: {err}"


def test_data_files_that_are_devices_fifos_sparse_or_beyond_float32_are_refused(wine_csv: Path, tmp_path: Path,
                                                                                 capsys) -> None:
    import os

    cases = {}
    os.symlink("/dev/zero", tmp_path / "zero.csv")
    cases["a symlink to /dev/zero"] = tmp_path / "zero.csv"
    os.mkfifo(tmp_path / "fifo.csv")
    cases["a FIFO"] = tmp_path / "fifo.csv"
    sparse = tmp_path / "sparse.csv"
    with open(sparse, "wb") as fh:
        fh.write(wine_csv.read_bytes())
        fh.truncate(3 * 2**30)  # above the data limit, a hole on disk
    cases["sparse, 3 GiB"] = sparse
    holes = tmp_path / "holes.csv"
    with open(holes, "wb") as fh:
        fh.truncate(2**20)  # within the limit, but NUL bytes
    cases["NUL bytes"] = holes
    frame = pd.read_csv(wine_csv)
    frame.loc[3, "alcohol"] = 1e308
    frame.to_csv(tmp_path / "huge.csv", index=False)
    cases["a 1e308 value"] = tmp_path / "huge.csv"
    for name, path in cases.items():
        code = main(["train", "--dataset", str(path), "--target", "target", "--epochs", "1", "--no-isolate"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "internal error" not in err, f"{name}: {err}"
