"""Keys, options and connected pairs for the SSH backend's tests."""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import asyncssh

from streams._core.backend import BackendOptions, SSHConfig
from streams.backends.ssh import BACKEND, SSHProvider
from streams.testing import ProviderPair


@dataclass(frozen=True)
class Keys:
    """Key files generated for one test session."""

    directory: Path
    host_key: Path
    host_public: str
    user_key: Path
    user_public: str
    authorized_keys: Path
    other_key: Path

    def known_hosts(self, port: int, *, key: str | None = None) -> Path:
        """A known_hosts file vouching for *key* (the host key) at 127.0.0.1:PORT."""
        path = self.directory / f"known_hosts-{port}-{'other' if key else 'host'}"
        path.write_text(f"[127.0.0.1]:{port} {key or self.host_public}\n")
        return path


def make_keys(directory: Path) -> Keys:
    """Generate a host key, a user key (authorized) and a stranger's key in *directory*."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    publics: dict[str, str] = {}
    for name in ("host", "user", "other"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        path = directory / f"{name}_ed25519"
        key.write_private_key(str(path))
        path.chmod(0o600)
        public = key.export_public_key().decode().strip()
        (directory / f"{name}_ed25519.pub").write_text(public + "\n")
        paths[name] = path
        publics[name] = public
    authorized = directory / "authorized_keys"
    authorized.write_text(publics["user"] + "\n")
    return Keys(
        directory=directory,
        host_key=paths["host"],
        host_public=publics["host"],
        user_key=paths["user"],
        user_public=publics["user"],
        authorized_keys=authorized,
        other_key=paths["other"],
    )


def server_options(keys: Keys, **settings: Any) -> BackendOptions:
    return BackendOptions(
        ssh=SSHConfig(host_key=str(keys.host_key), authorized_keys=str(keys.authorized_keys)),
        settings=settings,
    )


def client_options(
    keys: Keys, port: int, *, identity: Path | None = None, **settings: Any
) -> BackendOptions:
    return BackendOptions(
        ssh=SSHConfig(
            identity=str(identity or keys.user_key),
            known_hosts=str(keys.known_hosts(port)),
            user=getpass.getuser(),
        ),
        settings=settings,
    )


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@asynccontextmanager
async def ssh_pair(keys: Keys, **settings: Any) -> AsyncIterator[ProviderPair]:
    """A client and a server provider joined by a real SSH connection on loopback."""
    async with BACKEND.serve_connections("127.0.0.1:0", server_options(keys, **settings)) as (
        server,
        providers,
    ):
        port = port_of(server.address)
        async with BACKEND.connect(server.address, client_options(keys, port, **settings)) as c:
            with anyio.fail_after(10):
                remote = await providers.receive()
            client = c
            assert isinstance(client, SSHProvider)

            async def break_connection() -> None:
                assert client.conn is not None
                transport = client.conn._transport  # the socket, cut without a goodbye
                assert transport is not None
                transport.abort()
                await anyio.lowlevel.checkpoint()

            yield ProviderPair(client=client, server=remote, break_connection=break_connection)
