"""A running topology: the servers, upstreams, tunnels and admin endpoint a topology file
describes, built from backends and wrappers, and reloadable without dropping streams.

Embedding services use it as::

    async with Runtime(load_topology("topology.yaml")) as runtime:
        api = runtime.upstream("api")
        stream = await api.open_stream({"x-method": "ping"})
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
from prometheus_client import CollectorRegistry

from .._core.abc import Handler, Listener, Stream, StreamProvider
from .._core.errors import ConfigError, ProviderClosed
from .._core.headers import Headers, HeadersLike
from .._core.server import StreamServer
from .._core.tasks import TaskHost
from .._core.transport import Address
from ..admin import AdminEndpoint, AdminState
from ..backends import get_backend
from ..wrappers.debug import DebugProvider
from ..wrappers.discovery import DNSResolver
from ..wrappers.failover import Failover
from ..wrappers.health import FailoverOptions
from ..wrappers.metrics import MetricsProvider, StreamMetrics
from ..wrappers.pool import Endpoint, Pool, PoolOptions
from .model import ServerSpec, Topology, TunnelSpec, UpstreamSpec
from .serving import serve_stream, tunnel_connection

__all__ = ["ReloadableProvider", "Runtime"]

logger = logging.getLogger("streams.runtime")

#: seconds streams of a replaced upstream may go on after a reload
RELOAD_GRACE = 300.0


class ReloadableProvider(StreamProvider):
    """A stable provider in front of one that a reload may replace: new streams go to the
    current one; streams of a replaced one finish undisturbed while it drains."""

    def __init__(self, inner: StreamProvider) -> None:
        self.current = inner
        self.backend_name = inner.backend_name

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        return await self.current.open_stream(headers, wait_accept=wait_accept)

    def listen(self, handler: Handler | None = None) -> Listener:
        return self.current.listen(handler)

    async def aclose(self, *, grace: float | None = None) -> None:
        await self.current.aclose(grace=grace)

    async def wait_closed(self) -> None:
        await self.current.wait_closed()

    @property
    def is_closing(self) -> bool:
        return self.current.is_closing

    @property
    def active_streams(self) -> int:
        return self.current.active_streams

    @property
    def rtt(self) -> float | None:
        return self.current.rtt

    async def ping(self) -> float:
        return await self.current.ping()

    def describe(self) -> Mapping[str, Any]:
        """The current provider's description."""
        describe = getattr(self.current, "describe", None)
        return describe() if callable(describe) else {}


class _Upstream:
    """One built upstream: its failover core and the wrapped provider services use."""

    def __init__(self, spec: UpstreamSpec, failover: Failover, outer: StreamProvider) -> None:
        self.spec = spec
        self.failover = failover
        self.outer = outer


