"""The header lists of ``_codec_mapping`` go out without h2's outbound validation and
normalization (sans-IO): what a stock h2 peer decodes must be what stock h2 would have
sent after normalizing the same headers itself, never-indexed fields included."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from hpack import NeverIndexedHeaderTuple

from streams._core.headers import Headers
from streams.backends.http2 import _codec_mapping as mapping
from tests.http2.test_codec_frames import exchange, handshake, ours, stock

HEADER_SETS = [
    {},
    {"X-Trace": "  padded value\t", "Accept": "*/*"},
    {"Authorization": "Bearer secret", "Proxy-Authorization": "Basic abc"},
    {"Cookie": "a=1", "cookie": "long-enough-cookie=0123456789abcdef"},
    {":path": " /p?q=1 ", ":method": "PUT", "x-empty": "   "},
    {"te": "trailers", "user-agent": "streams"},
]


def _decoded(headers: list[tuple[str, str]], *, normalized_by_h2: bool) -> list[object]:
    """What a stock server receives when a client sends *headers*: ours (no outbound
    checks) or stock h2 (its own normalization)."""
    server = stock(client=False)
    if normalized_by_h2:
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        client: h2.connection.H2Connection = h2.connection.H2Connection(config)
        client.initiate_connection()
    else:
        client = ours(client=True)
    handshake(client, server)
    client.send_headers(1, headers)
    events = exchange(client, server)
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    # the class tells whether the field was never indexed
    return [(type(field).__name__, field[0], field[1]) for field in request.headers or ()]


@pytest.mark.parametrize("given", HEADER_SETS)
def test_requests_decode_as_if_h2_had_normalized_them(given: dict[str, str]) -> None:
    built = mapping.request_headers(Headers(given), scheme="http", authority="a")
    # stock h2 normalizes what it is given, so it gets the raw lower-cased pairs
    raw = [(name, value) for name, value in built]
    assert _decoded(built, normalized_by_h2=False) == _decoded(raw, normalized_by_h2=True)


def test_credentials_and_short_cookies_are_never_indexed() -> None:
    built = mapping.request_headers(
        Headers({"Authorization": "x", "Cookie": "a=1", "X-Other": "y"}),
        scheme="http",
        authority="a",
    )
    kinds = {field[0]: type(field) for field in built}
    assert kinds["authorization"] is NeverIndexedHeaderTuple
    assert kinds["cookie"] is NeverIndexedHeaderTuple
    assert kinds["x-other"] is tuple


def test_values_lose_surrounding_whitespace_names_are_lower_case() -> None:
    built = mapping.request_headers(Headers({"X-A": "  v  "}), scheme="http", authority="a")
    assert ("x-a", "v") in built
    response = mapping.accept_response(Headers({":status": " 201 ", "X-B": "\tw"}))
    assert response == [(":status", "201"), ("x-b", "w")]


@pytest.mark.parametrize(
    "bad",
    [{"connection": "close"}, {"te": "gzip"}, {"x-a": "line\nbreak"}, {":bogus": "1"}],
)
def test_headers_h2_would_refuse_are_refused_before_sending(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        mapping.request_headers(Headers(bad), scheme="http", authority="a")
