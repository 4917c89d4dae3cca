"""Where ``run`` writes: the output folder it claims (a new timestamped one by default, or --out), what it
may replace there, and the ``results/latest`` link."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from minibatch_core.errors import MinibatchError

DEFAULT_ROOT = Path("results")
LATEST = "latest"


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# what `run` writes into its folder: the only files --overwrite replaces
OWN_FILES = ("runs.csv", "profile.csv", "calibration.json", "env.json", "summary.csv", "summary.md",
             "scaling.csv", "report.md", "report.html")


def _legacy_run_folder(env: dict) -> bool:
    """env.json of a sweep written before the folder marker: its settings and argv, not a count's kind."""
    return isinstance(env.get("sweep"), dict) and "argv" in env and "kind" not in env and "study" not in env


def choose_folder(out: str | None, overwrite: bool = False) -> tuple[Path, bool]:
    """The folder to write (not yet created) and whether it is the default, timestamped one."""
    from minibatch_core.fsio import claim_out_folder

    if out:
        folder = Path(out)
        if (folder / "runs.csv").exists() and not overwrite:
            raise MinibatchError(f"--out {out!r} already holds a sweep (runs.csv); refusing to overwrite it: "
                                 f"choose a new folder, finish it with --resume {out}, or add --overwrite")
        claim_out_folder(folder, "run", marker_files=("env.json",), overwrite=overwrite, legacy=_legacy_run_folder)
        _check_writable(folder, f"--out {out!r}")
        return folder, False
    _check_writable(DEFAULT_ROOT, f"the default output folder {str(DEFAULT_ROOT)!r} (in {Path.cwd()})")
    stamp = _timestamp()
    folder, n = DEFAULT_ROOT / stamp, 1
    while folder.exists():  # two sweeps in the same second: never share a folder
        n += 1
        folder = DEFAULT_ROOT / f"{stamp}-{n}"
    return folder, True


def _check_writable(folder: Path, what: str) -> None:
    """Before anything trains: a sweep that cannot write its results must not spend minutes first."""
    from minibatch_core.fsio import folder_problem

    problem = folder_problem(folder)
    if problem:
        raise MinibatchError(f"{what} cannot be written: {problem} (choose another folder with --out)")


def point_latest(folder: Path) -> bool:
    """results/latest -> folder, as a relative symlink replaced atomically. False where not possible."""
    link = folder.parent / LATEST
    tmp = folder.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(folder.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
        return True
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        return False
