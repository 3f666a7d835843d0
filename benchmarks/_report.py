"""How a suite run is shown: rich tables for people, JSON for machines, a PNG of the
ratios against their targets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bench_suite import Report

__all__ = ["describe", "emit", "plot", "verdict"]


def _number(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def describe(row: dict[str, Any]) -> str:
    """A comparison in words: ``framer open-echo-close, one at a time / grpcio``."""
    from .bench_suite import WORKLOADS

    text = f"{row['subject']} {WORKLOADS[row['workload']][0]}"
    if row["baseline"] is None:
        return text
    if row["baseline_workload"] != row["workload"]:
        return f"{text} / {row['baseline']} {WORKLOADS[row['baseline_workload']][0]}"
    return f"{text} / {row['baseline']}"


def verdict(row: dict[str, Any]) -> str:
    """``met``, or how far the ratio is from its target; empty with no target."""
    target, ratio = row["target"], row["ratio"]
    if target is None:
        return ""
    sign = ">=" if row["kind"] == "min" else "<="
    if row["met"]:
        return f"{sign} {target:g}: met"
    gap = 1 - ratio / target if row["kind"] == "min" else ratio / target - 1
    text = f"{gap:.1%}" if gap < 0.01 else f"{gap:.0%}"
    return f"{sign} {target:g}: " + ("missed by " if row["kind"] == "min" else "over by ") + text


def _tables(report: Report) -> list[Any]:
    from rich.table import Table

    from .baselines import ANY_LOOP
    from .bench_suite import OURS, SHORT, WORKLOADS

    tables: list[Any] = []
    shown = [*report.loops, ANY_LOOP]
    for loop in shown:
        here = [m for m in report.measurements if m.loop == loop]
        if not here:
            continue
        workloads = [w for w in WORKLOADS if any(m.workload == w for m in here)]
        title = "Go peers (any loop)" if loop == ANY_LOOP else f"figures on {loop}"
        table = Table(title=title, title_justify="left")
        table.add_column("subject")
        for workload in workloads:
            table.add_column(SHORT[workload], justify="right")
        subjects = list(dict.fromkeys(m.subject for m in here))
        subjects.sort(key=lambda name: (name not in OURS, 0))
        for subject in subjects:
            found = {m.workload: m.value for m in here if m.subject == subject}
            table.add_row(
                subject,
                *(_number(found[w], WORKLOADS[w][1]) if w in found else "" for w in workloads),
            )
        tables.append(table)
    table = Table(title="ratios (targets from issue 11)", title_justify="left")
    for column in ("loop", "ratio", "value", "baseline", "ratio", "target", "note"):
        table.add_column(column, justify="right" if column in ("value", "baseline") else "left")
    for row in report.comparisons():
        mark = ""
        if row["met"] is not None:
            mark = "[green]" if row["met"] else "[red]"
        unit = WORKLOADS[row["workload"]][1]
        table.add_row(
            row["loop"],
            describe(row),
            _number(row["value"], unit),
            ""
            if row["baseline_value"] is None
            else _number(row["baseline_value"], WORKLOADS[row["baseline_workload"]][1]),
            "" if row["baseline"] is None else f"{row['ratio']:.2f}",
            mark + verdict(row),
            row["note"],
        )
    tables.append(table)
    return tables


def notes_of_baselines() -> dict[str, str]:
    """What each baseline is, in a line."""
    from .baselines import all_baselines

    return {baseline.name: baseline.note for baseline in all_baselines()}


def plot(report: Report, path: str) -> None:
    """Draw every targeted ratio over its target (1.0: just met) per loop into *path*.

    :raises RuntimeError: if matplotlib is not installed
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib (pip install 'streams[bench]')") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    rows = [row for row in report.comparisons() if row["target"] is not None]
    labels = list(dict.fromkeys(describe(row) for row in rows))
    loops = [loop for loop in report.loops if any(row["loop"] == loop for row in rows)]
    height = 0.8 / max(len(loops), 1)
    figure, axes = pyplot.subplots(figsize=(11, 1.5 + 0.45 * max(len(labels), 1)))
    for index, loop in enumerate(loops):
        positions, scores = [], []
        for row in rows:
            if row["loop"] != loop:
                continue
            score = row["ratio"] / row["target"]
            if row["kind"] == "max":
                score = row["target"] / row["ratio"] if row["ratio"] else 0.0
            positions.append(labels.index(describe(row)) + index * height)
            # a log axis needs a positive width; a zero ratio shows as a sliver
            scores.append(max(score, 1e-3))
        axes.barh(positions, scores, height=height, label=loop)
    axes.set_xscale("log", base=2)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks([i + height * (len(loops) - 1) / 2 for i in range(len(labels))])
    axes.set_yticklabels(labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("measured ratio / target, log scale (right of the line: met)")
    axes.set_title("streams bench: ratios against baselines from the same run")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    pyplot.close(figure)


def emit(report: Report, *, json_output: bool, plot: str | None = None) -> int:
    """Print the report (a table, or JSON with *json_output*), draw the plot when asked;
    the exit status: 1 if anything failed."""
    if plot is not None:
        globals()["plot"](report, plot)
    if json_output:
        print(json.dumps(report.as_json(), indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console(width=max(Console().width, 160))
        for table in _tables(report):
            console.print(table)
        from .bench_suite import IDLE_LIMITS

        for name, limit in IDLE_LIMITS.items():
            if limit < report.sizes.idle_streams:
                console.print(f"{name}: memory per idle stream measured with {limit:,} streams")
        for name, note in notes_of_baselines().items():
            console.print(escape(f"{name}: {note}"))
        for name, reason in report.skipped.items():
            console.print("[yellow]" + escape(f"skipped {name}: {reason}"))
        for failure in report.failures:
            console.print("[red]" + escape(f"failed: {failure}"))
        console.print(f"{report.seconds:.0f} s")
    return 1 if report.failures else 0


def markdown(document: dict[str, Any]) -> str:
    """The figures and ratios of a ``--json`` document as Markdown tables, one column per
    loop (what ``docs/performance.md`` shows):
    ``python -m benchmarks._report RUN.json``."""
    from .bench_suite import WORKLOADS

    loops = [*document["loops"], "go"]
    values: dict[tuple[str, str], dict[str, float]] = {}
    for m in document["measurements"]:
        values.setdefault((m["subject"], m["workload"]), {})[m["loop"]] = m["value"]
    shown = [loop for loop in loops if any(loop in v for v in values.values())]
    lines = [
        "| subject | figure | " + " | ".join(shown) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in shown) + " |",
    ]
    for (subject, workload), found in values.items():
        label, unit, _ = WORKLOADS[workload]
        cells = [_number(found[loop], unit) if loop in found else "" for loop in shown]
        lines.append(f"| {subject} | {label} ({unit}) | " + " | ".join(cells) + " |")
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for row in document["comparisons"]:
        rows.setdefault(describe(row), {})[row["loop"]] = row
    ratio_loops = document["loops"]
    lines += [
        "",
        "| ratio | target | " + " | ".join(ratio_loops) + " |",
        "| --- | --- | " + " | ".join("---" for _ in ratio_loops) + " |",
    ]
    for text, by_loop in rows.items():
        first = next(iter(by_loop.values()))
        target = ""
        if first["target"] is not None:
            target = (">= " if first["kind"] == "min" else "<= ") + f"{first['target']:g}"
        cells = []
        for loop in ratio_loops:
            row = by_loop.get(loop)
            if row is None:
                cells.append("")
                continue
            cell = _number(row["ratio"], "ratio") if row["baseline"] else ""
            if row["baseline"] is None:
                cell = _number(row["ratio"], WORKLOADS[row["workload"]][1])
            if row["met"] is not None:
                cell += " met" if row["met"] else f" **{verdict(row).split(': ')[1]}**"
            cells.append(cell)
        lines.append(f"| {text} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    with open(sys.argv[1]) as file:
        print(markdown(json.load(file)), end="")
