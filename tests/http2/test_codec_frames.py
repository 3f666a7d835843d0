"""The codec's own frame paths (sans-IO): DATA frames serialized as header + payload and
kept as a list of chunks, DATA frames parsed from a view of the receive buffer. Each is
checked against stock h2 on the other end, whole and split at every byte."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from streams.backends.http2._codec import GracefulH2Connection, new_connection

REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
WINDOW = 1 << 20


def ours(*, client: bool) -> GracefulH2Connection:
    return new_connection(
        client=client,
        receive_window=WINDOW,
        connection_window=WINDOW,
        max_frame_size=16384,
        max_concurrent_streams=100,
        max_header_list_size=1 << 16,
    )


def stock(*, client: bool) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=client, header_encoding="utf-8")
    connection = h2.connection.H2Connection(config)
    connection.initiate_connection()
    connection.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
    connection.increment_flow_control_window(WINDOW)
    return connection


def exchange(
    sender: h2.connection.H2Connection, receiver: h2.connection.H2Connection, *, step: int = 0
) -> list[h2.events.Event]:
    """Move what *sender* queued to *receiver*, *step* bytes at a time (0: all at once)."""
    data = sender.data_to_send()
    if not step:
        return list(receiver.receive_data(data))
    events: list[h2.events.Event] = []
    for start in range(0, len(data), step):
        events.extend(receiver.receive_data(data[start : start + step]))
    return events


def handshake(a: h2.connection.H2Connection, b: h2.connection.H2Connection) -> None:
    for _ in range(3):
        exchange(a, b)
        exchange(b, a)


PAYLOADS = [b"", b"x", bytes(range(256)) * 40, b"y" * 16000]


@pytest.mark.parametrize("step", [0, 1, 7, 4096])
@pytest.mark.parametrize("pad", [None, 0, 9])
def test_data_we_send_reads_the_same_in_stock_h2(step: int, pad: int | None) -> None:
    client, server = ours(client=True), stock(client=False)
    handshake(client, server)
    client.send_headers(1, REQUEST)
    for payload in PAYLOADS:
        client.send_data(1, memoryview(payload), pad_length=pad)
    client.end_stream(1)
    events = exchange(client, server, step=step)
    received = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert b"".join(e.data for e in received) == b"".join(PAYLOADS)
    padding = 0 if pad is None else pad + 1
    assert sum(e.flow_controlled_length for e in received) == sum(
        len(p) + padding for p in PAYLOADS
    )
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


@pytest.mark.parametrize("step", [0, 1, 5, 9, 10, 4096])
@pytest.mark.parametrize("pad", [None, 0, 9])
def test_data_stock_h2_sends_reads_the_same_here(step: int, pad: int | None) -> None:
    client, server = stock(client=True), ours(client=False)
    handshake(client, server)
    client.send_headers(1, REQUEST)
    for payload in PAYLOADS:
        client.send_data(1, payload, pad_length=pad)
    client.end_stream(1)
    events = exchange(client, server, step=step)
    received = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert [e.data for e in received if e.data] == [p for p in PAYLOADS if p]
    padding = 0 if pad is None else pad + 1
    assert sum(e.flow_controlled_length for e in received) == sum(
        len(p) + padding for p in PAYLOADS
    )
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    # the frame buffer kept nothing after the last frame
    assert not server.incoming_buffer._data


def test_data_frame_inside_a_header_block_is_a_protocol_error() -> None:
    client, server = stock(client=True), ours(client=False)
    handshake(client, server)
    # a HEADERS frame without END_HEADERS, then a DATA frame (RFC 9113, section 4.3)
    block = bytes([0, 0, 1, 0x1, 0x0, 0, 0, 0, 1]) + b"\x82"
    data = bytes([0, 0, 1, 0x0, 0x0, 0, 0, 0, 1]) + b"x"
    with pytest.raises(h2.exceptions.ProtocolError):
        server.receive_data(block + data)


def test_chunks_keep_h2s_order_and_data_to_send_takes_an_amount() -> None:
    def queued(connection: GracefulH2Connection) -> None:
        connection.send_headers(1, REQUEST)
        connection.send_data(1, b"abc")
        connection.send_data(1, b"defg", end_stream=True)

    whole = ours(client=True)
    queued(whole)
    chunks = whole.take_chunks()
    # the preface h2 writes to its own buffer comes before the frames queued after it
    assert chunks[0].startswith(b"PRI * HTTP/2.0")
    assert whole.take_chunks() == []

    split = ours(client=True)
    queued(split)
    first = split.data_to_send(5)
    assert len(first) == 5
    assert first + split.data_to_send() == b"".join(chunks)

    cleared = ours(client=True)
    queued(cleared)
    cleared.clear_outbound_data_buffer()
    assert cleared.data_to_send() == b""
