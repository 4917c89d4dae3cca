"""Where a command writes: the output folder it claims (a new timestamped one by default, or --out), what
``run`` may replace there, and its ``results/latest`` link."""

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


def claim_folder(out: str | os.PathLike | None, command: str, *, result: str, holding: str,
                 marker_files: tuple[str, ...], legacy, overwrite: bool = False, prefix: str = "",
                 hint: str = "") -> tuple[Path, bool]:
    """The folder ``command`` writes (not yet created) and whether it is the default, timestamped one
    (``results/PREFIXSTAMP``): ``--out`` must not hold the command's ``result`` file already (that is
    ``holding``) unless ``overwrite``, nor anything ``fsio.claim_out_folder`` refuses; either folder must be
    writable. Checked before anything trains."""
    from minibatch_core.fsio import claim_out_folder

    if out:
        folder, shown = Path(out), str(out)
        if (folder / result).exists() and not overwrite:
            raise MinibatchError(f"--out {shown!r} already holds {holding}; refusing to overwrite it: choose a new "
                                 f"folder{hint}, or add --overwrite")
        claim_out_folder(folder, command, marker_files=marker_files, overwrite=overwrite, legacy=legacy)
        _check_writable(folder, f"--out {shown!r}")
        return folder, False
    _check_writable(DEFAULT_ROOT, f"the default output folder {str(DEFAULT_ROOT)!r} (in {Path.cwd()})")
    stamp = prefix + _timestamp()
    folder, n = DEFAULT_ROOT / stamp, 1
    while folder.exists():  # two commands in the same second: never share a folder
        n += 1
        folder = DEFAULT_ROOT / f"{stamp}-{n}"
    return folder, True


def choose_folder(out: str | None, overwrite: bool = False) -> tuple[Path, bool]:
    """``run``'s folder (see ``claim_folder``)."""
    return claim_folder(out, "run", result="runs.csv", holding="a sweep (runs.csv)", marker_files=("env.json",),
                        legacy=_legacy_run_folder, overwrite=overwrite,
                        hint=f", finish it with --resume {out}")


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
