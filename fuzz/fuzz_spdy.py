"""Fuzz the SPDY/3.1 codec: frames, and header blocks through zlib.

The first byte chooses the side, whether the rest is a session's bytes or one bare
(uncompressed) name/value block, and how the bytes are split. A session may only give
events or :class:`SessionError`; a bare block may only give pairs or ``ValueError``.
"""

from __future__ import annotations

from fuzz._harness import chunks, main
from streams.backends.spdy import codec_frames
from streams.backends.spdy.codec import SpdyCodec
from streams.backends.spdy.codec_frames import SessionError
from streams.backends.spdy.codec_headers import decode_header_block, encode_header_block

#: the harness codec's limits (small, so that exceeding them is reachable)
MAX_HEADER_BLOCK = 4096
MAX_CONTROL_FRAME = 8192
#: a data frame is not limited by ``max_control_frame``: up to the 24-bit length field
MAX_DATA_FRAME = 0xFFFFFF
_EVENTS = tuple(
    getattr(codec_frames, name)
    for name in (
        "StreamOpened",
        "ReplyReceived",
        "HeadersReceived",
        "DataReceived",
        "ResetReceived",
        "SettingsReceived",
        "PingReceived",
        "GoAwayReceived",
        "WindowUpdateReceived",
        "StreamFailed",
    )
)


def _session(data: bytes, control: int) -> None:
    codec = SpdyCodec(
        client=bool(control & 0x10),
        max_header_block=MAX_HEADER_BLOCK,
        max_control_frame=MAX_CONTROL_FRAME,
    )
    for chunk in chunks(data, control):
        try:
            events = codec.receive_data(chunk)
        except SessionError as exc:
            # the codec stays failed: the same error comes back, nothing else
            try:
                codec.receive_data(b"")
            except SessionError as again:
                if again is not exc:
                    raise AssertionError("a failed codec raised another error") from again
            else:
                raise AssertionError("a failed codec accepted more bytes") from exc
            return
        for event in events:
            assert type(event) in _EVENTS, event
        assert len(codec._buffer) < 8 + MAX_DATA_FRAME


def _block(data: bytes) -> None:
    try:
        pairs = decode_header_block(data)
    except ValueError:
        return
    if all(name.isascii() for name, _ in pairs):
        # a received block can be sent on unchanged
        assert encode_header_block(pairs) == data, pairs


def check(data: bytes) -> None:
    """The property for one input; raises if it does not hold."""
    if not data:
        return
    control, body = data[0], data[1:]
    if control & 0x20:
        _block(body)
    else:
        _session(body, control)


if __name__ == "__main__":
    main(check)
