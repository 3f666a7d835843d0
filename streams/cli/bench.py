"""``streams bench``: the benchmark suite of a source checkout, with progress and tables of
results (``--json`` for machines, ``--plot FILE.png`` for a picture of the ratios).

With no ``--only``, it runs the whole comparison (``benchmarks/bench_suite.py``): every
backend and the wrapped stack against the baselines (raw TCP, a TCP connection per
exchange, a bare asyncssh channel, httpx with hypercorn, grpcio, a minimal h2 driver, the
Go yamux and spdystream peers) measured in the same run. Every figure is a ratio against a
baseline measured in the same run; targets come from the project's issues. A baseline whose
package is missing is skipped with the extra to install (``pip install 'streams[bench]'``).
``--only NAME`` runs one of the older focused benchmarks (framer, http2, metrics, ...)."""

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
SUITE = "suite"


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="run the benchmark suite", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this focused benchmark (framer, metrics, ...); repeatable",
    )
    parser.add_argument(
        "--loop",
        action="append",
        choices=(*LOOPS, "all"),
        help="event loop to measure on; repeatable; 'all' for every one (default: asyncio)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the suite's ratios into a PNG")
    parser.add_argument(
        "--quick", action="store_true", help="the suite with small counts: about a minute a loop"
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--subject",
        action="append",
        metavar="NAME",
        help="the suite measures only this backend or baseline (repeatable)",
    )
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
    package = _benchmarks_package()
    available = _names(package)
    if args.list:
        print("\n".join(available))
        return 0
    if not args.only or args.only == [SUITE]:
        return _run_suite(args)
    unknown = sorted(set(args.only) - set(available))
    if unknown:
        raise ConfigError(f"no benchmark {', '.join(unknown)}; known: {', '.join(available)}")
    return _run_focused(args)


def _run_suite(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    suite = importlib.import_module("benchmarks.bench_suite")
    report_module = importlib.import_module("benchmarks._report")
    console = Console(stderr=True)
    loops, sizes = suite.chosen_loops(args), suite.chosen_sizes(args)
    if not console.is_terminal:
        # a log (CI, a file): one line per step instead of a live display
        report = suite.run_suite(
            loops,
            sizes,
            only=args.subject,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
        )
    else:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("starting", total=None)
            report = suite.run_suite(
                loops,
                sizes,
                only=args.subject,
                progress=lambda text: progress.update(task, description=text),
            )
    status: int = report_module.emit(report, json_output=args.json, plot=args.plot)
    return status


def _run_focused(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    common = importlib.import_module("benchmarks._common")
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
        for name in args.only:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            if not hasattr(module, "measure"):
                failures.append(f"{name}: run it as python -m benchmarks.bench_{name}")
                continue
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
