"""Real third-party peers for interop tests: finding them, building Go peers, running
processes on loopback, and stopping them by their own process id.

On a developer's machine a missing peer skips its tests with a message naming the install
command; in CI (``CI=true``) a missing peer fails them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".peers"
INSTALL_HINT = "install the real peers with: ./dev peers  (Debian packages, as root)"
GOCODE = Path("/usr/share/gocode")


def in_ci() -> bool:
    """``True`` when running in CI, where a missing peer is a failure."""
    return os.environ.get("CI") == "true"


def missing_peer(what: str) -> None:
    """Skip (developer) or fail (CI) because *what* is not installed."""
    message = f"{what} is not installed; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_program(name: str) -> str:
    """The path of program *name*, or skip/fail the test."""
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        missing_peer(name)
        raise AssertionError("unreachable")
    return path


def require_go_package(import_path: str) -> Path:
    """The source directory of a Debian-packaged Go library, or skip/fail the test."""
    source = GOCODE / "src" / import_path
    if not source.is_dir():
        missing_peer(f"the Go package {import_path}")
    return source


def build_go(source_dir: Path, *imports: str) -> Path:
    """Build the Go program in *source_dir* (a ``main`` package) with Debian's Go and
    Debian's Go libraries, without modules or network; cached by the source's hash."""
    go = require_program("go")
    for import_path in imports:
        require_go_package(import_path)
    files = sorted(source_dir.glob("*.go"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    output = BUILD_DIR / "bin" / f"{source_dir.name}-{digest}"
    if output.exists():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{GOCODE}:{BUILD_DIR / 'gopath'}",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(BUILD_DIR / "gocache"),
        "CGO_ENABLED": "0",
    }
    temporary = output.with_suffix(".tmp")
    result = subprocess.run(
        [go, "build", "-o", str(temporary), *[str(f) for f in files]],
        cwd=source_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"building {source_dir.name} failed:\n{result.stderr}")
    temporary.rename(output)
    return output


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on *port*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {host}:{port} within {timeout} s")


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Stop *process* by its own id: SIGTERM, then SIGKILL after a few seconds."""
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=5)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=5)


@contextmanager
def running(
    command: Sequence[str],
    *,
    port: int | None = None,
    ready_line: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[str]]:
    """Run *command* for the block's duration and stop it afterwards, by its process id.

    Readiness: *port* accepting connections, or *ready_line* appearing at the start of a
    line of its standard output (the line is then at ``process.ready``).
    """
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    output: list[str] = []
    errors: list[str] = []
    process.output = output  # type: ignore[attr-defined]
    process.errors = errors  # type: ignore[attr-defined]
    ready = threading.Event()

    def pump(pipe: IO[str], into: list[str], watch: bool) -> None:
        # drained in threads so that a chatty peer never blocks on a full pipe
        for line in pipe:
            into.append(line)
            if watch and ready_line is not None and line.startswith(ready_line):
                process.ready = line.strip()  # type: ignore[attr-defined]
                ready.set()
        ready.set()

    assert process.stdout is not None
    assert process.stderr is not None
    pumps = [
        threading.Thread(target=pump, args=(process.stdout, output, True), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, errors, False), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    try:
        waiting_for_line = ready_line is not None
        if waiting_for_line and not (ready.wait(timeout) and hasattr(process, "ready")):
            process.poll()
            raise AssertionError(
                f"{command[0]} did not print {ready_line!r} within {timeout} s "
                f"(exit {process.returncode}): {''.join(errors)[-2000:]}"
            )
        if port is not None:
            wait_for_port(port, timeout)
        yield process
    finally:
        stop_process(process)
        for thread in pumps:
            thread.join(timeout=5)
        process.stdout.close()
        process.stderr.close()


def streams_command(*args: str) -> list[str]:
    """The ``streams`` command of this checkout, as a subprocess argument list."""
    return [sys.executable, "-m", "streams", *args]


def listening_address(process: subprocess.Popen[str]) -> str:
    """The address from ``streams echo``'s ``echo: listening on ADDRESS (backend)`` line."""
    line: str = process.ready  # type: ignore[attr-defined]
    return line.split("listening on ", 1)[1].split(" ", 1)[0]
