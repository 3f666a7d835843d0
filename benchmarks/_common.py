"""Measurement helpers every benchmark shares: running one function on a chosen event
loop, timing, ratios against a baseline measured in the same run, a printed table and
``--json``.

A benchmark module defines ``async def measure(loop: str) -> list[Figure]`` and calls
:func:`main`; ``python -m benchmarks.bench_NAME [--json] [--loop L ...]`` then runs it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio

__all__ = ["LOOPS", "Figure", "Stopwatch", "main", "ratio", "run_on_loop"]

#: the event loops a benchmark can run on
LOOPS = ("asyncio", "uvloop", "trio")


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One measured figure, with its baseline from the same run when it has one."""

    #: what was measured
    name: str
    #: the measured value
    value: float
    #: its unit (``MB/s``, ``ops/s``, ``bytes``, ``ratio``)
    unit: str
    #: the event loop it was measured on
    loop: str = ""
    #: the baseline's value, when the figure is compared with one
    baseline: float | None = None
    #: what the baseline is
    baseline_name: str = ""
    #: the target the ratio (or the value) should meet, when there is one
    target: float | None = None
    #: ``"min"`` if the figure should be at least the target, ``"max"`` if at most
    target_kind: str = "min"

    @property
    def ratio(self) -> float | None:
        """``value / baseline`` when there is a baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the target is met (on the ratio if there is a baseline)."""
        if self.target is None:
            return None
        measured = self.ratio if self.ratio is not None else self.value
        assert measured is not None
        return measured >= self.target if self.target_kind == "min" else measured <= self.target

    def as_dict(self) -> dict[str, Any]:
        """The figure as JSON-friendly data."""
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``, or 0 when the baseline is 0."""
    return value / baseline if baseline else 0.0


class Stopwatch:
    """Wall-clock time of a block: ``with Stopwatch() as watch: ...; watch.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self._started


def run_on_loop(function: Callable[[], Awaitable[Any]], loop: str) -> Any:
    """Run *function* on *loop* (``asyncio``, ``uvloop`` or ``trio``) and return its result."""
    if loop == "trio":
        return anyio.run(function, backend="trio")
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    return anyio.run(function, backend="asyncio", backend_options=options)


def _format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value:,.0f} B"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def print_table(figures: Sequence[Figure], title: str) -> None:
    """Print *figures* as a plain table."""
    rows = [("loop", "figure", "value", "baseline", "ratio", "target")]
    for figure in figures:
        target = ""
        if figure.target is not None:
            sign = ">=" if figure.target_kind == "min" else "<="
            verdict = "ok" if figure.met else "MISSED"
            target = f"{sign} {figure.target:g} {verdict}"
        rows.append(
            (
                figure.loop,
                figure.name,
                _format_value(figure.value, figure.unit),
                ""
                if figure.baseline is None
                else f"{_format_value(figure.baseline, figure.unit)} ({figure.baseline_name})",
                "" if figure.ratio is None else f"{figure.ratio:.2f}",
                target,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    print(title)
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main(
    measure: Callable[[str], Awaitable[list[Figure]]],
    title: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``--json`` and ``--loop``, run *measure* on each loop, print the results."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--loop",
        action="append",
        choices=(*LOOPS, "all"),
        help="event loop to measure on; repeatable; 'all' for every loop (default: asyncio)",
    )
    args = parser.parse_args(argv)
    loops = args.loop or ["asyncio"]
    if "all" in loops:
        loops = list(LOOPS)
    figures: list[Figure] = []
    for loop in loops:
        figures += run_on_loop(lambda loop=loop: measure(loop), loop)
    if args.json:
        document = {
            "benchmark": title,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "figures": [figure.as_dict() for figure in figures],
        }
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        print_table(figures, title)
    return 0