class Runtime:
    """Runs a :class:`~streams.config.Topology`.

    :param topology: what to run
    :param registry: where metrics go (a fresh registry by default, so two runtimes in one
        process do not collide)
    """

    def __init__(self, topology: Topology, *, registry: CollectorRegistry | None = None) -> None:
        self.topology = topology
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = StreamMetrics(
            self.registry,
            namespace=topology.metrics.namespace,
            header_label=topology.metrics.header_label,
            header_label_limit=topology.metrics.header_label_limit,
        )
        self.admin_state = AdminState(
            registry=self.registry,
            explainer=self.explain,
            healthy=self.healthy,
            kill_server=self.kill_server,
        )
        self.admin: AdminEndpoint | None = None
        self._upstreams: dict[str, _Upstream] = {}
        self._facades: dict[str, ReloadableProvider] = {}
        self.servers: dict[str, StreamServer] = {}
        self.tunnel_addresses: dict[str, str] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._host = TaskHost()
        self._group: anyio.abc.TaskGroup | None = None
        self._stack = AsyncExitStack()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            self._group = await self._stack.enter_async_context(self._host)
            for server in self.topology.servers:
                await self._start_server(server)
            for upstream in self.topology.upstreams:
                built = await self._build_upstream(upstream)
                self._facades[upstream.name] = ReloadableProvider(built.outer)
                self.admin_state.describers[upstream.name] = built.failover.describe
            for tunnel in self.topology.tunnels:
                await self._start_tunnel(tunnel)
            if self.topology.admin is not None:
                self.admin = AdminEndpoint(
                    self.admin_state,
                    self.topology.admin.listen,
                    allow_remote=self.topology.admin.allow_remote,
                )
                await self._group.start(self.admin.serve)
        except BaseException as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return await self._stack.__aexit__(exc_type, exc_val, exc_tb)

    async def aclose(self, *, grace: float = 5.0) -> None:
        """Stop tunnels, drain upstreams and servers within *grace* seconds."""
        with anyio.CancelScope(shield=True):
            for name in [n for n in self._scopes if n.startswith("tunnel:")]:
                self._scopes.pop(name).cancel()
            async with anyio.create_task_group() as group:
                for upstream in self._upstreams.values():
                    group.start_soon(_close, upstream.outer, grace)
                for server in self.servers.values():
                    group.start_soon(_close, server, grace)
            self._host.cancel()

    # -- what services use -----------------------------------------------------------------

    def upstream(self, name: str) -> StreamProvider:
        """The provider of upstream *name*, wrapped as the topology says.

        :raises KeyError: if there is no such upstream
        """
        return self._facades[name]

    @property
    def admin_address(self) -> str | None:
        """Where the admin endpoint listens, once started."""
        return self.admin.address if self.admin is not None else None

    def explain(self, name: str) -> Mapping[str, Any]:
        """Which endpoint the next stream of upstream *name* would take, and why."""
        return self._upstreams[name].failover.explain()

    async def kill_server(self, name: str) -> bool:
        """Drop server *name* as a crash would (its peers see errors); ``False`` if unknown."""
        server = self.servers.pop(name, None)
        if server is None:
            return False
        await server.abort()
        await self._stop(f"server:{name}")
        return True

    def healthy(self) -> bool:
        """``True`` while every upstream has an available endpoint."""
        return all(
            any(
                endpoint["available"]
                for group in upstream.failover.describe()["groups"]
                for endpoint in group["endpoints"]
            )
            for upstream in self._upstreams.values()
        )

    # -- building --------------------------------------------------------------------------

    async def _build_upstream(self, spec: UpstreamSpec) -> _Upstream:
        backend = get_backend(spec.backend)
        pool_settings = dict(spec.pool)
        # a failover endpoint keeps a warm connection so that ping health checks have one
        pool_settings.setdefault("min_connections", 1)
        try:
            pool_options = PoolOptions(**pool_settings)
        except TypeError as exc:
            raise ConfigError(f"unknown pool option: {exc}", path=f"{spec.name}.pool") from None
        groups: list[list[tuple[str, StreamProvider, int]]] = []
        for group in spec.groups:
            members: list[tuple[str, StreamProvider, int]] = []
            for endpoint in group.endpoints:
                dialer = backend.dialer(self._resolve_address(endpoint.address), spec.options)
                pool = Pool(
                    [Endpoint(dialer=dialer, weight=endpoint.weight)],
                    options=pool_options,
                    policy=spec.balance,
                )
                members.append((endpoint.address, pool, endpoint.weight))
            if group.resolve is not None:
                host, port, interval = group.resolve
                resolved = Pool(
                    options=PoolOptions(**{**pool_settings, "resolve_interval": interval}),
                    policy=spec.balance,
                    resolver=DNSResolver(host, port),
                    make_dialer=lambda address: backend.dialer(address, spec.options),
                )
                members.append((f"{host}:{port}", resolved, 1))
            groups.append(members)
        options = FailoverOptions.from_mapping(
            {
                "policy": spec.balance,
                "health_check": spec.health_check,
                "outlier_detection": spec.outlier_detection,
                "retries": spec.retries,
                "circuit_breaker": spec.circuit_breaker,
                **spec.failover,
            }
        )
        failover = Failover(groups, options, name=spec.name, backend_name=spec.backend)
        await self._stack.enter_async_context(failover)
        outer: StreamProvider = failover
        if spec.metrics:
            outer = MetricsProvider(outer, upstream=spec.name, metrics=self.metrics)
        if spec.debug:
            debug = DebugProvider(outer, name=spec.name)
            self.admin_state.debug.append(debug)
            outer = debug
        built = _Upstream(spec, failover, outer)
        self._upstreams[spec.name] = built
        return built

    def _resolve_address(self, address: str) -> str:
        """``server:NAME`` is where this topology's server NAME listens."""
        if address.startswith("server:"):
            return self.servers[address[7:]].address
        return address

    async def _start_server(self, spec: ServerSpec) -> None:
        assert self._group is not None
        server: StreamServer = await self._group.start(self._run_server, spec)
        self.servers[spec.name] = server

    async def _run_server(
        self, spec: ServerSpec, *, task_status: anyio.abc.TaskStatus[StreamServer]
    ) -> None:
        backend = get_backend(spec.backend)
        handler = _server_handler(spec)
        with anyio.CancelScope() as scope:
            self._scopes[f"server:{spec.name}"] = scope
            async with (
                backend.serve(spec.listen, spec.options, handler) as server,
                anyio.create_task_group() as group,
            ):
                task_status.started(server)
                while True:
                    try:
                        stream = await server.listener.accept()
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return
                    except Exception as exc:
                        logger.warning("server %s: a handler failed: %r", spec.name, exc)
                        continue
                    if spec.metrics:
                        stream = self.metrics.wrap_inbound(stream, spec.name, backend.name)
                    group.start_soon(serve_stream, spec, stream)

    async def _start_tunnel(self, spec: TunnelSpec) -> None:
        assert self._group is not None
        address: str = await self._group.start(self._run_tunnel, spec)
        self.tunnel_addresses[spec.name] = address

    async def _run_tunnel(
        self, spec: TunnelSpec, *, task_status: anyio.abc.TaskStatus[str]
    ) -> None:
        listen = Address.parse(spec.listen)
        if listen.scheme != "tcp":
            raise ConfigError("a tunnel listens on HOST:PORT", path=f"tunnels.{spec.name}.listen")
        listener = await anyio.create_tcp_listener(local_host=listen.host, local_port=listen.port)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        headers = Headers.coerce(spec.headers)
        headers.setdefault("x-tunnel", spec.name)

        async def handle(connection: anyio.abc.SocketStream) -> None:
            await tunnel_connection(connection, self._facades[spec.upstream], headers)

        with anyio.CancelScope() as scope:
            self._scopes[f"tunnel:{spec.name}"] = scope
            async with listener:
                task_status.started(str(Address("tcp", host=listen.host, port=port)))
                try:
                    await listener.serve(handle)
                except* anyio.ClosedResourceError:
                    pass

    # -- reloading -------------------------------------------------------------------------

    async def reload(self, topology: Topology) -> list[str]:
        """Apply *topology*: changed upstreams are rebuilt and swapped in while the old ones
        drain (their open streams go on); servers and tunnels are added, removed or
        restarted by name. Returns what changed, in words.

        :raises ~streams.ConfigError: if the new topology cannot be built; the old one
            stays in force
        """
        changes: list[str] = []
        for spec in topology.upstreams:
            old = self._upstreams.get(spec.name)
            if old is not None and old.spec == spec:
                continue
            for endpoint_group in spec.groups:
                for endpoint in endpoint_group.endpoints:
                    Address.parse(endpoint.address)
            built = await self._build_upstream(spec)
            self.admin_state.describers[spec.name] = built.failover.describe
            facade = self._facades.get(spec.name)
            if facade is None:
                self._facades[spec.name] = ReloadableProvider(built.outer)
                changes.append(f"upstream {spec.name} added")
            else:
                facade.current = built.outer
                if old is not None:
                    self.admin_state.debug = [
                        d for d in self.admin_state.debug if d is not old.outer
                    ]
                    assert self._group is not None
                    self._group.start_soon(_close, old.outer, RELOAD_GRACE)
                changes.append(f"upstream {spec.name} changed")
        wanted = {spec.name for spec in topology.upstreams}
        for name in [n for n in self._upstreams if n not in wanted]:
            gone = self._upstreams.pop(name)
            self._facades.pop(name, None)
            self.admin_state.describers.pop(name, None)
            assert self._group is not None
            self._group.start_soon(_close, gone.outer, RELOAD_GRACE)
            changes.append(f"upstream {name} removed")
        old_servers = {server.name: server for server in self.topology.servers}
        for server in topology.servers:
            if old_servers.get(server.name) == server:
                continue
            if server.name in old_servers:
                await self._stop(f"server:{server.name}")
                changes.append(f"server {server.name} restarted")
            else:
                changes.append(f"server {server.name} added")
            await self._start_server(server)
        for name in old_servers.keys() - {server.name for server in topology.servers}:
            await self._stop(f"server:{name}")
            self.servers.pop(name, None)
            changes.append(f"server {name} removed")
        old_tunnels = {tunnel.name: tunnel for tunnel in self.topology.tunnels}
        for tunnel in topology.tunnels:
            if old_tunnels.get(tunnel.name) == tunnel:
                continue
            if tunnel.name in old_tunnels:
                await self._stop(f"tunnel:{tunnel.name}")
            await self._start_tunnel(tunnel)
            verb = "restarted" if tunnel.name in old_tunnels else "added"
            changes.append(f"tunnel {tunnel.name} {verb}")
        for name in old_tunnels.keys() - {tunnel.name for tunnel in topology.tunnels}:
            await self._stop(f"tunnel:{name}")
            self.tunnel_addresses.pop(name, None)
            changes.append(f"tunnel {name} removed")
        self.topology = topology
        return changes

    async def _stop(self, key: str) -> None:
        scope = self._scopes.pop(key, None)
        if scope is not None:
            scope.cancel()
        await anyio.lowlevel.checkpoint()


def _server_handler(spec: ServerSpec) -> Handler:
    from ..cli.echo import echo_handler

    if spec.action == "echo":
        return echo_handler
    targets = spec.forward_targets
    header = spec.forward_header

    def forward_handler(headers: Headers) -> tuple[dict[str, str], bool]:
        target = headers.get(header)
        if target is None or target not in targets:
            allowed = ", ".join(sorted(targets))
            return {"x-error": f"{header} must name one of: {allowed}"}, False
        return {"x-target": target}, True

    return forward_handler


async def _close(resource: StreamProvider | StreamServer, grace: float) -> None:
    with contextlib.suppress(ProviderClosed):
        await resource.aclose(grace=grace)
