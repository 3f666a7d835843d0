"""Dialling and serving SSH: keys, trust, and the server that runs a provider per
connection. The security defaults live here: the client verifies the host key against
known_hosts and logs in with keys only; the server takes public keys only and forwards
nothing by itself (every channel becomes a stream for the handler to decide)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import asyncssh
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ..._core.abc import Handler, Listener, StreamProvider
from ..._core.backend import Backend, BackendOptions, SSHConfig
from ..._core.errors import ConfigError, ConnectionLost, ErrorCode, LimitExceeded, StreamClosed
from ..._core.limits import log_limit_exceeded
from ..._core.mux import MuxSettings
from ..._core.queue_listener import QueueListener
from ..._core.server import MergedListener, StreamServer
from ..._core.transport import Address
from ._bridge import Bridge, open_bridge
from ._channel import ChannelKind, ChannelSession, translate_error
from ._codec import CONTROL_PATH, STREAM_PATH
from ._config import (
    DEFAULT_WINDOW,
    AuthenticationFailed,
    HostKeyNotVerified,
    SSHSettings,
    default_max_packet,
)
from ._control import ControlSession
from ._limits import ConnectionGuard
from ._provider import SSHProvider

__all__ = ["SSHBackend", "SSHStreamServer"]

logger = logging.getLogger("streams.ssh")

#: SSH compression is never negotiated: a zlib bomb in a packet would be inflated before
#: any limit of ours could see it, and the payloads worth compressing are rarely here
NO_COMPRESSION = ["none"]
#: AES-GCM before asyncssh's defaults (chacha20-poly1305 first): asyncssh drives
#: chacha20-poly1305 from Python, six ``cryptography`` cipher contexts per packet counting
#: both ends, while AES-GCM is one call into OpenSSL each way. Both are AEAD ciphers of
#: OpenSSH's default set; the client's order decides, so an OpenSSH client keeps its own
CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"


def split_settings(options: BackendOptions | None) -> tuple[SSHSettings, MuxSettings]:
    """The SSH and multiplexing settings named in ``options.settings``.

    :raises ~streams.ConfigError: on an unknown name or a bad value
    """
    given = dict(options.settings) if options is not None else {}
    ssh_names = SSHSettings.field_names()
    ssh_values = {name: value for name, value in given.items() if name in ssh_names}
    mux_values = {name: value for name, value in given.items() if name not in ssh_names}
    try:
        mux = MuxSettings(**mux_values)
        if "max_packet" not in ssh_values:
            window = ssh_values.get("window", DEFAULT_WINDOW)
            if isinstance(window, int):
                ssh_values["max_packet"] = default_max_packet(window, mux.receive_window)
        ssh = SSHSettings(**ssh_values)
    except TypeError as exc:
        raise ConfigError(f"unknown ssh backend setting: {exc}", path="settings") from None
    if mux.receive_window < 2 * ssh.max_packet:
        raise ConfigError("must be at least twice max_packet", path="settings.receive_window")
    return ssh, mux


def _require_file(path: str | None, field: str, what: str) -> str:
    if not path:
        raise ConfigError(f"the ssh backend needs {what}", path=f"ssh.{field}")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file", path=f"ssh.{field}")
    return path


class _ClientOwner(asyncssh.SSHClient):
    """asyncssh's client object: tells the provider when the connection ends."""

    def __init__(self, provider: SSHProvider) -> None:
        self._provider = provider

    def connection_lost(self, exc: Exception | None) -> None:
        with self._provider.bridge.pin:
            self._provider.transport_lost(exc)


class _ReverseListener(asyncssh.SSHListener):
    """Stands for the client's ``streamlocal-forward`` of :data:`STREAM_PATH`: no socket
    is created; this server opens its streams to the client on that path itself."""

    def close(self) -> None:
        """Nothing to close: no socket was opened."""

    async def wait_closed(self) -> None:
        """Nothing to wait for."""


