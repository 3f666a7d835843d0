"""The conformance suite must fail for real when a provider breaks a rule: each broken
provider here breaks one rule, and the checks that guard that rule must catch it."""

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from streams import Headers
from streams._core.errors import ConnectionLost
from streams._core.mux import MuxSettings
from streams._core.stream import MuxStream
from streams.backends.memory import MemoryProvider
from streams.testing import CHECKS, ConformanceOptions, ProviderPair

pytestmark = pytest.mark.anyio

OPTIONS = ConformanceOptions(max_buffered_per_stream=512 * 1024, timeout=20)


class ResetAsEndOfFile(MuxStream):
    def on_reset(self, code: int) -> None:
        self.on_eof()


class LossAsEndOfFile(MuxStream):
    def on_connection_lost(self, error: BaseException) -> None:
        self.on_eof()


class DropsAByte(MuxStream):
    count = 0

    def on_data(self, data: bytes) -> None:
        DropsAByte.count += 1
        super().on_data(data if DropsAByte.count % 50 else data[1:])


class NoBusyCheck(MuxStream):
    async def receive(self, max_bytes: int = 65536) -> bytes:
        self._receiving = False
        return await super().receive(max_bytes)


def provider_with(stream_class: type[MuxStream], settings: MuxSettings | None = None):  # type: ignore[no-untyped-def]
    class Broken(MemoryProvider):
        def _new_stream(self, stream_id: int, headers: Headers, *, local: bool) -> MuxStream:
            s = self.settings
            return stream_class(
                self,
                stream_id,
                headers,
                local=local,
                send_window=s.receive_window,
                receive_window=s.receive_window,
                max_frame=s.max_frame_size,
            )

    return Broken


class SwallowsHandlerErrors(MemoryProvider):
    def _handler_failed(self, stream, listener, error, cause=None):  # type: ignore[no-untyped-def]
        self._refuse(stream)


class DeliversRejectedData(MemoryProvider):
    def _reject(self, stream, rejection):  # type: ignore[no-untyped-def]
        self.write_reject(stream, rejection)
        stream.on_accepted(Headers())
        if self._listener is not None:
            self._listener.offer(stream)


def factory(
    provider_class: type[MemoryProvider], settings: MuxSettings | None = None
) -> Callable[[], object]:
    # a broken stream may never finish: do not wait the default grace for it on close
    settings = dataclasses.replace(settings or MuxSettings(), close_grace=0.2)

    @asynccontextmanager
    async def make() -> AsyncIterator[ProviderPair]:
        client = provider_class(settings, initiator=True)
        server = provider_class(settings, initiator=False)
        client.peer, server.peer = server, client

        async def cut() -> None:
            client._break(ConnectionLost("cut"))

        async with client, server:
            yield ProviderPair(client=client, server=server, break_connection=cut)

    return make


UNBOUNDED = MuxSettings(receive_window=0x7FFFFFFF, max_receive_window=0x7FFFFFFF)

BREAKS = {
    "reset_as_eof": (
        factory(provider_with(ResetAsEndOfFile)),
        ["reset_by_opener_before_data", "reset_by_acceptor_after_data", "close_while_peer_sends"],
    ),
    "connection_loss_as_eof": (
        factory(provider_with(LossAsEndOfFile)),
        ["dead_connection_breaks_streams", "provider_close_fails_pending"],
    ),
    "unbounded_buffer": (
        factory(MemoryProvider, UNBOUNDED),
        ["slow_reader_is_isolated", "cancelled_send_keeps_stream"],
    ),
    "drops_data": (
        factory(provider_with(DropsAByte)),
        ["bulk_transfer_hash", "megabyte_each_way"],
    ),
    "no_busy_detection": (factory(provider_with(NoBusyCheck)), ["concurrent_use_is_busy"]),
    "swallows_handler_errors": (factory(SwallowsHandlerErrors), ["handler_exception"]),
    "delivers_rejected_data": (
        factory(DeliversRejectedData),
        ["zero_round_trip_open_rejected", "reject_with_response_headers"],
    ),
}


@pytest.mark.parametrize(
    ("breakage", "check_name"),
    [(name, check) for name, (_, checks) in BREAKS.items() for check in checks],
)
async def test_check_catches_break(breakage: str, check_name: str) -> None:
    make, _ = BREAKS[breakage]
    with anyio.fail_after(30), pytest.raises((AssertionError, ExceptionGroup, anyio.EndOfStream)):
        await CHECKS[check_name](make, OPTIONS)  # type: ignore[arg-type]


async def test_the_unbroken_provider_passes_those_checks() -> None:
    make = factory(MemoryProvider)
    for _, checks in BREAKS.values():
        for check_name in checks:
            await CHECKS[check_name](make, OPTIONS)  # type: ignore[arg-type]


def test_not_applicable_checks_need_a_known_name_and_a_reason() -> None:
    from streams.testing import ProviderConformance

    class Fine(ProviderConformance):
        not_applicable = {"handler_exception": "this protocol has no handlers"}

    assert Fine.test_handler_exception is None  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="names no check"):

        class Unknown(ProviderConformance):
            not_applicable = {"no_such_check": "why"}

    with pytest.raises(TypeError, match="needs a reason"):

        class Silent(ProviderConformance):
            not_applicable = {"handler_exception": ""}
