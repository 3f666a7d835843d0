"""The h2 state machine, adjusted for graceful shutdown. Sans-IO.

h2 4.x moves the whole connection to ``CLOSED`` when a ``GOAWAY`` is sent or received,
after which it refuses to send or receive anything, even on streams the ``GOAWAY``
promised to finish. RFC 9113 (section 6.8) says those streams continue. So this subclass
treats a received ``GOAWAY`` as an event only, and sends a graceful one without touching
the state machine; a ``GOAWAY`` with an error code still goes through h2 (the connection
ends right after it).
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from h2.exceptions import FlowControlError, FrameDataMissingError, ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from hyperframe.exceptions import InvalidDataError, InvalidFrameError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from ..._core.errors import ErrorCode, LimitExceeded
from ._codec_limits import InboundLimits, LimitBreach

if TYPE_CHECKING:
    from h2._typing import Buffer

__all__ = ["GracefulH2Connection", "new_connection"]


class _QuietDataFrame(DataFrame):
    """A DATA frame whose ``repr`` does not hex-encode the whole payload.

    h2 builds the ``repr`` of every received frame for a trace log line whether or not
    anything logs it, and hyperframe's hex-encodes all of a DATA frame's payload to show
    its first ten bytes: a sixth of the CPU of a bulk transfer. The flags (sorted for
    their ``repr``) are left out too.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}, data=<{len(self.data)} bytes>)"


def _quiet(base: type[Frame]) -> type[Frame]:
    """A subclass of *base* whose ``repr`` (built by h2 for every received frame, logged
    or not) names the frame and its stream only: a few percent of an open-echo-close
    went into flags and bodies that nobody reads."""
    name = base.__name__

    def __repr__(self: Frame) -> str:
        return f"{name}(stream_id={self.stream_id})"

    return type(f"_Quiet{name}", (base,), {"__slots__": (), "__repr__": __repr__})


#: the frames of every exchange, and their quiet subclasses (DATA has its own above)
_QUIET: dict[type[Frame], type[Frame]] = {
    base: _quiet(base)
    for base in (HeadersFrame, WindowUpdateFrame, SettingsFrame, PingFrame, RstStreamFrame)
}


_HEADER_FRAGMENTS = frozenset({HeadersFrame, ContinuationFrame, PushPromiseFrame})
#: a frame header: the length in 24 bits, the type, the flags and the stream id
_FRAME_HEADER = struct.Struct(">HBBBL")
_END_STREAM = 0x01
_DATA = 0x0


class _QuietFrameBuffer(FrameBuffer):
    """h2's frame buffer, with quiet DATA frames and header fragments counted against
    the connection's limits before they are buffered."""

    def __init__(self, server: bool = False) -> None:
        super().__init__(server=server)
        self.limits: InboundLimits | None = None
        self.now = 0.0

    def __next__(self) -> Any:
        buffered = self._data
        if len(buffered) >= 9 and buffered[3] == _DATA:
            # h2 copies a frame's body out of the buffer before DataFrame copies the
            # payload out of that copy; a DATA frame's payload is copied once here
            try:
                frame, length = Frame.parse_frame_header(memoryview(buffered[:9]))
            except (InvalidDataError, InvalidFrameError) as exc:
                raise ProtocolError(f"Received frame with invalid header: {exc!s}") from exc
            if len(buffered) < length + 9:
                raise StopIteration
            self._validate_frame_length(length)
            frame.__class__ = _QuietDataFrame
            with memoryview(buffered) as view:
                try:
                    frame.parse_body(view[9 : 9 + length])
                except InvalidDataError as exc:
                    raise ProtocolError("Received frame with non-compliant data") from exc
                except InvalidFrameError as exc:
                    raise FrameDataMissingError("Frame data missing or invalid") from exc
            del buffered[: 9 + length]
            # a DATA frame inside a header block is an error raised here
            return self._update_header_buffer(frame)
        frame = super().__next__()
        if type(frame) is DataFrame:
            frame.__class__ = _QuietDataFrame
        return frame

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        limits = self.limits
        kind = type(f)
        if limits is not None and kind in _HEADER_FRAGMENTS:
            if kind is ContinuationFrame:
                if self._headers_buffer:
                    limits.on_header_fragment(f, self.now, first=False)  # type: ignore[arg-type]
            elif not self._headers_buffer:
                limits.on_header_fragment(f, self.now, first=True)  # type: ignore[arg-type]
        return super()._update_header_buffer(f)