class _ServerOwner(asyncssh.SSHServer):
    """asyncssh's server object for one connection: public keys only, and every channel
    either becomes a stream for the handler or is refused."""

    def __init__(self, server: SSHStreamServer) -> None:
        self._server = server
        self._provider: SSHProvider | None = None
        self._conn: asyncssh.SSHServerConnection | None = None
        self._guard: ConnectionGuard | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        server = self._server
        # installed before authentication: attempts are counted from the first packet
        self._guard = ConnectionGuard(
            conn,
            server.settings,
            server.ssh_settings,
            server.bridge,
            peer=conn.get_extra_info("peername"),
        )
        self._guard.install()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def auth_completed(self) -> None:
        # the provider starts only once the user is known: no channel can open before
        assert self._conn is not None
        with self._server.bridge.pin:
            self._provider = self._server.adopt(self._conn, self._guard)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._guard is not None:
            self._guard.connection_lost()
        if self._provider is not None:
            with self._server.bridge.pin:
                self._provider.transport_lost(exc)
        elif isinstance(exc, asyncssh.ConnectionLost) and "login timeout" in str(exc).lower():
            # asyncssh closes the socket by itself; the log line is ours
            peer = self._guard.peer if self._guard is not None else "?"
            error = LimitExceeded(
                "login_timeout",
                f"not authenticated within {self._server.ssh_settings.login_timeout:g} s",
            )
            log_limit_exceeded(logger, error, peer)

    def _require_provider(self) -> SSHProvider:
        if self._provider is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE, "the server is not ready"
            )
        return self._provider

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        provider = self._require_provider()
        return provider.incoming_tcp(dest_host, dest_port, orig_host, orig_port)

    def unix_connection_requested(self, dest_path: str) -> Any:
        provider = self._require_provider()
        conn = self._conn
        assert conn is not None
        if dest_path not in (CONTROL_PATH, STREAM_PATH):
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"no forwarding to {dest_path!r}"
            )
        if dest_path == STREAM_PATH and provider.is_closing:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE, "the server is closing"
            )
        if dest_path == CONTROL_PATH and provider.control_requested:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "one control channel only"
            )
        settings = provider.ssh_settings
        if dest_path == CONTROL_PATH:
            provider.control_requested = True
            chan = conn.create_unix_channel(window=settings.window, max_pktsize=settings.max_packet)
            return chan, ControlSession(provider)
        if provider.guard is not None:
            provider.guard.admit_channel()
        chan = conn.create_unix_channel(window=settings.window, max_pktsize=settings.max_packet)
        with provider.bridge.pin:
            session = ChannelSession(provider, ChannelKind.INBAND, opener=False)
        session.admitted = provider.guard is not None
        return chan, session

    def unix_server_requested(self, listen_path: str) -> Any:
        if listen_path != STREAM_PATH or self._provider is None:
            return False
        with self._server.bridge.pin:
            self._provider.reverse_listener_requested()
        return _ReverseListener()

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


