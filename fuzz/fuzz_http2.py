"""Fuzz the HTTP/2 backend's sans-IO part: the h2 connection it drives, and the h2c
upgrade parser.

The first byte chooses the side, the part and the split. Frames may only give h2 events
or the errors the driver translates (``H2_ERRORS`` in ``http2._inbound``); the upgrade
parser only :class:`UpgradeError`, and the connection an accepted upgrade starts must come up.
"""

from __future__ import annotations

import h2.events
import h2.exceptions
import hpack
import hyperframe.exceptions

from fuzz._harness import chunks, main
from streams.backends.http2._codec import new_connection
from streams.backends.http2._codec_upgrade import UpgradeError, classify, parse_upgrade

#: what the driver catches around ``receive_data`` and translates (see ``driver.py``)
H2_ERRORS = (h2.exceptions.H2Error, hpack.HPACKError, hyperframe.exceptions.HyperframeError)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS = {
    "receive_window": 65535,
    "connection_window": 1 << 20,
    "max_frame_size": 16384,
    "max_concurrent_streams": 100,
    "max_header_list_size": 16384,
}


def _frames(data: bytes, control: int) -> None:
    client = bool(control & 0x10)
    connection = new_connection(client=client, **_SETTINGS)
    connection.data_to_send()
    if not client and control & 0x40:
        # spare the fuzzer the preface so that its bytes go to frames
        data = PREFACE + data
    for chunk in chunks(data, control):
        try:
            events = connection.receive_data(chunk)
        except H2_ERRORS:
            return
        for event in events:
            assert isinstance(event, h2.events.Event), event
        connection.data_to_send()


def _upgrade(data: bytes, control: int) -> None:
    buffer = b""
    kind = "more"
    try:
        for chunk in chunks(data, control):
            buffer += chunk
            kind = classify(buffer)
            if kind != "more":
                break
        if kind != "http1":
            return
        head, _, _ = buffer.partition(b"\r\n\r\n")
        request = parse_upgrade(head)
    except UpgradeError as exc:
        if not 400 <= exc.status < 600:
            raise AssertionError(exc.status) from exc
        return
    assert request.content_length >= 0
    # the backend starts the server's connection with the client's settings
    new_connection(client=False, upgrade_settings=request.settings, **_SETTINGS)


def check(data: bytes) -> None:
    """The property for one input; raises if it does not hold."""
    if not data:
        return
    control, body = data[0], data[1:]
    if control & 0x20:
        _upgrade(body, control)
    else:
        _frames(body, control)


if __name__ == "__main__":
    main(check)