class GracefulH2Connection(H2Connection):
    """An :class:`h2.connection.H2Connection` whose ``GOAWAY`` handling keeps open
    streams working; see the module's description."""

    def __init__(self, config: H2Configuration | None = None) -> None:
        super().__init__(config=config)
        self._frames = _QuietFrameBuffer(server=not self.config.client_side)
        self.incoming_buffer = self._frames
        table = self._frame_dispatch_table
        table[_QuietDataFrame] = self._receive_data_frame
        for base, quiet in _QUIET.items():
            table[quiet] = table[base]
        self.limits: InboundLimits | None = None
        #: frames other than DATA queued since :meth:`take_answer_count`
        self._answers = 0
        # serialized frames not yet taken, in order (see take_chunks)
        self._outbound: list[bytes] = []
        self._now = 0.0
        #: inside the handling of a received frame: what is queued now answers the peer
        self._answering = False

    def set_limits(self, limits: InboundLimits) -> None:
        """Enforce *limits* on what the peer sends from now on."""
        self.limits = limits
        self._frames.limits = limits

    def take_answer_count(self) -> int:
        """How many frames other than DATA were queued since the last call."""
        answers, self._answers = self._answers, 0
        return answers

    def receive_data(self, data: Buffer, now: float = 0.0) -> list[Event]:
        """As :meth:`h2.connection.H2Connection.receive_data`, with a header that is not
        UTF-8 reported as the protocol error it is, and the limits checked as of *now*.

        :raises LimitBreach: if the peer went over a limit (a ``GOAWAY`` is queued)
        :raises h2.exceptions.ProtocolError: for a broken frame too
        """
        self._frames.now = now
        self._now = now
        try:
            return super().receive_data(data)
        except UnicodeDecodeError as exc:
            # with header_encoding set, h2 decodes header fields itself and lets this
            # escape (found by fuzzing): end the connection as for any malformed frame
            self._terminate_connection(ErrorCodes.PROTOCOL_ERROR)
            raise ProtocolError(f"a header field is not UTF-8: {exc.reason}") from exc

    def _receive_frame(self, frame: Frame) -> list[Event]:
        limits = self.limits
        if limits is not None:
            kind = type(frame)
            if kind is _QuietDataFrame:
                # the bulk of the traffic: only an empty one counts
                if not cast(DataFrame, frame).data and "END_STREAM" not in frame.flags:
                    limits.on_frame(frame, self._now)
            elif kind is HeadersFrame:
                opens = frame.stream_id not in self.streams
                limits.on_frame(frame, self._now, opens_stream=opens)
            elif kind is RstStreamFrame:
                stream = self.streams.get(frame.stream_id)
                answered = stream is not None and bool(stream.state_machine.headers_sent)
                limits.on_frame(frame, self._now, answered=answered)
            else:
                limits.on_frame(frame, self._now)
        quiet = _QUIET.get(type(frame))
        if quiet is not None:
            frame.__class__ = quiet
        self._answering = True
        try:
            return super()._receive_frame(frame)
        finally:
            self._answering = False

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        # h2 serializes each frame, joins them, appends them to one buffer and copies that
        # buffer out in data_to_send: four copies of every payload. Here each frame is
        # one bytes object, kept in a list: a DATA frame's payload is copied once, and the
        # writer hands a large frame to the transport as it is
        outbound = self._outbound
        if self._data_to_send:
            # what h2 wrote to its buffer itself (the preface) goes first
            outbound.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        for frame in frames:
            if type(frame) is DataFrame:
                if "PADDED" not in frame.flags:
                    data = frame.data
                    size = len(data)
                    flags = _END_STREAM if "END_STREAM" in frame.flags else 0
                    header = _FRAME_HEADER.pack(size >> 8, size & 0xFF, 0, flags, frame.stream_id)
                    outbound.append(header + data)
                    continue
            else:
                self._answers += 1
                if self._answering and self.limits is not None and type(frame) is RstStreamFrame:
                    # h2 resets a stream in answer to the peer's frame: a reset flood
                    self.limits.on_provoked_reset(self._now)
            outbound.append(frame.serialize())

    def take_chunks(self) -> list[bytes]:
        """Take what is queued to send, as a list of byte strings to write in order."""
        outbound = self._outbound
        if self._data_to_send:
            outbound.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        if outbound:
            self._outbound = []
        return outbound

    def data_to_send(self, amount: int | None = None) -> bytes:
        """As :meth:`h2.connection.H2Connection.data_to_send`."""
        chunks = self.take_chunks()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if amount is not None and len(data) > amount:
            self._outbound.append(data[amount:])
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        """As :meth:`h2.connection.H2Connection.clear_outbound_data_buffer`."""
        super().clear_outbound_data_buffer()
        self._outbound = []

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Any], list[Any]]:
        connection_window = self._inbound_flow_control_window_manager.current_window_size
        try:
            return super()._receive_data_frame(frame)
        except FlowControlError as exc:
            # a peer past its credit is what bounds what one connection buffers
            which = (
                "connection_window"
                if frame.flow_controlled_length > connection_window
                else "receive_window"
            )
            raise LimitBreach(LimitExceeded(which, str(exc), ErrorCode.FLOW_CONTROL_ERROR)) from exc

    def _receive_window_update_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        try:
            return super()._receive_window_update_frame(frame)
        except FlowControlError as exc:
            # only the connection's window raises: a stream's overflow resets the stream
            raise LimitBreach(
                LimitExceeded("window_overflow", str(exc), ErrorCode.FLOW_CONTROL_ERROR)
            ) from exc

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        event = ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def send_graceful_goaway(self, last_stream_id: int, debug: bytes = b"") -> None:
        """Queue a ``GOAWAY`` with ``NO_ERROR``: no stream above *last_stream_id* will be
        processed, the ones below it may finish."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        frame.additional_data = debug
        self._prepare_for_sending([frame])


class _AdvertisedSettings(Settings):
    """Our settings, as sent to the peer; h2 itself does not enforce the stream limit.

    h2 treats a peer that opens one stream too many as a connection error, while RFC 9113
    (section 5.1.2) makes it a stream error: the provider refuses such a stream with
    ``REFUSED_STREAM`` (which the opener may retry) and the connection carries on.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return 2**32 + 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


