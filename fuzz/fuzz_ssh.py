"""Fuzz the SSH backend's codec: a channel's first frame (open or reply), the control
channel's messages, and the ``host:port`` parser.

The first byte chooses the part and the split. Only frames, messages, a ``(host, port)``
or :class:`CodecError` may come out, and a reader holds at most one frame's bytes.
"""

from __future__ import annotations

from fuzz._harness import chunks, main
from streams.backends.ssh._codec import (
    MAX_FRAME,
    CodecError,
    ControlMessage,
    ControlReader,
    FrameReader,
    OpenFrame,
    ReplyFrame,
    encode_open,
    encode_reply,
    parse_host_port,
)


def _frame(data: bytes, control: int) -> None:
    reply = bool(control & 0x10)
    reader = FrameReader(reply=reply)
    pending = list(chunks(data, control))
    while pending:
        try:
            frame, rest = reader.feed(pending.pop(0))
        except CodecError:
            return
        assert len(reader._buffer) <= 5 + MAX_FRAME + len(data)
        if frame is None:
            continue
        # a frame that was read encodes back to one that reads the same
        if isinstance(frame, ReplyFrame):
            encoded = encode_reply(
                accepted=frame.accepted,
                retryable=frame.retryable,
                code=frame.code,
                reason=frame.reason,
                headers=frame.headers,
            )
        else:
            assert isinstance(frame, OpenFrame)
            encoded = encode_open(frame.headers)
        assert FrameReader(reply=reply).feed(encoded) == (frame, b""), frame
        reader = FrameReader(reply=reply)
        if rest:
            pending.insert(0, rest)


def _control(data: bytes, control: int) -> None:
    reader = ControlReader()
    for chunk in chunks(data, control):
        try:
            messages = reader.feed(chunk)
        except CodecError:
            return
        assert all(type(message) is ControlMessage for message in messages)
        assert len(reader._buffer) < 9


def _host_port(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        host, port = parse_host_port(text)
    except CodecError:
        return
    assert host
    assert 0 <= port <= 65535


def check(data: bytes) -> None:
    """The property for one input; raises if it does not hold."""
    if not data:
        return
    control, body = data[0], data[1:]
    part = (control >> 5) % 3
    if part == 0:
        _frame(body, control)
    elif part == 1:
        _control(body, control)
    else:
        _host_port(body)


if __name__ == "__main__":
    main(check)
