"""User specs ``package.module:function`` / ``path/file.py:function``: parsed, located and hashed without
importing anything (no torch), so the CLI refuses a bad one in well under a second.

A spec is resolved with the standard library: a module spec with ``pkgutil.resolve_name``, a file spec
by importing the file by path (``importlib.util.spec_from_file_location``). Its *content hash* (of the
file, or of the module's source file) goes into the configuration identity: a changed model file is a
different configuration, so compare never matches two different models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path

from minibatch_core.errors import MinibatchError

BUILTIN_MODELS = ("mlp", "linear", "cnn")
MODEL_ACCEPTED = "mlp, linear, cnn, package.module:function or path/to/file.py:function"
_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_user_spec(text: str) -> bool:
    """``x:y`` where x is a .py file or a dotted module name and y a dotted attribute."""
    if ":" not in text:
        return False
    where, _, attr = text.rpartition(":")
    return bool(where) and bool(_DOTTED.fullmatch(attr)) and (
        where.endswith(".py") or bool(_DOTTED.fullmatch(where)))


def split_spec(spec: str) -> tuple[str, str]:
    where, _, attr = spec.rpartition(":")
    return where, attr


def is_file_spec(spec: str) -> bool:
    return split_spec(spec)[0].endswith(".py")


def normalize_user_spec(what: str, value: object, accepted: str) -> str:
    """A user spec as recorded: whitespace stripped, a file path normalized (``./a//b.py`` -> ``a/b.py``).
    Refused (one line) when it has no ``:``, or its file or module does not exist."""
    text = str(value).strip()
    if not is_user_spec(text):
        raise MinibatchError(f"{what} {value!r} is not valid: use {accepted}")
    where, attr = split_spec(text)
    if where.endswith(".py"):
        where = os.path.normpath(where)
        if not Path(where).is_file():
            raise MinibatchError(f"{what} {value!r}: file {where!r} does not exist (use {accepted})")
    elif _module_origin(where) is None:
        raise MinibatchError(f"{what} {value!r}: module {where!r} cannot be found on the Python path "
                             f"(use {accepted})")
    return f"{where}:{attr}"


def parse_model_spec(value: object) -> str:
    """``mlp`` | ``linear`` | ``cnn`` (any case), or a user factory spec, normalized."""
    text = str(value).strip() if value is not None else ""
    if text.lower() in BUILTIN_MODELS:
        return text.lower()
    if not text:
        raise MinibatchError(f"model {value!r} is not valid: use {MODEL_ACCEPTED}")
    return normalize_user_spec("model", text, MODEL_ACCEPTED)


def _module_origin(module: str) -> str | None:
    """The source file of a module, found without importing it (only its parent packages)."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError, AttributeError):
        return None
    if found is None:
        return None
    return found.origin if found.origin and found.origin not in ("built-in", "frozen") else ""


def source_hash(spec: str) -> str:
    """12 hex digits of the sha256 of the spec's source file; empty for built-ins (versioned with the
    package: old result folders, which have no hash, keep matching them)."""
    if spec.lower() in BUILTIN_MODELS or not is_user_spec(spec):
        return ""
    where, _ = split_spec(spec)
    path = where if where.endswith(".py") else _module_origin(where)
    if not path:
        return ""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return ""
