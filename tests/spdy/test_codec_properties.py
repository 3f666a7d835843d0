"""Property-based tests of the SPDY codec: whatever arrives, the only outcomes are events or
a SessionError; header blocks survive a round trip; chunking changes
only where a data payload is cut into pieces."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.backends.spdy import codec as spdy
from streams.backends.spdy.codec import (
    RstStatus,
    SessionError,
    SpdyCodec,
    decode_header_block,
    encode_header_block,
)

names = (
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=12,
    )
    .map(str.lower)
    .filter(lambda name: name == name.lower() and name)
)
values = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
)
header_lists = st.lists(st.tuples(names, values), max_size=8)


def transcript(headers: list[tuple[str, str]], payloads: list[bytes]) -> bytes:
    """A client's side of a plausible session."""
    client = SpdyCodec(client=True)
    wire = client.settings([(7, 1 << 20)])
    stream_id = client.next_stream_id()
    wire += client.syn_stream(stream_id, headers)
    for payload in payloads:
        wire += client.data_header(stream_id, len(payload)) + payload
    wire += client.ping(client.next_ping_id())
    wire += client.window_update(0, 1000)
    other = client.next_stream_id()
    wire += client.syn_stream(other, headers, fin=True)
    wire += client.rst_stream(other, RstStatus.CANCEL)
    wire += client.data_header(stream_id, 0, fin=True)
    wire += client.goaway()
    return wire


def feed(data: bytes, chunks: list[int] | None = None) -> list[object] | str:
    server = SpdyCodec(client=False, max_header_block=4096)
    events: list[object] = []
    try:
        if chunks is None:
            events += server.receive_data(data)
        else:
            position = 0
            for size in chunks:
                events += server.receive_data(data[position : position + size])
                position += size
            events += server.receive_data(data[position:])
    except SessionError as exc:
        return f"session error: {exc}"
    return events


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_give_events_or_a_session_error(data: bytes) -> None:
    feed(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    header_lists,
    st.lists(st.binary(max_size=300), max_size=4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 20_000),
)
def test_mutated_sessions_give_events_or_a_session_error(
    headers: list[tuple[str, str]],
    payloads: list[bytes],
    mutations: list[tuple[int, int]],
    cut: int,
) -> None:
    wire = bytearray(transcript(headers, payloads))
    for position, value in mutations:
        if wire:
            wire[position % len(wire)] = value
    feed(bytes(wire[: max(cut, 0)]))
    feed(bytes(wire))


@settings(max_examples=200)
@given(header_lists, st.lists(st.binary(max_size=300), max_size=4), st.data())
def test_chunking_never_changes_the_events(
    headers: list[tuple[str, str]], payloads: list[bytes], data: st.DataObject
) -> None:
    wire = transcript(headers, payloads)
    chunks = data.draw(st.lists(st.integers(1, 64), max_size=40))
    assert merged(feed(wire, chunks)) == merged(feed(wire))


def merged(events: list[spdy.Event] | str) -> list[spdy.Event] | str:
    """*events* with the pieces of each data frame joined: a payload comes out as it
    arrives, so only the pieces' boundaries depend on the chunking."""
    if isinstance(events, str):
        return events
    out: list[spdy.Event] = []
    pending: spdy.DataReceived | None = None
    for event in events:
        if pending is not None:
            if isinstance(event, spdy.DataReceived) and event.stream_id == pending.stream_id:
                pending = spdy.DataReceived(
                    stream_id=event.stream_id,
                    data=pending.data + event.data,
                    fin=event.fin,
                    open=event.open,
                )
                if event.fin:
                    out.append(pending)
                    pending = None
                continue
            out.append(pending)
            pending = None
        if isinstance(event, spdy.DataReceived) and not event.fin:
            pending = event
        else:
            out.append(event)
    if pending is not None:
        out.append(pending)
    return out


@settings(max_examples=300)
@given(header_lists)
def test_header_blocks_round_trip(headers: list[tuple[str, str]]) -> None:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    expected = tuple((name, value) for name, items in grouped.items() for value in items)
    assert decode_header_block(encode_header_block(headers)) == expected
