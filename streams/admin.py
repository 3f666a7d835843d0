"""The admin endpoint: ``/metrics``, ``/debug/streams``, ``/debug/pool``, ``/healthz`` and
``/explain``, served over HTTP/1.1 (parsed by :mod:`h11`) by the process itself.

It binds to loopback unless told otherwise, answers only ``GET``, and runs in its own
tasks, so a slow scrape never blocks stream traffic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import h11
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from ._core.errors import ConfigError
from ._core.transport import LOOPBACK_HOSTS, Address
from .wrappers.debug import DebugProvider, render_streams

__all__ = ["AdminEndpoint", "AdminState"]

logger = logging.getLogger("streams.admin")

MAX_REQUEST_BYTES = 16 * 1024
REQUEST_TIMEOUT = 10.0


@dataclass(kw_only=True)
class AdminState:
    """What the endpoint reports; the process fills it in as it builds its providers."""

    #: the registry ``/metrics`` exposes
    registry: CollectorRegistry = REGISTRY
    #: debug wrappers whose open streams ``/debug/streams`` lists
    debug: list[DebugProvider] = field(default_factory=list)
    #: ``describe()`` of each upstream (pools, failover groups), for ``/debug/pool``
    describers: dict[str, Callable[[], Mapping[str, Any]]] = field(default_factory=dict)
    #: ``explain(upstream)`` for ``/explain?upstream=NAME``: why the next stream goes where
    explainer: Callable[[str], Mapping[str, Any]] | None = None
    #: ``/healthz`` answers 200 while this returns ``True``
    healthy: Callable[[], bool] = lambda: True
    #: ``POST /servers/NAME/kill``: drop a server's connections as a crash would (a
    #: failure drill); returns ``False`` for an unknown server
    kill_server: Callable[[str], Awaitable[bool]] | None = None


class AdminEndpoint:
    """Serves :class:`AdminState` on *address* (loopback by default).

    :param state: what to report
    :param address: ``HOST:PORT`` (port 0 picks one; see :attr:`address` once started)
    :param allow_remote: allow a non-loopback bind address, an explicit opt-in
    :raises ~streams.ConfigError: for a non-loopback address without *allow_remote*
    """

    def __init__(
        self, state: AdminState, address: str = "127.0.0.1:0", *, allow_remote: bool = False
    ) -> None:
        parsed = Address.parse(address)
        if parsed.scheme != "tcp":
            raise ConfigError("the admin endpoint listens on HOST:PORT", path="admin.listen")
        if parsed.host not in LOOPBACK_HOSTS and not allow_remote:
            raise ConfigError(
                f"{address} is not a loopback address; the admin endpoint exposes internals, "
                "so binding elsewhere needs allow_remote",
                path="admin.listen",
            )
        self.state = state
        self._requested = parsed
        self.address = str(parsed)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; reports the bound address through *task_status*."""
        listener = await anyio.create_tcp_listener(
            local_host=self._requested.host, local_port=self._requested.port
        )
        async with listener:
            bound: Any = listener.extra(anyio.abc.SocketAttribute.local_address)
            self.address = str(Address("tcp", host=str(bound[0]), port=int(bound[1])))
            task_status.started(self.address)
            await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    while True:
                        event = connection.next_event()
                        if event is h11.NEED_DATA:
                            connection.receive_data(await stream.receive(MAX_REQUEST_BYTES))
                        elif isinstance(event, h11.Request):
                            status, content_type, body = await self._respond(event)
                            await self._send(stream, connection, status, content_type, body)
                        elif isinstance(event, h11.EndOfMessage):
                            if connection.our_state is not h11.DONE:
                                return
                            connection.start_next_cycle()
                        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                            return
            except (h11.RemoteProtocolError, anyio.EndOfStream, anyio.BrokenResourceError):
                return
            except TimeoutError:
                return

    async def _send(
        self,
        stream: anyio.abc.SocketStream,
        connection: h11.Connection,
        status: int,
        content_type: str,
        body: bytes,
    ) -> None:
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
        ]
        await stream.send(connection.send(h11.Response(status_code=status, headers=headers)))
        await stream.send(connection.send(h11.Data(data=body)))
        await stream.send(connection.send(h11.EndOfMessage()))

    async def _respond(self, request: h11.Request) -> tuple[int, str, bytes]:
        target = urlsplit(request.target.decode("ascii", "replace"))
        query = parse_qs(target.query)
        if request.method == b"POST":
            return await self._action(target.path)
        if request.method != b"GET":
            return 405, "text/plain", b"only GET, and POST for drills\n"
        try:
            return self._route(target.path, query)
        except Exception as exc:
            logger.exception("admin endpoint %s failed", target.path)
            return 500, "text/plain", f"internal error: {type(exc).__name__}\n".encode()

    async def _action(self, path: str) -> tuple[int, str, bytes]:
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "servers" and parts[2] == "kill":
            if self.state.kill_server is None:
                return 404, "text/plain", b"this process runs no servers\n"
            if await self.state.kill_server(parts[1]):
                logger.warning("admin: server %s killed on request", parts[1])
                return 200, "text/plain", f"killed {parts[1]}\n".encode()
            return 404, "text/plain", f"no server {parts[1]!r}\n".encode()
        return 404, "text/plain", b"not found\n"

    def _route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        state = self.state
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(state.registry)
        if path == "/healthz":
            healthy = state.healthy()
            return (200 if healthy else 503), "text/plain", b"ok\n" if healthy else b"unhealthy\n"
        if path == "/debug/streams":
            rows = [row for provider in state.debug for row in provider.streams()]
            if query.get("format") == ["text"]:
                return 200, "text/plain; charset=utf-8", render_streams(rows).encode()
            data = [provider.table() for provider in state.debug]
            return 200, "application/json", _json([row for table in data for row in table])
        if path == "/debug/pool":
            described = {name: describe() for name, describe in state.describers.items()}
            return 200, "application/json", _json(described)
        if path == "/explain":
            upstream = (query.get("upstream") or [""])[0]
            if state.explainer is None:
                return 404, "text/plain", b"this process has no upstreams to explain\n"
            if upstream not in state.describers:
                known = ", ".join(sorted(state.describers)) or "none"
                return 404, "text/plain", f"no upstream {upstream!r}; known: {known}\n".encode()
            return 200, "application/json", _json(state.explainer(upstream))
        if path == "/":
            paths = "/metrics /healthz /debug/streams /debug/pool /explain?upstream=NAME"
            return 200, "text/plain", f"streams admin: {paths}\n".encode()
        return 404, "text/plain", b"not found\n"


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, default=str).encode() + b"\n"