class SSHStreamServer(StreamServer):
    """A running SSH server: every connection's streams arrive on :attr:`listener`."""

    def __init__(
        self,
        bridge: Bridge,
        ssh_settings: SSHSettings,
        settings: MuxSettings,
        handler: Handler | None,
        task_group: anyio.abc.TaskGroup,
    ) -> None:
        self.bridge = bridge
        self.ssh_settings = ssh_settings
        self.settings = settings
        self._handler = handler
        self._task_group = task_group
        self._merged = MergedListener(settings.accept_backlog)
        self._providers: set[SSHProvider] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._address = ""
        self._closing = False
        self._hand_out: anyio.abc.ObjectSendStream[SSHProvider] | None = None

    @property
    def listener(self) -> Listener:
        return self._merged

    @property
    def address(self) -> str:
        return self._address

    @property
    def connections(self) -> list[StreamProvider]:
        return list(self._providers)

    def adopt(
        self, conn: asyncssh.SSHServerConnection, guard: ConnectionGuard | None = None
    ) -> SSHProvider:
        """Make the provider of a new, authenticated connection and run it."""
        provider = SSHProvider(self.bridge, self.ssh_settings, self.settings, client=False)
        provider.attach(conn, guard)
        if self._closing:
            conn.close()
        else:
            self._task_group.start_soon(self._run, provider)
        return provider

    async def _run(self, provider: SSHProvider) -> None:
        try:
            async with provider:
                self._providers.add(provider)
                self._merged.connections_open(len(self._providers))
                if self._hand_out is not None:
                    await self._hand_out.send(provider)
                    await provider.wait_closed()
                    return
                listener = provider.listen(self._handler)
                if isinstance(listener, QueueListener):
                    # accepted streams go straight to the server's listener (and on to
                    # its serve()), without waking this task for each (a task step per
                    # stream); what the server's backlog refuses comes through accept()
                    listener.forward_to(self._merged.feed)
                while True:
                    try:
                        stream = await listener.accept()
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        break
                    except Exception as exc:
                        self._merged.feed(exc)
                        continue
                    if not self._merged.feed(stream):
                        await stream.reset(ErrorCode.REFUSED_STREAM)
        except Exception as exc:
            logger.info("ssh connection ended: %r", exc)
        finally:
            self._providers.discard(provider)
            self._merged.connections_open(len(self._providers))

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            if self._acceptor is not None:
                self._acceptor.close()
                with anyio.move_on_after(2):
                    await self.bridge.run(self._acceptor.wait_closed)
            async with anyio.create_task_group() as group:
                for provider in list(self._providers):
                    group.start_soon(_close_provider, provider, grace)
            self._merged.end(StreamClosed("server is closed"))


async def _close_provider(provider: StreamProvider, grace: float | None) -> None:
    await provider.aclose(grace=grace)


