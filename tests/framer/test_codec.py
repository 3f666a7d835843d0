"""The sans-IO codec: test vectors, incremental parsing and strict validation."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.backends.framer.codec import (
    BlockKind,
    DataReceived,
    Flag,
    FrameDecoder,
    FramerProtocolError,
    GoAwayCode,
    GoAwayReceived,
    HeaderBlock,
    HeaderBlockReader,
    PingReceived,
    WindowUpdated,
    encode_data_header,
    encode_frame_header,
    encode_go_away,
    encode_header_block,
    encode_ping,
    encode_window_update,
)

VECTORS = [
    (encode_data_header(1, 5, Flag.SYN), "00 00 00 01 00 00 00 01 00 00 00 05"),
    (encode_window_update(2, 262144, Flag.ACK), "00 01 00 02 00 00 00 02 00 04 00 00"),
    (encode_window_update(3, 8, Flag.RST), "00 01 00 08 00 00 00 03 00 00 00 08"),
    (encode_ping(7), "00 02 00 01 00 00 00 00 00 00 00 07"),
    (encode_ping(7, ack=True), "00 02 00 02 00 00 00 00 00 00 00 07"),
    (encode_go_away(GoAwayCode.PROTOCOL_ERROR), "00 03 00 00 00 00 00 00 00 00 00 01"),
]

BLOCK_VECTORS = [
    (
        HeaderBlock(kind=BlockKind.OPEN, headers=(("path", "/a"),)),
        "01 00 00 00 0e 00 01 00 04 70 61 74 68 00 00 00 02 2f 61",
    ),
    (HeaderBlock(kind=BlockKind.ACCEPT), "02 00 00 00 02 00 00"),
    (
        HeaderBlock(
            kind=BlockKind.REJECT,
            code=7,
            reason="busy",
            retryable=True,
            headers=(("x-why", "full"),),
        ),
        "03 00 00 00 1c 00 00 00 07 01 00 04 62 75 73 79 00 01 00 05 78 2d 77 68 79"
        " 00 00 00 04 66 75 6c 6c",
    ),
]


@pytest.mark.parametrize(("encoded", "expected"), VECTORS)
def test_frame_vectors(encoded: bytes, expected: str) -> None:
    assert encoded == bytes.fromhex(expected)


@pytest.mark.parametrize(("block", "expected"), BLOCK_VECTORS)
def test_header_block_vectors(block: HeaderBlock, expected: str) -> None:
    raw = bytes.fromhex(expected)
    assert encode_header_block(block) == raw
    reader = HeaderBlockReader((block.kind,), limit=1024)
    decoded, rest = reader.feed(raw + b"after")
    assert decoded == block
    assert rest == b"after"


def test_decoder_events_from_vectors() -> None:
    # a server sees the client's stream 1 and its own stream 2
    decoder = FrameDecoder(client=False)
    assert decoder.allocate_stream_id() == 2
    wire = (
        encode_data_header(1, 5, Flag.SYN)
        + b"hello"
        + encode_window_update(2, 262144, Flag.ACK)
        + encode_ping(7)
        + encode_ping(9, ack=True)
        + encode_go_away(GoAwayCode.NORMAL)
    )
    assert decoder.receive_data(wire) == [
        DataReceived(stream_id=1, data=b"hello", flags=Flag.SYN),
        WindowUpdated(stream_id=2, increment=262144, flags=Flag.ACK),
        PingReceived(opaque=7, ack=False),
        PingReceived(opaque=9, ack=True),
        GoAwayReceived(code=GoAwayCode.NORMAL),
    ]
    assert decoder.idle


def _stream_of_frames() -> tuple[bytes, bytes]:
    rng = random.Random(5)
    wire = bytearray()
    payload = bytearray()
    wire += encode_window_update(1, 0, Flag.SYN)
    for index in range(50):
        data = rng.randbytes(rng.randrange(0, 3000))
        flags = Flag.FIN if index == 49 else 0
        wire += encode_data_header(1, len(data), flags) + data
        payload += data
    return bytes(wire), bytes(payload)


@pytest.mark.parametrize("piece", [1, 5, 11, 12, 13, 100, 4096])
def test_any_split_gives_the_same_bytes_and_flags(piece: int) -> None:
    wire, payload = _stream_of_frames()
    decoder = FrameDecoder(client=False)
    events = []
    for start in range(0, len(wire), piece):
        events += decoder.receive_data(wire[start : start + piece])
    data = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert data == payload
    fins = [e for e in events if isinstance(e, DataReceived) and e.flags & Flag.FIN]
    assert len(fins) == 1
    assert fins[0] is [e for e in events if isinstance(e, DataReceived)][-1]
    assert decoder.idle


def test_syn_only_on_first_piece_and_fin_only_on_last() -> None:
    decoder = FrameDecoder(client=False)
    wire = encode_data_header(1, 6, Flag.SYN | Flag.FIN) + b"abcdef"
    events = decoder.receive_data(wire[:14]) + decoder.receive_data(wire[14:16])
    events += decoder.receive_data(wire[16:])
    assert [(e.data, e.flags) for e in events if isinstance(e, DataReceived)] == [
        (b"ab", Flag.SYN),
        (b"cd", 0),
        (b"ef", Flag.FIN),
    ]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x01" + encode_ping(1)[1:], "version"),
        (encode_frame_header(4, 0, 0, 0), "unknown frame type"),
        (encode_frame_header(0, 0x10, 1, 0), "unknown flags"),
        (encode_data_header(0, 0), "stream 0"),
        (encode_frame_header(2, Flag.SYN, 1, 0), "on stream"),
        (encode_frame_header(2, Flag.FIN, 0, 0), "ping with flags"),
        (encode_frame_header(3, 0, 0, 9), "go away code"),
        (encode_frame_header(3, Flag.ACK, 0, 0), "go away with flags"),
        (encode_data_header(3, 0), "never opened"),
        (encode_data_header(2, 0), "never opened"),
        (encode_window_update(2, 0, Flag.SYN), "our parity"),
        (encode_window_update(1, 0, Flag.SYN | Flag.ACK), "SYN and ACK"),
    ],
)
def test_malformed_frames_are_protocol_errors(frame: bytes, message: str) -> None:
    decoder = FrameDecoder(client=False)
    with pytest.raises(FramerProtocolError, match=message) as caught:
        decoder.receive_data(frame)
    assert caught.value.go_away == GoAwayCode.PROTOCOL_ERROR


def test_reused_stream_id_is_a_protocol_error() -> None:
    decoder = FrameDecoder(client=True)
    decoder.receive_data(encode_window_update(2, 0, Flag.SYN))
    decoder.receive_data(encode_window_update(4, 0, Flag.SYN))
    decoder.receive_data(encode_window_update(2, 0, 0))  # opened (maybe finished): allowed
    with pytest.raises(FramerProtocolError, match="twice"):
        decoder.receive_data(encode_window_update(2, 0, Flag.SYN))


def test_oversized_data_frame_is_a_flow_control_error() -> None:
    decoder = FrameDecoder(client=False, max_data_length=1000)
    with pytest.raises(FramerProtocolError) as caught:
        decoder.receive_data(encode_data_header(1, 1001, Flag.SYN))
    assert caught.value.flow_control


def test_header_block_split_anywhere() -> None:
    raw = bytes.fromhex(BLOCK_VECTORS[2][1])
    for split in range(len(raw) + 1):
        reader = HeaderBlockReader((BlockKind.ACCEPT, BlockKind.REJECT), limit=100)
        first, rest = reader.feed(raw[:split])
        if split < len(raw):
            assert first is None
            assert rest == b""
            block, rest = reader.feed(raw[split:] + b"x")
        else:
            block = first
            rest = rest + b"x"
        assert block == BLOCK_VECTORS[2][0]
        assert rest == b"x"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("02 00 00 00 00", "unexpected header block kind"),
        ("01 00 01 00 00", "exceeds the limit"),
        ("01 00 00 00 02 00 01", "ends early"),
        ("01 00 00 00 03 00 00 ff", "stray bytes"),
        ("01 00 00 00 09 00 01 00 00 00 00 00 00 00", "empty header name"),
        ("01 00 00 00 0a 00 01 00 01 ff 00 00 00 00 00", "UTF-8"),
    ],
)
def test_malformed_header_blocks(raw: str, message: str) -> None:
    reader = HeaderBlockReader((BlockKind.OPEN,), limit=1000)
    with pytest.raises(FramerProtocolError, match=message):
        reader.feed(bytes.fromhex(raw))


def test_reject_with_bad_retry_flag() -> None:
    raw = bytes.fromhex("03 00 00 00 09 00 00 00 07 02 00 00 00 00")
    with pytest.raises(FramerProtocolError, match="retry flag"):
        HeaderBlockReader((BlockKind.REJECT,), limit=100).feed(raw)


def test_encoding_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        encode_header_block(HeaderBlock(kind=BlockKind.OPEN, headers=(("a", "b" * 100),)), 50)
    with pytest.raises(ValueError, match="name"):
        encode_header_block(HeaderBlock(kind=BlockKind.OPEN, headers=(("", "b"),)))


# -- property-based: random and mutated input gives events or a protocol error -----------

_header_lists = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=20)))


@st.composite
def _valid_wire(draw: st.DrawFn) -> bytes:
    wire = bytearray()
    opened = 0
    for _ in range(draw(st.integers(1, 12))):
        choice = draw(st.integers(0, 4))
        if choice == 0 or opened == 0:
            opened += 2
            block = encode_header_block(
                HeaderBlock(kind=BlockKind.OPEN, headers=tuple(draw(_header_lists)))
            )
            wire += encode_data_header(opened, len(block), Flag.SYN) + block
        elif choice == 1:
            data = draw(st.binary(max_size=64))
            wire += encode_data_header(opened, len(data), draw(st.sampled_from([0, 4, 8]))) + data
        elif choice == 2:
            wire += encode_window_update(opened, draw(st.integers(0, 2**32 - 1)))
        elif choice == 3:
            wire += encode_ping(draw(st.integers(0, 2**32 - 1)), ack=draw(st.booleans()))
        else:
            wire += encode_go_away(GoAwayCode(draw(st.integers(0, 2))))
    return bytes(wire)


def _feed_everything(wire: bytes, split: int) -> None:
    decoder = FrameDecoder(client=True, max_data_length=1 << 20)
    readers: dict[int, HeaderBlockReader | None] = {}
    try:
        for start in range(0, len(wire), split):
            for event in decoder.receive_data(wire[start : start + split]):
                if not isinstance(event, DataReceived) or event.stream_id % 2:
                    continue
                reader = readers.setdefault(
                    event.stream_id, HeaderBlockReader((BlockKind.OPEN,), 1 << 16)
                )
                if reader is not None and reader.feed(event.data)[0] is not None:
                    readers[event.stream_id] = None
    except FramerProtocolError as exc:
        code = exc.go_away
        if code not in (GoAwayCode.PROTOCOL_ERROR, GoAwayCode.INTERNAL_ERROR):
            raise AssertionError(f"unexpected go away code {code}") from exc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_random_bytes_give_events_or_a_protocol_error(wire: bytes, split: int) -> None:
    _feed_everything(wire, split)


@settings(max_examples=300, deadline=None)
@given(_valid_wire(), st.integers(1, 40), st.data())
def test_mutated_frames_give_events_or_a_protocol_error(
    wire: bytes, split: int, data: st.DataObject
) -> None:
    mutated = bytearray(wire)
    for _ in range(data.draw(st.integers(0, 4))):
        if not mutated:
            break
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    _feed_everything(bytes(mutated), split)


@settings(max_examples=200, deadline=None)
@given(_valid_wire(), st.integers(1, 40))
def test_valid_frames_parse_without_error(wire: bytes, split: int) -> None:
    decoder = FrameDecoder(client=True, max_data_length=1 << 20)
    for start in range(0, len(wire), split):
        decoder.receive_data(wire[start : start + split])
    assert decoder.idle


@settings(max_examples=200, deadline=None)
@given(_header_lists, st.binary(max_size=30))
def test_header_blocks_round_trip(headers: list[tuple[str, str]], after: bytes) -> None:
    block = HeaderBlock(kind=BlockKind.OPEN, headers=tuple(headers))
    reader = HeaderBlockReader((BlockKind.OPEN,), 1 << 20)
    decoded, rest = reader.feed(encode_header_block(block) + after)
    assert decoded == block
    assert rest == after


def test_syns_may_arrive_out_of_order_but_only_once() -> None:
    # yamux allocates ids before it sends their SYNs, so concurrent opens cross on the wire
    decoder = FrameDecoder(client=False)
    for stream_id in (5, 1, 3, 9):
        decoder.receive_data(encode_window_update(stream_id, 0, Flag.SYN))
    with pytest.raises(FramerProtocolError, match="never opened"):
        decoder.receive_data(encode_window_update(7, 0, 0))
    decoder.receive_data(encode_window_update(7, 0, Flag.SYN))
    decoder.receive_data(encode_window_update(7, 0, 0))
    with pytest.raises(FramerProtocolError, match="twice"):
        decoder.receive_data(encode_window_update(3, 0, Flag.SYN))


def test_far_older_gaps_are_forgotten() -> None:
    decoder = FrameDecoder(client=True)
    decoder.receive_data(encode_window_update(100_002, 0, Flag.SYN))
    with pytest.raises(FramerProtocolError, match="twice"):
        decoder.receive_data(encode_window_update(2, 0, Flag.SYN))