def new_connection(
    *,
    client: bool,
    receive_window: int,
    connection_window: int,
    max_frame_size: int,
    max_concurrent_streams: int,
    max_header_list_size: int,
    upgrade_settings: bytes | None = None,
    limits: InboundLimits | None = None,
) -> GracefulH2Connection:
    """A connection whose preface (and first ``SETTINGS``) is queued in ``data_to_send``.

    With *upgrade_settings* (the client's ``HTTP2-Settings``, decoded), the connection
    continues an HTTP/1.1 request that asked for ``Upgrade: h2c`` (server side only).

    Our settings take effect at once rather than on the peer's acknowledgement: they are
    all at least as generous as the protocol's defaults the peer assumes until then.
    """
    config = H2Configuration(
        client_side=client,
        header_encoding="utf-8",
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
        # every header list we send is built, checked and normalized by _codec_mapping
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    connection = GracefulH2Connection(config=config)
    if limits is not None:
        connection.set_limits(limits)
    values = {
        SettingCodes.INITIAL_WINDOW_SIZE: receive_window,
        SettingCodes.MAX_FRAME_SIZE: max_frame_size,
        SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
        SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
    }
    if client:
        values[SettingCodes.ENABLE_PUSH] = 0
    connection.local_settings = _AdvertisedSettings(client=client, initial_values=values)
    # what h2 derived from the settings it started with
    connection.max_inbound_frame_size = max_frame_size
    connection.decoder.max_header_list_size = max_header_list_size
    if upgrade_settings is None:
        connection.initiate_connection()
    else:
        # a server switching from HTTP/1.1: the request already sent becomes stream 1
        connection.initiate_upgrade_connection(base64.urlsafe_b64encode(upgrade_settings))
    increment = connection_window - connection.inbound_flow_control_window
    if increment > 0:
        connection.increment_flow_control_window(increment)
    return connection