class SSHBackend(Backend):
    """Streams as SSH channels, on asyncssh; see ``docs/ssh.md``."""

    name = "ssh"

    def connect(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[StreamProvider]:
        parsed = Address.parse(address, default_port=22)
        if parsed.scheme != "tcp":
            raise ConfigError(f"the ssh backend dials HOST:PORT, not {address!r}")
        ssh_settings, settings = split_settings(options)
        return self._connect(parsed, options or BackendOptions(), ssh_settings, settings)

    @asynccontextmanager
    async def _connect(
        self,
        address: Address,
        options: BackendOptions,
        ssh_settings: SSHSettings,
        settings: MuxSettings,
    ) -> AsyncIterator[StreamProvider]:
        config = options.ssh or SSHConfig()
        known_hosts: Any = ()
        if config.known_hosts is not None:
            known_hosts = _require_file(config.known_hosts, "known_hosts", "a known_hosts file")
        client_keys: Any = ()
        agent: Any = ()
        if config.identity is not None:
            identity = _require_file(config.identity, "identity", "a private key")
            try:
                client_keys = [asyncssh.read_private_key(identity)]
            except (asyncssh.KeyImportError, OSError) as exc:
                raise ConfigError(f"{identity}: {exc}", path="ssh.identity") from exc
            agent = None
        async with open_bridge() as bridge:
            provider = SSHProvider(bridge, ssh_settings, settings, client=True)
            try:
                with anyio.fail_after(options.connect_timeout):
                    conn = await bridge.run(
                        asyncssh.connect,
                        address.host,
                        address.port,
                        client_factory=lambda: _ClientOwner(provider),
                        known_hosts=known_hosts,
                        client_keys=client_keys,
                        agent_path=agent,
                        username=config.user,
                        password=None,
                        password_auth=False,
                        kbdint_auth=False,
                        gss_auth=False,
                        host_based_auth=False,
                        config=None,
                        keepalive_interval=ssh_settings.keepalive_interval,
                        keepalive_count_max=ssh_settings.keepalive_count_max,
                        login_timeout=ssh_settings.login_timeout,
                        compression_algs=NO_COMPRESSION,
                        encryption_algs=CIPHERS,
                    )
            except TimeoutError:
                raise ConnectionLost(
                    f"ssh to {address} timed out after {options.connect_timeout} s"
                ) from None
            except asyncssh.HostKeyNotVerifiable as exc:
                where = config.known_hosts or "~/.ssh/known_hosts"
                raise HostKeyNotVerified(
                    f"the host key of {address} is not trusted by {where}: {exc.reason}"
                ) from exc
            except asyncssh.PermissionDenied as exc:
                user = config.user or "the current user"
                raise AuthenticationFailed(
                    f"ssh to {address} as {user}: no key was accepted ({exc.reason})"
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                raise translate_error(exc, f"ssh to {address} failed") from exc
            provider.attach(conn)
            try:
                async with provider:
                    yield provider
            finally:
                conn.abort()

    def serve(
        self,
        address: str,
        options: BackendOptions | None = None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        return self._serve_parsed(address, options, None, handler)

    def _serve_parsed(
        self,
        address: str,
        options: BackendOptions | None,
        hand_out: ObjectSendStream[SSHProvider] | None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        parsed = Address.parse(address, default_port=22)
        if parsed.scheme != "tcp":
            raise ConfigError(f"the ssh backend listens on HOST:PORT, not {address!r}")
        ssh_settings, settings = split_settings(options)
        config = (options.ssh if options is not None else None) or SSHConfig()
        host_key = _require_file(config.host_key, "host_key", "a host key (--ssh-host-key)")
        authorized = _require_file(
            config.authorized_keys,
            "authorized_keys",
            "an authorized_keys file (--ssh-authorized-keys)",
        )
        try:
            key = asyncssh.read_private_key(host_key)
        except (asyncssh.KeyImportError, OSError) as exc:
            raise ConfigError(f"{host_key}: {exc}", path="ssh.host_key") from exc
        try:
            authorized_keys = asyncssh.read_authorized_keys(authorized)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{authorized}: {exc}", path="ssh.authorized_keys") from exc
        return self._serve(parsed, key, authorized_keys, ssh_settings, settings, handler, hand_out)

    def serve_connections(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[tuple[SSHStreamServer, ObjectReceiveStream[SSHProvider]]]:
        """Like :meth:`serve`, but hand out each connection's provider, unlistened, for
        the caller to use as a whole (tests, or a server that treats connections apart).

        Yields the server and a stream of providers, one per authenticated connection;
        a provider stays open until it closes or the server does.
        """
        send, receive = anyio.create_memory_object_stream[SSHProvider](16)
        server_context = self._serve_parsed(address, options, send)

        @asynccontextmanager
        async def run() -> AsyncIterator[tuple[SSHStreamServer, ObjectReceiveStream[SSHProvider]]]:
            with send, receive:
                async with server_context as server:
                    assert isinstance(server, SSHStreamServer)
                    yield server, receive

        return run()

    @asynccontextmanager
    async def _serve(
        self,
        address: Address,
        host_key: asyncssh.SSHKey,
        authorized_keys: asyncssh.SSHAuthorizedKeys,
        ssh_settings: SSHSettings,
        settings: MuxSettings,
        handler: Handler | None,
        hand_out: ObjectSendStream[SSHProvider] | None,
    ) -> AsyncIterator[StreamServer]:
        async with open_bridge() as bridge, anyio.create_task_group() as group:
            server = SSHStreamServer(bridge, ssh_settings, settings, handler, group)
            server._hand_out = hand_out
            try:
                acceptor = await bridge.run(
                    asyncssh.create_server,
                    lambda: _ServerOwner(server),
                    address.host,
                    address.port,
                    server_host_keys=[host_key],
                    authorized_client_keys=authorized_keys,
                    password_auth=False,
                    kbdint_auth=False,
                    gss_auth=False,
                    host_based_auth=False,
                    allow_pty=False,
                    agent_forwarding=False,
                    x11_forwarding=False,
                    config=None,
                    keepalive_interval=ssh_settings.keepalive_interval,
                    keepalive_count_max=ssh_settings.keepalive_count_max,
                    login_timeout=ssh_settings.login_timeout,
                    compression_algs=NO_COMPRESSION,
                    encryption_algs=CIPHERS,
                )
            except OSError as exc:
                raise ConnectionLost(f"cannot listen on {address}: {exc}") from exc
            server._acceptor = acceptor
            server._address = str(Address("tcp", host=address.host, port=acceptor.get_port()))
            try:
                yield server
            finally:
                await server.aclose()
                group.cancel_scope.cancel()
