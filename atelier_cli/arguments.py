"""Argument types that name the allowed range, and a parser whose errors are one line.

A user's mistake on the command line gets `atelier generate: argument --steps: ...` and exit
status 2 from argparse, before anything is sent; never a traceback from deeper down (protobuf's
range checks, a missing file). The ranges are the wire's (docs/API.md, "Validation"); what the
gateway's settings narrow further (most steps, largest side) it reports itself.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


class Parser(argparse.ArgumentParser):
    """argparse's parser, with its error as one line (the usage block stays behind --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def whole(lo: int, hi: int | None = None):
    """A whole number in [lo, hi]; without hi, at least lo (and within the wire's uint32)."""
    expected = f"a whole number of at least {lo}" if hi is None else f"a whole number from {lo} to {hi}"
    top = UINT32_MAX if hi is None else hi

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= top:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value

    parse.__name__ = "whole number"
    return parse


def seed(text: str) -> int:
    """A seed: what the request's uint64 `seeds` holds."""
    return whole(0, UINT64_MAX)(text)


def number(lo: float, hi: float = math.inf, *, above: bool = False):
    """A finite number in [lo, hi], or (lo, hi] with `above`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        low_ok = value > lo if above else value >= lo
        if not (math.isfinite(value) and low_ok and value <= hi):
            low = f"above {lo:g}" if above else f"at least {lo:g}"
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a number {low}" + (f" and at most {hi:g}" if math.isfinite(hi) else ""))
        return value

    parse.__name__ = "number"
    return parse


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 64x64") from None
    if not (1 <= w <= UINT32_MAX and 1 <= h <= UINT32_MAX):
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be at least 1")
    return w, h


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def consecutive_seeds(seeds: list[int], count: int) -> list[int]:
    """The seeds of `--seed S --count N`: S, S+1, ..., S+N-1 (the way batch UIs number a batch).

    Several --seed values are the job's seeds; --count must then be absent or their number.
    Raises ValueError naming the conflict.
    """
    if not count or not seeds:
        return list(seeds)
    if len(seeds) == 1:
        first = seeds[0]
        if first + count - 1 > UINT64_MAX:
            raise ValueError(f"--seed {first} --count {count}: the last seed would pass {UINT64_MAX}")
        return [first + i for i in range(count)]
    if count != len(seeds):
        raise ValueError(f"--count {count} with {len(seeds)} --seed values: give one --seed (the first of "
                         f"{count} consecutive seeds) or {count} of them")
    return list(seeds)
