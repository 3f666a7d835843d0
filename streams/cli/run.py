"""``streams run``: run a topology (the embedded default when no file is given).

Ctrl-C stops everything at once; SIGTERM drains (open streams may finish); SIGHUP reloads
the topology file, keeping the old one in force if the new one is invalid.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from importlib.resources import files
from typing import Any

import anyio

from .._core.errors import ConfigError
from .._core.transport import Address
from .common import add_loop_argument, run_async

__all__ = ["add_parser", "default_topology_text"]

DRAIN_GRACE = 30.0


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(
        name,
        help="run a topology (servers, upstreams, tunnels, admin endpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "topology", nargs="?", metavar="TOPOLOGY.yaml", help="the topology (default: embedded)"
    )
    parser.add_argument(
        "--any-port",
        action="store_true",
        help="listen on free ports instead of the ones the topology names (for tests and "
        "when those ports are taken); the addresses are printed",
    )
    add_loop_argument(parser)
    parser.set_defaults(run=run)


def default_topology_text() -> str:
    """The embedded default topology."""
    return files("streams.config").joinpath("default.yaml").read_text()


def _load(args: argparse.Namespace) -> Any:
    from ..config import load_topology, parse_topology

    if args.topology:
        topology = load_topology(args.topology)
    else:
        topology = parse_topology(default_topology_text(), source="<embedded default>")
    if args.any_port:
        topology = _any_port(topology)
    return topology


def _free(address: str) -> str:
    parsed = Address.parse(address)
    return str(dataclasses.replace(parsed, port=0)) if parsed.scheme == "tcp" else address


def _any_port(topology: Any) -> Any:
    return dataclasses.replace(
        topology,
        servers=tuple(dataclasses.replace(s, listen=_free(s.listen)) for s in topology.servers),
        tunnels=tuple(dataclasses.replace(t, listen=_free(t.listen)) for t in topology.tunnels),
        admin=(
            dataclasses.replace(topology.admin, listen=_free(topology.admin.listen))
            if topology.admin
            else None
        ),
    )


def _describe(runtime: Any, embedded: bool) -> str:
    topology = runtime.topology
    lines = [
        "streams: running "
        + (
            "the embedded default topology (give a file to run your own)"
            if embedded
            else topology.source
        )
    ]
    for spec in topology.servers:
        server = runtime.servers[spec.name]
        lines.append(
            f"  server {spec.name} ({spec.backend}, {spec.action}) listening on {server.address}"
        )
    for spec in topology.upstreams:
        groups = "; ".join(
            f"priority {index} [{', '.join(e.address for e in group.endpoints) or group.resolve}]"
            for index, group in enumerate(spec.groups)
        )
        lines.append(f"  upstream {spec.name} ({spec.backend}): failover over {groups}")
    for spec in topology.tunnels:
        address = runtime.tunnel_addresses[spec.name]
        lines.append(f"  tunnel {spec.name} listening on {address} -> upstream {spec.upstream}")
    admin = runtime.admin_address
    if admin:
        lines.append(
            f"  admin listening on http://{admin} "
            "(/metrics /healthz /debug/streams /debug/pool /explain?upstream=NAME)"
        )
    if topology.tunnels:
        tunnel = runtime.tunnel_addresses[topology.tunnels[0].name]
        host, port = tunnel.rsplit(":", 1)
        lines.append("try:")
        lines.append(f"  printf hello | nc -N {host} {port}   # any TCP client: echoed back")
        if admin:
            lines.append(f"  curl -s http://{admin}/metrics | grep streams_opened_total")
            upstream = topology.tunnels[0].upstream
            lines.append(f"  streams explain {upstream} --admin {admin}")
            if topology.servers:
                name = topology.servers[0].name
                lines.append(
                    f"  curl -X POST http://{admin}/servers/{name}/kill   # then watch it fail over"
                )
    lines.append("Ctrl-C stops; SIGTERM drains; SIGHUP reloads the topology file.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..config.runtime import Runtime

    topology = _load(args)

    async def main() -> int:
        async with Runtime(topology) as runtime:
            grace = 1.0
            with anyio.open_signal_receiver(
                signal.SIGINT, signal.SIGTERM, signal.SIGHUP
            ) as signals:
                # only now: a signal sent as soon as this is read must find its handler
                print(_describe(runtime, embedded=not args.topology), flush=True)
                async for received in signals:
                    if received == signal.SIGHUP:
                        if not args.topology:
                            print(
                                "streams: SIGHUP: the embedded topology has nothing to reload",
                                flush=True,
                            )
                            continue
                        try:
                            changes = await runtime.reload(_load(args))
                        except ConfigError as exc:
                            print(
                                f"streams: reload refused, the old topology stays: {exc}",
                                flush=True,
                            )
                            continue
                        print(
                            f"streams: reloaded: {'; '.join(changes) or 'nothing changed'}",
                            flush=True,
                        )
                        continue
                    if received == signal.SIGTERM:
                        grace = DRAIN_GRACE
                        print("streams: draining", flush=True)
                    break
            await runtime.aclose(grace=grace)
        print("streams: stopped", flush=True)
        return 0

    try:
        return run_async(main, args.loop)
    except KeyboardInterrupt:
        print("streams: stopped", file=sys.stderr)
        return 0
