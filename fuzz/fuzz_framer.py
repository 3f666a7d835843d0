"""Fuzz the framer codec: the frame decoder and the header-block reader.

The first byte chooses the side (client/server), the part (frames or header blocks) and
how the rest is split; the rest is what the peer sent. Only events and
:class:`FramerProtocolError` may come out, and what the decoder holds stays bounded.
"""

from __future__ import annotations

from fuzz._harness import chunks, main
from streams.backends.framer.codec import (
    HEADER_SIZE,
    REORDER_WINDOW,
    BlockKind,
    DataReceived,
    FrameDecoder,
    FramerProtocolError,
    GoAwayReceived,
    HeaderBlockReader,
    PingReceived,
    WindowUpdated,
    encode_header_block,
)

#: the largest Data frame the harness's decoder accepts (a receive window)
MAX_DATA = 65536
#: the header-block limit the harness's readers use
BLOCK_LIMIT = 2048
_EVENTS = (DataReceived, WindowUpdated, PingReceived, GoAwayReceived)


def _frames(data: bytes, control: int) -> None:
    decoder = FrameDecoder(client=bool(control & 0x10), max_data_length=MAX_DATA)
    delivered = 0
    for chunk in chunks(data, control):
        try:
            events = decoder.receive_data(chunk)
        except FramerProtocolError as exc:
            if not isinstance(exc.go_away, int):
                raise AssertionError(exc.go_away) from exc
            return
        for event in events:
            assert type(event) in _EVENTS, event
            if type(event) is DataReceived:
                delivered += len(event.data)
        # a partial header is all a decoder holds: payloads pass straight through
        assert len(decoder._head) < HEADER_SIZE
        assert len(decoder._gaps) <= 2 * REORDER_WINDOW
    assert delivered <= len(data)


def _blocks(data: bytes, control: int) -> None:
    kinds = tuple(BlockKind)
    reader = HeaderBlockReader(kinds, BLOCK_LIMIT)
    pending = list(chunks(data, control))
    while pending:
        try:
            block, rest = reader.feed(pending.pop(0))
        except FramerProtocolError:
            return
        assert reader.pending <= BLOCK_LIMIT + 5
        if block is None:
            continue
        # what was decoded encodes back to a block that decodes the same
        again, tail = HeaderBlockReader(kinds, BLOCK_LIMIT).feed(encode_header_block(block))
        assert again == block, (block, again)
        assert tail == b""
        reader = HeaderBlockReader(kinds, BLOCK_LIMIT)
        if rest:
            pending.insert(0, rest)


def check(data: bytes) -> None:
    """The property for one input; raises (``AssertionError`` or anything unexpected) if
    it does not hold."""
    if not data:
        return
    control, body = data[0], data[1:]
    if control & 0x20:
        _blocks(body, control)
    else:
        _frames(body, control)


if __name__ == "__main__":
    main(check)
