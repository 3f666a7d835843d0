"""End to end: an HTTP/2 peer whose response header is not UTF-8 makes our client's stream
fail with :class:`streams.ProtocolError`, not h2's ``UnicodeDecodeError`` (a fuzzer
finding; see ``test_fuzz_findings.py`` for the codec-level check)."""

from __future__ import annotations

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import pytest

from streams import ProtocolError
from streams.backends.http2 import BACKEND


async def _bad_server(client: anyio.abc.SocketStream) -> None:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    connection = h2.connection.H2Connection(config)
    connection.initiate_connection()
    await client.send(connection.data_to_send())
    async with client:
        while True:
            try:
                data = await client.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = [(b":status", b"200"), (b"x-latin", b"caf\xe9")]
                    connection.send_headers(event.stream_id, headers)
            outgoing = connection.data_to_send()
            if outgoing:
                await client.send(outgoing)


@pytest.mark.anyio
async def test_a_response_header_that_is_not_utf8_is_a_protocol_error() -> None:
    with anyio.fail_after(15):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, _bad_server)
            async with BACKEND.connect(f"127.0.0.1:{port}") as provider:
                with pytest.raises(ProtocolError):
                    stream = await provider.open_stream({"x-a": "1"})
                    await stream.accepted()
            group.cancel_scope.cancel()
