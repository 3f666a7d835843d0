"""The sans-IO SPDY/3.1 codec: byte-exact vectors for every frame type, header blocks,
decompression bombs, stream rules, and two codecs joined without an event loop."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from streams.backends.spdy import codec as spdy
from streams.backends.spdy._dictionary import DICTIONARY
from streams.backends.spdy.codec import (
    GoAwayStatus,
    HeaderCompressor,
    HeaderDecompressor,
    RstStatus,
    SessionError,
    SpdyCodec,
    decode_header_block,
    encode_header_block,
)

# Written by docker/spdystream's framer (Go's zlib, best compression), one context for all
# three: a SYN_STREAM with FIN and x-multi: one, two; a SYN_REPLY and a HEADERS with
# x-echo: a.
GO_SYN_STREAM = bytes.fromhex(
    "800300010100002c0000000100000000000078f9e3c6a7c26260606004a5c70adddcd29c924c70e99c97ca"
    "50529e0f000000ffff"
)
GO_SYN_REPLY = bytes.fromhex("80030002000000160000000182cab055e8a62667e483788900000000ffff")
GO_HEADERS = bytes.fromhex("800300080000000c00000001c22204000000ffff")


def test_the_dictionary_is_spdy3s() -> None:
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


# -- byte-exact frames ----------------------------------------------------------------------


def test_rst_stream_bytes() -> None:
    frame = SpdyCodec(client=True).rst_stream(5, RstStatus.CANCEL)
    assert frame == bytes.fromhex("80030003 00000008 00000005 00000005")


def test_settings_bytes() -> None:
    frame = SpdyCodec(client=True).settings([(7, 0x40000), (4, 100)])
    assert frame == bytes.fromhex("80030004 00000014 00000002 00000007 00040000 00000004 00000064")


def test_ping_bytes() -> None:
    assert SpdyCodec(client=True).ping(1) == bytes.fromhex("80030006 00000004 00000001")


def test_goaway_bytes_name_the_last_remote_stream() -> None:
    codec = SpdyCodec(client=False)
    codec.receive_data(GO_SYN_STREAM)
    assert codec.goaway(GoAwayStatus.PROTOCOL_ERROR) == bytes.fromhex(
        "80030007 00000008 00000001 00000001"
    )


def test_window_update_bytes() -> None:
    frame = SpdyCodec(client=True).window_update(0, 0x10000)
    assert frame == bytes.fromhex("80030009 00000008 00000000 00010000")


def test_data_header_bytes() -> None:
    codec = SpdyCodec(client=True)
    assert codec.data_header(3, 5) == bytes.fromhex("00000003 00000005")
    assert codec.data_header(3, 0, fin=True) == bytes.fromhex("00000003 01000000")


def test_syn_stream_reply_and_headers_frames() -> None:
    codec = SpdyCodec(client=True)
    stream_id = codec.next_stream_id()
    frame = codec.syn_stream(stream_id, [("X-Multi", "one"), ("x-multi", "two")], fin=True)
    # version 3, type 1, FIN, length; stream 1, no association, priority 0, slot 0
    assert frame[:18] == bytes.fromhex("80030001 01") + (len(frame) - 8).to_bytes(3, "big") + (
        bytes.fromhex("00000001 00000000 0000")
    )
    block = HeaderDecompressor(1024).decompress(frame[18:])
    assert block == bytes.fromhex("00000001 00000007") + b"x-multi" + (
        bytes.fromhex("00000007") + b"one\x00two"
    )
    reply = codec.syn_reply(2, [("a", "b")])
    assert reply[:12] == bytes.fromhex("80030002 00") + (len(reply) - 8).to_bytes(3, "big") + (
        bytes.fromhex("00000002")
    )
    headers = codec.headers(2, [("a", "b")], fin=True)
    assert headers[:12] == bytes.fromhex("80030008 01") + (len(headers) - 8).to_bytes(
        3, "big"
    ) + bytes.fromhex("00000002")


def test_decodes_what_go_spdystream_writes() -> None:
    codec = SpdyCodec(client=False)
    [opened] = codec.receive_data(GO_SYN_STREAM)
    assert opened == spdy.StreamOpened(
        stream_id=1, headers=(("x-multi", "one"), ("x-multi", "two")), fin=True
    )
    decompressor = HeaderDecompressor(1024)
    decompressor.decompress(GO_SYN_STREAM[18:])
    assert decode_header_block(decompressor.decompress(GO_SYN_REPLY[12:])) == (("x-echo", "a"),)
    assert decode_header_block(decompressor.decompress(GO_HEADERS[12:])) == (("x-echo", "a"),)


def test_every_received_control_frame_type() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    stream_id = client.next_stream_id()
    wire = client.syn_stream(stream_id, [("k", "v")])
    wire += client.settings([(spdy.SettingId.INITIAL_WINDOW_SIZE, 1 << 20)], clear=True)
    wire += client.ping(1)
    wire += client.window_update(stream_id, 10)
    wire += client.window_update(0, 20)
    wire += client.data_header(stream_id, 3) + b"abc"
    wire += client.data_header(stream_id, 0, fin=True)
    wire += client.rst_stream(stream_id, RstStatus.CANCEL)
    wire += client.goaway()
    events = server.receive_data(wire)
    assert events == [
        spdy.StreamOpened(stream_id=1, headers=(("k", "v"),), fin=False),
        spdy.SettingsReceived(settings=((7, 1 << 20),), clear=True),
        spdy.PingReceived(ping_id=1),
        spdy.WindowUpdateReceived(stream_id=1, delta=10),
        spdy.WindowUpdateReceived(stream_id=0, delta=20),
        spdy.DataReceived(stream_id=1, data=b"abc", fin=False),
        spdy.DataReceived(stream_id=1, data=b"", fin=True),
        spdy.ResetReceived(stream_id=1, status=RstStatus.CANCEL),
        spdy.GoAwayReceived(last_stream_id=0, status=0),
    ]
    reply = server.syn_reply(1, [("r", "1"), ("r", "2")], fin=True)
    assert client.receive_data(reply) == []  # the stream was reset: a late reply is ignored


def test_reply_and_headers_reach_the_opener_byte_by_byte() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "1")]))
    wire = server.syn_reply(1, [("r", "1"), ("r", "2")])
    wire += server.headers(1, [("t", "x")], fin=True)
    events: list[spdy.Event] = []
    for index in range(len(wire)):
        events += client.receive_data(wire[index : index + 1])
    assert events == [
        spdy.ReplyReceived(stream_id=1, headers=(("r", "1"), ("r", "2")), fin=False),
        spdy.HeadersReceived(stream_id=1, headers=(("t", "x"),), fin=True),
    ]


def test_unknown_control_frames_are_ignored() -> None:
    frame = bytes.fromhex("8003000a 00000004 deadbeef")
    assert SpdyCodec(client=True).receive_data(frame) == []


# -- header blocks --------------------------------------------------------------------------


def test_header_block_groups_and_lowercases() -> None:
    block = encode_header_block([("A", "1"), ("b", "2"), ("a", "3")])
    assert decode_header_block(block) == (("a", "1"), ("a", "3"), ("b", "2"))


@pytest.mark.parametrize(
    "headers",
    [[("", "x")], [("a", "x\x00y")], [("a", ""), ("a", "b")]],
    ids=["empty-name", "nul-in-value", "empty-among-several"],
)
def test_headers_that_cannot_travel(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match=r"."):
        encode_header_block(headers)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"\x00\x00", "shorter"),
        (bytes.fromhex("00000001 00000001") + b"A" + bytes.fromhex("00000000"), "lower case"),
        (
            bytes.fromhex("00000002")
            + (bytes.fromhex("00000001") + b"a" + bytes.fromhex("00000001") + b"x") * 2,
            "twice",
        ),
        (bytes.fromhex("00000001 00000000 00000000"), "empty header name"),
        (
            bytes.fromhex("00000001 00000001") + b"a" + bytes.fromhex("00000003") + b"x\x00\x00",
            "empty",
        ),
        (bytes.fromhex("7fffffff"), "announces"),
        (bytes.fromhex("00000001 00000009") + b"abcdefgh", "truncated"),
        (bytes.fromhex("00000000 00"), "after"),
    ],
)
def test_malformed_header_blocks(block: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_header_block(block)


def syn_stream_frame(compressor: HeaderCompressor, stream_id: int, block: bytes) -> bytes:
    payload = stream_id.to_bytes(4, "big") + bytes(6) + compressor.compress(block)
    return bytes.fromhex("80030001 00") + len(payload).to_bytes(3, "big") + payload


def test_a_malformed_block_fails_only_its_stream() -> None:
    server = SpdyCodec(client=False)
    compressor = HeaderCompressor()
    upper = bytes.fromhex("00000001 00000001") + b"A" + bytes.fromhex("00000000")
    [failed] = server.receive_data(syn_stream_frame(compressor, 1, upper))
    assert isinstance(failed, spdy.StreamFailed)
    assert failed.status == RstStatus.PROTOCOL_ERROR
    # the compression context survived: the next block decodes
    [opened] = server.receive_data(syn_stream_frame(compressor, 3, encode_header_block([])))
    assert opened == spdy.StreamOpened(stream_id=3, headers=(), fin=False)


def test_a_compression_bomb_is_refused_without_allocating_it() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    bomb = compressor.compress(bytes.fromhex("00000001 00000001") + b"a" + b"\x00\xff\xff\xff")
    bomb += compressor.compress(b"x" * (64 * 1024 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000
    payload = (1).to_bytes(4, "big") + bytes(6) + bomb
    frame = bytes.fromhex("80030001 00") + len(payload).to_bytes(3, "big") + payload
    codec = SpdyCodec(client=False, max_header_block=64 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(SessionError) as refused:
            codec.receive_data(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.limit == "max_header_block"
    assert peak < 2 * 1024 * 1024, f"decompressing the bomb took {peak} bytes"


# -- session errors -------------------------------------------------------------------------


def control(kind: int, payload: bytes, flags: int = 0, version: int = 3) -> bytes:
    return (
        (0x8000 | version).to_bytes(2, "big")
        + kind.to_bytes(2, "big")
        + bytes([flags])
        + len(payload).to_bytes(3, "big")
        + payload
    )


@pytest.mark.parametrize(
    "frame",
    [
        control(spdy.PING, b"\x00\x00\x00\x01", version=2),
        control(spdy.PING, b"\x00\x00\x01"),
        control(spdy.PING, b"\x00\x00\x00\x01", flags=1),
        control(spdy.RST_STREAM, bytes.fromhex("00000001 00000000")),
        control(spdy.RST_STREAM, bytes.fromhex("00000000 00000005")),
        control(spdy.GOAWAY, bytes.fromhex("00000000")),
        control(spdy.WINDOW_UPDATE, bytes.fromhex("00000000 00000000")),
        control(spdy.WINDOW_UPDATE, bytes.fromhex("00000009 00000001")),
        control(spdy.SETTINGS, bytes.fromhex("00000002 00000007 00010000")),
        control(spdy.SYN_STREAM, bytes.fromhex("00000001")),
        control(spdy.SYN_STREAM, bytes.fromhex("00000001 00000000 0000") + b"not zlib"),
        control(spdy.SYN_REPLY, b""),
        bytes.fromhex("00000000 00000001 00"),
        bytes.fromhex("00000001 02000000"),
    ],
    ids=[
        "version-2",
        "short-ping",
        "ping-flags",
        "rst-status-0",
        "rst-stream-0",
        "short-goaway",
        "window-update-0",
        "window-update-never-opened",
        "settings-count",
        "short-syn-stream",
        "not-zlib",
        "short-syn-reply",
        "data-on-stream-0",
        "data-flags",
    ],
)
def test_malformed_frames_are_session_errors(frame: bytes) -> None:
    codec = SpdyCodec(client=True)
    with pytest.raises(SessionError):
        codec.receive_data(frame)
    with pytest.raises(SessionError):
        codec.receive_data(b"")


def test_stream_ids_must_have_the_peers_parity_and_increase() -> None:
    client = SpdyCodec(client=True)
    for _ in range(2):
        client.next_stream_id()
    frame_3 = client.syn_stream(3, [("a", "b")])
    frame_1 = client.syn_stream(1, [("a", "b")])
    server = SpdyCodec(client=False)
    server.receive_data(frame_3)
    with pytest.raises(SessionError, match="increase"):
        server.receive_data(frame_1)
    even = SpdyCodec(client=True)
    with pytest.raises(SessionError, match="parity"):
        SpdyCodec(client=False).receive_data(even.syn_stream(2, [("a", "b")]))


def test_control_frames_above_the_limit_are_refused_before_they_are_buffered() -> None:
    codec = SpdyCodec(client=True, max_control_frame=1024)
    with pytest.raises(SessionError) as refused:
        codec.receive_data(bytes.fromhex("80030001 00100000"))
    assert refused.value.limit == "max_control_frame"


# -- stream errors --------------------------------------------------------------------------


def test_stream_errors() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")], fin=True))
    [late] = server.receive_data(client.data_header(1, 2) + b"xy")
    assert late == spdy.StreamFailed(
        stream_id=1,
        status=RstStatus.STREAM_ALREADY_CLOSED,
        reason="data after the peer's FIN",
        discarded=2,
    )
    [unknown] = server.receive_data(client.data_header(7, 1) + b"z")
    assert isinstance(unknown, spdy.StreamFailed)
    assert unknown.status == RstStatus.INVALID_STREAM
    # a stream the server closed (reset) ignores what is still in flight for it
    server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    server.rst_stream(3, RstStatus.CANCEL)
    [discarded] = server.receive_data(client.data_header(3, 1) + b"z")
    assert discarded == spdy.DataReceived(stream_id=3, data=b"z", fin=False, open=False)


def test_reply_rules() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    # data before SYN_REPLY on a stream this side opened
    [early] = client.receive_data(server.data_header(1, 1) + b"x")
    assert isinstance(early, spdy.StreamFailed)
    assert early.status == RstStatus.PROTOCOL_ERROR
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    reply = server.syn_reply(1, [])
    client.receive_data(reply)
    [twice] = client.receive_data(server.syn_reply(1, []))
    assert isinstance(twice, spdy.StreamFailed)
    assert twice.status == RstStatus.STREAM_IN_USE


def test_unidirectional_streams_are_refused() -> None:
    client = SpdyCodec(client=True)
    frame = bytearray(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    frame[4] = spdy.FLAG_UNIDIRECTIONAL
    [refused] = SpdyCodec(client=False).receive_data(bytes(frame))
    assert isinstance(refused, spdy.StreamFailed)
    assert refused.status == RstStatus.REFUSED_STREAM


def test_ping_ids_by_side() -> None:
    client, server = SpdyCodec(client=True), SpdyCodec(client=False)
    assert [client.next_ping_id(), client.next_ping_id()] == [1, 3]
    assert [server.next_ping_id(), server.next_ping_id()] == [2, 4]
    assert client.is_local_ping(5)
    assert not client.is_local_ping(2)
