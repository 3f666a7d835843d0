"""The SSH backend's own frames, without a loop or a socket."""

import pytest

from streams.backends.ssh._codec import (
    GOAWAY,
    MAX_FRAME,
    PING,
    PONG,
    CodecError,
    ControlMessage,
    ControlReader,
    FrameReader,
    HeaderLimitError,
    OpenFrame,
    ReplyFrame,
    decode_open,
    decode_reply,
    encode_control,
    encode_open,
    encode_reply,
    format_host_port,
    parse_host_port,
)


def test_open_frame_round_trip_byte_by_byte() -> None:
    headers = (("X-Multi", "one"), ("x-multi", "twö"), ("empty", ""))
    wire = encode_open(headers) + b"data after"
    reader = FrameReader(reply=False)
    for index in range(len(wire) - len(b"data after") - 1):
        frame, rest = reader.feed(wire[index : index + 1])
        assert frame is None
        assert rest == b""
    frame, rest = reader.feed(wire[len(wire) - len(b"data after") - 1 :])
    assert frame == OpenFrame(headers=headers)
    assert rest == b"data after"


def test_reply_frames_carry_the_decision() -> None:
    accepted, rest = FrameReader(reply=True).feed(encode_reply(accepted=True, headers=[("a", "b")]))
    assert accepted == ReplyFrame(
        accepted=True, retryable=False, code=0, reason="", headers=(("a", "b"),)
    )
    assert rest == b""
    refused, _ = FrameReader(reply=True).feed(
        encode_reply(accepted=False, reason="no", code=7, retryable=True)
    )
    assert isinstance(refused, ReplyFrame)
    assert (refused.accepted, refused.retryable, refused.code, refused.reason) == (
        False,
        True,
        7,
        "no",
    )


@pytest.mark.parametrize(
    "wire",
    [
        b"\x02\x00\x00\x00\x04\x00\x00\x00\x00",  # unknown version
        b"\x01\xff\xff\xff\xff",  # longer than the limit
        b"\x01\x00\x00\x00\x04\x00\x00\x00\x01",  # one header announced, none present
        b"\x01\x00\x00\x00\x05\x00\x00\x00\x00\x00",  # a stray byte after the headers
        b"\x01\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",  # empty name
        b"\x01\x00\x00\x00\x0d\x00\x00\x00\x01\x00\x00\x00\x01\xff\x00\x00\x00\x00",  # bad UTF-8
    ],
)
def test_malformed_open_frames_are_codec_errors(wire: bytes) -> None:
    with pytest.raises(CodecError):
        FrameReader(reply=False).feed(wire)


def test_reply_with_a_bad_status_is_an_error() -> None:
    body = b"\x05\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    with pytest.raises(CodecError):
        FrameReader(reply=True).feed(b"\x01" + len(body).to_bytes(4, "big") + body)


def test_headers_too_large_to_encode() -> None:
    with pytest.raises(CodecError):
        encode_open([("x-big", "v" * MAX_FRAME)])


def test_control_messages_split_anywhere() -> None:
    wire = encode_control(GOAWAY) + encode_control(PING, 7) + encode_control(PONG, 2**63)
    reader = ControlReader()
    messages = []
    for byte in wire:
        messages += reader.feed(bytes([byte]))
    assert messages == [
        ControlMessage(kind=GOAWAY),
        ControlMessage(kind=PING, payload=7),
        ControlMessage(kind=PONG, payload=2**63),
    ]
    with pytest.raises(CodecError):
        ControlReader().feed(b"Z")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:22", ("127.0.0.1", 22)), ("[::1]:8080", ("::1", 8080)), ("host:0", ("host", 0))],
)
def test_host_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_host_port(text) == parsed
    assert parse_host_port(format_host_port(*parsed)) == parsed


@pytest.mark.parametrize("text", ["host", ":22", "host:http", "host:70000", "host:-1"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(CodecError):
        parse_host_port(text)


def test_whole_frames_of_the_open_request_and_confirmation() -> None:
    """decode_open/decode_reply take exactly one frame: what the stream channel's open
    request and confirmation carry."""
    opened = decode_open(encode_open([("a", "b"), ("a", "c")]), max_headers=2)
    assert opened.headers == (("a", "b"), ("a", "c"))
    accepted = decode_reply(encode_reply(accepted=True))
    assert accepted == ReplyFrame(accepted=True, retryable=False, code=0, reason="", headers=())
    # the shortcut for the common reply decodes as the general path does
    general, _ = FrameReader(reply=True).feed(encode_reply(accepted=True))
    assert general == accepted
    refused = decode_reply(encode_reply(accepted=False, reason="no", code=7, retryable=True))
    assert (refused.accepted, refused.reason, refused.code, refused.retryable) == (
        False,
        "no",
        7,
        True,
    )
    frame = encode_open([("x", "y")])
    with pytest.raises(CodecError, match="stray"):
        decode_open(frame + b"!")
    with pytest.raises(CodecError, match="middle"):
        decode_open(frame[:-1])
    with pytest.raises(CodecError, match="middle"):
        decode_reply(b"\x01\x00")
    with pytest.raises(HeaderLimitError) as limit:
        decode_open(encode_open([("x", "y" * 900)]), max_body=512)
    assert limit.value.limit == "max_header_block"
    with pytest.raises(HeaderLimitError) as count:
        decode_open(encode_open([("x", "1"), ("y", "2")]), max_headers=1)
    assert count.value.limit == "max_headers"
