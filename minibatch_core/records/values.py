"""The values of a sweep axis as users write them: a CLI string ``"a,b"`` or a TOML list -> validated values.

``records.axes`` puts one parser per axis in its table; the study's own axes (``records.study_axes``) reuse
the list syntax. Nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import MAX_SEED, check_lr

MAX_SEEDS = 1_000_000  # seeds one list may expand to (far above any plan run without --yes)

# --- list parsing: a CLI string "a,b" or a TOML list -> validated values --------------------------------


def items(name: str, value: Any) -> list[Any]:
    """A comma-separated string or a list/tuple -> a flat list of non-empty items."""
    if isinstance(value, str):
        found: list[Any] = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        found = [p.strip() if isinstance(p, str) else p for p in value]
        found = [p for p in found if p != ""]
    else:
        found = [value]
    if not found:
        raise MinibatchError(f"{name} is empty: give at least one value")
    return found


def unique(values: Iterable[Any]) -> tuple[Any, ...]:
    """The distinct values in first-seen order (equal values are one, as ``==`` says: 1 and 1.0). By hash:
    comparing each value with every one kept took 52 s to refuse `run --seeds 0-99999`."""
    values = list(values)
    try:
        return tuple(dict.fromkeys(values))
    except TypeError:  # an unhashable value (a list): compared one by one
        out: list[Any] = []
        for v in values:
            if v not in out:
                out.append(v)
        return tuple(out)


def parse_int(name: str, value: Any, minimum: int) -> int:
    """An integer >= minimum from an int or its text; bools, fractions and words are refused."""
    number: int | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    else:
        # int() itself refuses some of what \s matches (U+001E), so only the matched digits reach it
        match = re.fullmatch(r"\s*(\d+)\s*", str(value))
        number = int(match.group(1)) if match else None
    if number is None or number < minimum:
        raise MinibatchError(f"{name} {value!r} is not valid: use an integer >= {minimum}")
    return number


def parse_seed(name: str) -> Callable[[Any], int]:
    """One seed torch accepts (an integer from 0 to 2**63-1); a range or a list is not one seed."""
    def parse(value: Any) -> int:
        seed = parse_int(name, value, 0)
        if seed > MAX_SEED:
            raise MinibatchError(f"{name} {value!r} is not valid: use an integer from 0 to 2**63-1 ({MAX_SEED})")
        return seed

    return parse


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``"0-9"``, ``"0,1,2"``, ``"0-2,7"`` or a list of ints -> distinct non-negative ints, in order."""
    bad = "use non-negative integers, e.g. 0,1,2 or 0-9"
    seeds: list[int] = []
    for item in items("seeds", value):
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise MinibatchError(f"seed {item!r} is not valid: {bad}")
        if isinstance(item, (int, float)):
            if not 0 <= item <= MAX_SEED:
                raise MinibatchError(f"seed {item!r} is not valid: {bad}, at most 2**63-1")
            seeds.append(int(item))
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", str(item).strip())
        if not match:
            raise MinibatchError(f"seed {item!r} is not valid: {bad}")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise MinibatchError(f"seed range {item!r} is empty: write it low-high, e.g. 0-9")
        if hi > MAX_SEED:
            raise MinibatchError(f"seed {hi} is not valid: seeds go from 0 to 2**63-1 ({MAX_SEED})")
        if hi - lo + 1 > MAX_SEEDS:  # never expanded: a range of 10**12 seeds would fill the memory first
            raise MinibatchError(f"seed range {item!r} holds {hi - lo + 1:,} seeds, more than the {MAX_SEEDS:,} "
                                 "a plan may hold")
        seeds.extend(range(lo, hi + 1))
        if len(seeds) > MAX_SEEDS:
            raise MinibatchError(f"seeds {value!r} hold more than the {MAX_SEEDS:,} seeds a plan may hold")
    return unique(seeds)


def parse_lrs(value: Any) -> tuple[float, ...]:
    return unique(check_lr(item, plural=True) for item in items("lrs", value))


def parse_widths(item: Any) -> tuple[int, ...]:
    """``"10,10"``, ``"10-10"``, ``"10x10"`` or ``[10, 10]`` -> (10, 10)."""
    # every separator stands between two widths: "10,x" and "10,,10" are refused, not read as (10,)
    parts: list[Any] = list(item) if isinstance(item, (list, tuple)) else re.split(r"[,x-]", str(item).strip())
    # stripped before int(), which refuses some characters str.strip() removes (U+001E)
    parts = [p.strip() if isinstance(p, str) else p for p in parts]
    ok = bool(parts) and all((isinstance(p, int) and not isinstance(p, bool) and p >= 1) or
                             (isinstance(p, str) and p.isdecimal() and int(p) >= 1) for p in parts)
    if not ok:
        raise MinibatchError(f"hidden widths {item!r} are not valid: use positive integers, e.g. 10,10")
    return tuple(int(p) for p in parts)


def parse_hidden_list(value: Any) -> tuple[tuple[int, ...], ...]:
    """One architecture (``"10,10"``, ``[10, 10]``) or several (``["10,10", "32,32"]``, ``[[10,10],[32]]``,
    ``"10,10;32,32"``)."""
    if isinstance(value, str):
        specs: list[Any] = [s for s in value.split(";") if s.strip()]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        specs = [value]
    elif isinstance(value, (list, tuple)):
        specs = list(value)
    else:
        specs = [value]
    if not specs:
        raise MinibatchError("hidden is empty: give widths, e.g. 10,10")
    return unique(parse_widths(s) for s in specs)


def hidden_label(hidden: Iterable[int]) -> str:
    """``(10, 10)`` -> ``"10-10"``: how runs.csv writes an architecture."""
    return "-".join(str(w) for w in hidden)


def one_of(name: str, accepted: Iterable[str]) -> Callable[[Any], str]:
    accepted = tuple(accepted)

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in accepted:
            raise MinibatchError(f"{name} {value!r} is not known: use one of {', '.join(accepted)}")
        return text

    return parse


def named(name: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise MinibatchError(f"{name} {value!r} is not valid: give a name")
        return value.strip()

    return parse


def optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def device_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MinibatchError(f"device {value!r} is not valid: use cpu, cuda, cuda:N or auto")
    return value.strip().lower()


def engine_name(value: Any) -> str:
    from minibatch_core.engines import engine_names  # the registry's names only: no engine is imported

    name = str(value).strip()
    if name not in engine_names():
        raise MinibatchError(f"unknown engine {name!r}: use one of {', '.join(engine_names())}")
    return name


def engine_list(value: Any) -> tuple[str, ...]:
    """A list of engines; ``all`` = every registered engine, ``default`` (or nothing) = every single-process
    one (all but ddp), in the registry's order."""
    from minibatch_core.engines import default_engine_names, engine_names

    if value in ((), [], None, "", "default") or (isinstance(value, (list, tuple)) and list(value) == ["default"]):
        return tuple(default_engine_names())
    if value == "all" or (isinstance(value, (list, tuple)) and list(value) == ["all"]):
        return tuple(engine_names())
    return unique(engine_name(v) for v in items("engines", value))
