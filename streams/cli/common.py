"""Options that several subcommands share: backend, TLS, SSH, and the event loop."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._core.backend import Backend, BackendOptions, SSHConfig
from .._core.errors import ConfigError
from .._core.headers import Headers
from .._core.transport import TLSConfig
from ..backends import BACKEND_NAMES, get_backend

__all__ = [
    "add_backend_arguments",
    "add_loop_argument",
    "backend_from_args",
    "headers_from_args",
    "options_from_args",
    "run_async",
]


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and the TLS, SSH and protocol options of DESIGN.md section 5."""
    parser.add_argument(
        "--backend", required=True, choices=BACKEND_NAMES, help="the protocol to speak"
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls-cert", metavar="PEM", help="certificate chain to present")
    tls.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    tls.add_argument("--tls-ca", metavar="PEM", help="certificate authorities to trust")
    tls.add_argument(
        "--tls-insecure",
        action="store_true",
        help="do not verify the peer's certificate (an explicit opt-out)",
    )
    tls.add_argument("--tls", action="store_true", help="use TLS with the system's trust store")
    ssh = parser.add_argument_group("SSH")
    ssh.add_argument("--ssh-host-key", metavar="FILE", help="server: host private key")
    ssh.add_argument("--ssh-authorized-keys", metavar="FILE", help="server: authorized_keys")
    ssh.add_argument("--ssh-identity", metavar="FILE", help="client: private key to log in with")
    ssh.add_argument("--ssh-known-hosts", metavar="FILE", help="client: known_hosts to verify")
    ssh.add_argument("--ssh-user", metavar="USER", help="client: user to log in as")
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument(
        "--raw", action="store_true", help="framer: plain yamux, without the header handshake"
    )
    protocol.add_argument(
        "--spdy-no-flow-control",
        action="store_true",
        help="spdy: talk to peers that never send window updates (docker/spdystream)",
    )
    protocol.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a backend setting (for example receive_window=1048576); repeatable",
    )


def add_loop_argument(parser: argparse.ArgumentParser) -> None:
    """``--loop``: which event loop runs the command."""
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "trio"),
        default="asyncio",
        help="the event loop (default: asyncio)",
    )


def _parse_setting(text: str) -> tuple[str, Any]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise ConfigError(f"--setting {text!r}: expected NAME=VALUE")
    parsed: Any = value
    for convert in (int, float):
        try:
            parsed = convert(value)
            break
        except ValueError:
            continue
    else:
        if value.lower() in ("true", "false"):
            parsed = value.lower() == "true"
    return name, parsed


def options_from_args(args: argparse.Namespace) -> BackendOptions:
    """The :class:`BackendOptions` that the command line describes."""
    tls = None
    if args.tls or args.tls_cert or args.tls_ca or args.tls_insecure:
        tls = TLSConfig(
            cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca, insecure=args.tls_insecure
        )
    ssh = SSHConfig(
        host_key=args.ssh_host_key,
        authorized_keys=args.ssh_authorized_keys,
        identity=args.ssh_identity,
        known_hosts=args.ssh_known_hosts,
        user=args.ssh_user,
    )
    return BackendOptions(
        tls=tls,
        ssh=ssh,
        raw=args.raw,
        spdy_no_flow_control=args.spdy_no_flow_control,
        settings=dict(_parse_setting(text) for text in args.setting),
    )


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend ``--backend`` names."""
    return get_backend(args.backend)


def headers_from_args(values: list[str]) -> Headers:
    """``--header NAME=VALUE`` options as :class:`Headers`."""
    headers = Headers()
    for text in values:
        name, separator, value = text.partition("=")
        if not separator or not name:
            raise ConfigError(f"--header {text!r}: expected NAME=VALUE")
        headers.add(name, value)
    return headers


def run_async(function: Callable[[], Awaitable[int]], loop: str) -> int:
    """Run *function* on the chosen event loop and return its exit code."""
    if loop == "trio":
        return anyio.run(function, backend="trio")
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    return anyio.run(function, backend="asyncio", backend_options=options)
