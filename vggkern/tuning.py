"""The measured tables conv3x3 follows: implicit_gemm's block tile per layer and batch,
and what algo="auto" runs. A build carries the tables of the GPU run committed when it
was built (csrc/common/conv3x3_tuned.h, written by ``python -m benchmarks.tune
RESULTS.json --write``). ``set_tuned_tables`` replaces them at run time, without a
rebuild, with tables from another run (``python -m benchmarks.tune RESULTS.json --json
TABLES.json``: your own GPU's, say), as does the environment variable
VGGKERN_TUNED_TABLES=TABLES.json at import. The rules that read them are the same
(csrc/common/conv3x3_tuning.h).
"""
from __future__ import annotations

import json
import os

from . import _C

__all__ = ["tuned_tables", "set_tuned_tables"]

ENV_VAR = "VGGKERN_TUNED_TABLES"
TILES = ("128x64", "128x128", "256x128", "256x64", "wg128x128", "wg256x64", "wg128x256", "ws128x256",
         "ws128x128")
DTYPES = ("float32", "float16", "bfloat16")
ALGOS = ("direct", "implicit_gemm")

# Bumped by every set_tuned_tables: what a module remembers of "auto" is keyed on it.
generation = 0


def tuned_tables() -> dict:
    """The tables conv3x3 uses now: {"source": str, "tiles": [...], "auto": [...],
    "run_time": bool} (run_time: set by set_tuned_tables, not the build's). Each tile
    entry: {C, K, H, W, pool, N, tile, tf32}; each auto entry: {dtype, channels_last,
    C, K, H, W, pool, N, algo}. C is the channel count the kernel sees (a multiple of 8)."""
    return _C.tuned_tables()


def _int(entry: dict, key: str, where: str, minimum: int = 1) -> int:
    v = entry.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"set_tuned_tables: expected {where}[{key!r}] to be an int >= {minimum}, got {v!r}")
    if v >= 2**63:  # the tables hold int64_t
        raise ValueError(f"set_tuned_tables: expected {where}[{key!r}] to be an int >= {minimum} that fits in 64 bits, "
                         f"got {v!r}")
    return v


def _bool(entry: dict, key: str, where: str) -> bool:
    v = entry.get(key)
    if not isinstance(v, bool):
        raise ValueError(f"set_tuned_tables: expected {where}[{key!r}] to be a bool, got {v!r}")
    return v


def _choice(entry: dict, key: str, where: str, valid: tuple) -> str:
    v = entry.get(key)
    if v not in valid:
        raise ValueError(f"set_tuned_tables: expected {where}[{key!r}] to be one of {', '.join(valid)}, got {v!r}")
    return v


def _shape(e: dict, where: str) -> tuple:
    c = _int(e, "C", where)
    if c % 8:
        raise ValueError(f"set_tuned_tables: expected {where}['C'] to be a multiple of 8 (the channel count the "
                         f"kernel sees), got {c}")
    return c, _int(e, "K", where), _int(e, "H", where), _int(e, "W", where), _bool(e, "pool", where), \
        _int(e, "N", where)


def _entries(tables: dict, key: str) -> list:
    v = tables.get(key, [])
    if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
        raise ValueError(f"set_tuned_tables: expected tables[{key!r}] to be a list of dicts")
    return v


def _unambiguous(rows: list, name: str, answer_at: int, what: str) -> None:
    # Two entries for one lookup (all but row[answer_at] equal) with different answers:
    # the lookup would silently take the first.
    seen = {}
    for i, row in enumerate(rows):
        j = seen.setdefault(row[:answer_at] + row[answer_at + 1:], i)
        if rows[j][answer_at] != row[answer_at]:
            raise ValueError(f"set_tuned_tables: {name}[{i}] gives {row[answer_at]!r} where {name}[{j}] gives "
                             f"{rows[j][answer_at]!r} for the same {what}")


def set_tuned_tables(tables) -> None:
    """Use these tables from now on, in every thread: a dict as ``tuned_tables()``
    returns it (or ``benchmarks.tune --json`` writes it; "source" names where it came
    from), the path of such a JSON file, or None for the build's own again. Checked
    whole before any of it is used: a bad entry is a ValueError naming it, and the
    tables in use stay as they were. Calls already running finish on the old tables."""
    global generation
    if tables is None:
        _C._set_tuned_tables()
        generation += 1
        return
    if isinstance(tables, (str, os.PathLike)):
        with open(tables) as f:
            try:
                tables = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"set_tuned_tables: {os.fspath(tables)}: not a JSON file ({e})") from None
    if not isinstance(tables, dict):
        raise TypeError(f"set_tuned_tables: expected a dict, a JSON file's path or None, got {type(tables).__name__}")
    unknown = set(tables) - {"source", "tiles", "auto", "run_time"}
    if unknown:
        raise ValueError(f"set_tuned_tables: unknown keys {sorted(unknown)}; expected source, tiles, auto")
    source = tables.get("source", "set at run time")
    if not isinstance(source, str):
        raise ValueError(f"set_tuned_tables: expected tables['source'] to be a str, got {source!r}")
    if "\0" in source:  # a C string in the tables
        raise ValueError(f"set_tuned_tables: expected tables['source'] to be a str without NUL characters, "
                         f"got {source!r}")
    tiles = [_shape(e, f"tiles[{i}]") + (_choice(e, "tile", f"tiles[{i}]", TILES), _bool(e, "tf32", f"tiles[{i}]"))
             for i, e in enumerate(_entries(tables, "tiles"))]
    autos = [(_choice(e, "dtype", f"auto[{i}]", DTYPES), _bool(e, "channels_last", f"auto[{i}]"))
             + _shape(e, f"auto[{i}]") + (_choice(e, "algo", f"auto[{i}]", ALGOS),)
             for i, e in enumerate(_entries(tables, "auto"))]
    _unambiguous(tiles, "tiles", 6, "(C, K, H, W, pool, N, tf32)")
    _unambiguous(autos, "auto", 8, "(dtype, channels_last, C, K, H, W, pool, N)")
    _C._set_tuned_tables(source, tiles, autos)
    generation += 1


if os.environ.get(ENV_VAR):
    try:
        set_tuned_tables(os.environ[ENV_VAR])
    except (OSError, ValueError, TypeError) as e:
        raise ImportError(f"vggkern: {ENV_VAR}={os.environ[ENV_VAR]}: {e}") from e
