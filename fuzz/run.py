"""Run one harness for a while and summarise: ``python -m fuzz.run TARGET SECONDS``.

New inputs go to ``fuzz/work/TARGET`` (the seeds in ``fuzz/corpus/TARGET`` are read, not
written), a crashing input to ``fuzz/work/crashes/TARGET-*``, the full libFuzzer log to
``fuzz/work/TARGET.log``. Prints the executions, coverage and any crash at the end and
exits non-zero on a crash.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
TARGETS = ("framer", "spdy", "http2", "ssh", "topology")


def summarise(log: str) -> dict[str, str]:
    """The last progress line's figures and the final statistics from a libFuzzer log."""
    figures: dict[str, str] = {}
    for match in re.finditer(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\S+)", log, re.M):
        figures.update(units=match[1], cov=match[2], ft=match[3], corpus=match[4])
    for match in re.finditer(r"^stat::(\w+):\s*(\d+)", log, re.M):
        figures[match[1]] = match[2]
    crash = re.search(r"^(==\d+== ERROR: .*|=== Uncaught Python exception: ===)$", log, re.M)
    if crash:
        figures["crash"] = crash[1]
    return figures


def main() -> int:
    """Parse the command line, run the harness, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("seconds", type=int)
    parser.add_argument("--max-len", type=int, default=4096)
    args = parser.parse_args()
    work = HERE / "work"
    corpus = work / args.target
    crashes = work / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    log_path = work / f"{args.target}.log"
    command = [
        sys.executable,
        "-m",
        f"fuzz.fuzz_{args.target}",
        f"-max_total_time={args.seconds}",
        f"-max_len={args.max_len}",
        "-timeout=5",
        "-rss_limit_mb=1536",
        "-print_final_stats=1",
        f"-artifact_prefix={crashes}/{args.target}-",
        str(corpus),
        str(HERE / "corpus" / args.target),
    ]
    environment = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    with log_path.open("w") as log:
        returncode = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, check=False
        ).returncode
    figures = summarise(log_path.read_text(errors="replace"))
    print(f"{args.target}: {args.seconds} s, exit {returncode}")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    print(f"  log: {log_path}")
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
