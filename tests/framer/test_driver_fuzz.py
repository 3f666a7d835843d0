"""The driver fed random and mutated frames: the connection either carries on or fails
with a protocol error (or a lost connection), and no other exception escapes its tasks.

A longer fuzz run, outside the suite:
``FRAMER_FUZZ_EXAMPLES=5000 pytest tests/framer/test_driver_fuzz.py``.
"""

from __future__ import annotations

import os

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import ConnectionLost, ErrorCode, StreamRejected
from streams.backends.framer import FramerProvider, FramerSettings
from streams.backends.framer.codec import (
    ACK,
    FIN,
    RST,
    SYN,
    BlockKind,
    GoAwayCode,
    HeaderBlock,
    encode_data_header,
    encode_go_away,
    encode_header_block,
    encode_ping,
    encode_window_update,
)

from .pairs import memory_byte_streams

pytestmark = pytest.mark.anyio

SETTINGS = FramerSettings(close_grace=0.05, keepalive_interval=None)
EXAMPLES = int(os.environ.get("FRAMER_FUZZ_EXAMPLES", "150"))


@st.composite
def peer_frames(draw: st.DrawFn) -> bytes:
    """Frames a (server) peer might send to our client: streams it opens (even ids), and
    answers for the streams we open (odd ids)."""
    wire = bytearray()
    opened = 0
    for _ in range(draw(st.integers(1, 10))):
        choice = draw(st.integers(0, 6))
        if choice == 0 or opened == 0:
            opened += 2
            headers = tuple(draw(st.lists(st.tuples(st.text("ab", min_size=1), st.text()))))
            block = encode_header_block(HeaderBlock(kind=BlockKind.OPEN, headers=headers))
            wire += encode_data_header(opened, len(block), SYN) + block
        elif choice == 1:
            data = draw(st.binary(max_size=40))
            flags = draw(st.sampled_from([0, FIN, RST]))
            wire += encode_data_header(opened, len(data), flags) + data
        elif choice == 2:
            block = encode_header_block(
                HeaderBlock(kind=draw(st.sampled_from([BlockKind.ACCEPT, BlockKind.REJECT])))
            )
            wire += encode_data_header(1, len(block), ACK) + block
        elif choice == 3:
            stream_id = draw(st.sampled_from([1, opened]))
            flags = draw(st.sampled_from([0, FIN, RST]))
            wire += encode_window_update(stream_id, draw(st.integers(0, 1 << 20)), flags)
        elif choice == 4:
            wire += encode_ping(draw(st.integers(0, 2**32 - 1)), ack=draw(st.booleans()))
        elif choice == 5:
            wire += encode_go_away(GoAwayCode(draw(st.integers(0, 2))))
        else:
            wire += draw(st.binary(max_size=16))
    return bytes(wire)


async def feed(wire: bytes) -> None:
    ours, theirs = memory_byte_streams()
    with anyio.fail_after(10):
        # the peer's end closes first, so our close need not wait for it
        async with FramerProvider(ours, client=True, settings=SETTINGS) as provider, theirs:
            provider.listen()
            stream = await provider.open_stream(wait_accept=False)  # stream 1
            await theirs.send(wire)
            with anyio.move_on_after(0.02):
                try:
                    await stream.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass  # an end, a reset, a lost connection or a protocol error
                except StreamRejected:
                    pass
            failure = provider.failure
            assert failure is None or isinstance(failure, ConnectionLost), repr(failure)
            # an internal error would be a bug of ours that the driver caught
            assert getattr(failure, "code", None) != ErrorCode.INTERNAL_ERROR, repr(failure)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wire=peer_frames(),
    mutations=st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=3),
)
async def test_mutated_frames_never_crash_the_driver(
    anyio_backend: str, wire: bytes, mutations: list[tuple[int, int]]
) -> None:
    mutated = bytearray(wire)
    for position, value in mutations:
        if mutated:
            mutated[position % len(mutated)] = value
    await feed(bytes(mutated))


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@settings(
    max_examples=EXAMPLES * 2 // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(wire=st.binary(max_size=200))
async def test_random_bytes_never_crash_the_driver(anyio_backend: str, wire: bytes) -> None:
    await feed(wire)
