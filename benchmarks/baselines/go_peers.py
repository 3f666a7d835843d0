"""The Go reference points: hashicorp/yamux and moby/spdystream, each a Go client against a
Go server of the same library over loopback, in one Go process (sources in ``go/``, built
with Debian's Go and Go libraries by ``tests.peers.build_go``, ``GO111MODULE=off``).

They run with ``GOMAXPROCS=1``, one thread running Go code as the Python process has, so the
figures compare implementations rather than core counts. They do not depend on the Python
event loop: each is measured once per run. A missing Go toolchain or library skips them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import anyio

from .._workloads import Sizes

HERE = Path(__file__).resolve().parent / "go"
#: (name, program directory, Go import path it needs)
PEERS = (
    ("Go yamux", "yamuxbench", "github.com/hashicorp/yamux"),
    ("Go spdystream", "spdybench", "github.com/moby/spdystream"),
)


def missing(import_path: str) -> str | None:
    """Why the Go peer that needs *import_path* cannot run here, or ``None``."""
    if shutil.which("go") is None:
        return "Go is not installed (./dev peers installs golang-go)"
    if not (Path("/usr/share/gocode/src") / import_path).is_dir():
        return f"the Go package {import_path} is not installed (./dev peers)"
    return None


def build(directory: str, import_path: str) -> Path:
    """The built program (cached by its source's hash).

    :raises RuntimeError: if it cannot be built
    """
    try:
        from tests.peers import build_go
    except ImportError as exc:
        raise RuntimeError("tests/peers.py is needed to build the Go peers") from exc
    try:
        return build_go(HERE / directory, import_path)
    except BaseException as exc:  # pytest's skip or fail outcome when Go is missing
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise RuntimeError(f"building {directory} failed: {exc}") from None


async def measure(directory: str, import_path: str, sizes: Sizes) -> dict[str, float]:
    """Run the Go program once with the run's sizes and return its figures."""
    program = await anyio.to_thread.run_sync(build, directory, import_path)
    command = [
        str(program),
        "-bytes",
        str(sizes.bulk_bytes),
        "-opens",
        str(sizes.opens),
        "-concurrent",
        str(sizes.concurrent_opens),
    ]
    with anyio.fail_after(300):
        result = await anyio.run_process(
            command, env={**os.environ, "GOMAXPROCS": "1"}, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"{directory} failed: {result.stderr.decode()[-500:]}")
    figures: dict[str, float] = json.loads(result.stdout)
    return figures
