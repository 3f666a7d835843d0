"""``streams bench``: the benchmark suite of a source checkout, with progress and a table of
results (``--json`` for machines). Every figure is a ratio against a baseline measured in
the same run; targets come from the project's issues."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
from pathlib import Path
from typing import Any

from .._core.errors import ConfigError

__all__ = ["add_parser"]

LOOPS = ("asyncio", "uvloop", "trio")


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="run the benchmark suite", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark (framer, metrics, ...); repeatable",
    )
    parser.add_argument(
        "--loop",
        action="append",
        choices=(*LOOPS, "all"),
        help="event loop to measure on; repeatable; 'all' for every one (default: asyncio)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.set_defaults(run=run)


def _benchmarks_package() -> Any:
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "_common.py").exists():
        raise ConfigError(
            "streams bench runs from a source checkout: benchmarks/ is not installed with "
            "the package"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("benchmarks")


def _names(package: Any) -> list[str]:
    return sorted(
        module.name.removeprefix("bench_")
        for module in pkgutil.iter_modules(package.__path__)
        if module.name.startswith("bench_")
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    package = _benchmarks_package()
    common = importlib.import_module("benchmarks._common")
    available = _names(package)
    if args.list:
        print("\n".join(available))
        return 0
    chosen = args.only or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ConfigError(f"no benchmark {', '.join(unknown)}; known: {', '.join(available)}")
    loops = args.loop or ["asyncio"]
    if "all" in loops:
        loops = list(LOOPS)
    console = Console(stderr=True)
    figures: list[Any] = []
    failures: list[str] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for name in chosen:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            for loop in loops:
                task = progress.add_task(f"{name} on {loop}", total=None)
                try:
                    figures += common.run_on_loop(lambda m=module, on=loop: m.measure(on), loop)
                except Exception as exc:
                    failures.append(f"{name} on {loop}: {exc!r}")
                progress.remove_task(task)
    if args.json:
        document = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "figures": [figure.as_dict() for figure in figures],
            "failures": failures,
        }
        print(json.dumps(document, indent=2))
        return 1 if failures else 0
    table = Table(title="streams benchmarks (ratios against baselines from the same run)")
    for column in ("loop", "figure", "value", "baseline", "ratio", "target"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for figure in figures:
        target = ""
        if figure.target is not None:
            sign = ">=" if figure.target_kind == "min" else "<="
            target = f"{sign} {figure.target:g} " + ("[green]ok" if figure.met else "[red]missed")
        baseline = ""
        if figure.baseline is not None:
            baseline = f"{figure.baseline:,.0f} {figure.unit} ({figure.baseline_name})"
        table.add_row(
            figure.loop,
            figure.name,
            f"{figure.value:,.1f} {figure.unit}",
            baseline,
            "" if figure.ratio is None else f"{figure.ratio:.2f}",
            target,
        )
    Console().print(table)
    for failure in failures:
        console.print(f"[red]failed: {failure}")
    return 1 if failures else 0
