"""The start of a cleartext connection, without a network: prior knowledge or
``Upgrade: h2c``."""

from __future__ import annotations

import base64

import pytest

from streams.backends.http2._codec_upgrade import (
    PREFACE,
    UpgradeError,
    classify,
    parse_upgrade,
    refusal,
)

SETTINGS = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64").rstrip(b"=").decode()


def head(*lines: str) -> bytes:
    return "\r\n".join(lines).encode()


def test_classify() -> None:
    assert classify(PREFACE) == "h2"
    assert classify(PREFACE + b"\x00\x00") == "h2"
    assert classify(PREFACE[:10]) == "more"
    assert classify(b"") == "more"
    assert classify(b"GET / HTTP/1.1\r\nHost: x") == "more"
    assert classify(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "http1"
    with pytest.raises(UpgradeError) as caught:
        classify(b"GET / HTTP/1.1\r\n" + b"x" * 70000)
    assert caught.value.status == 431


def test_upgrade_request_becomes_http2_headers() -> None:
    request = parse_upgrade(
        head(
            "POST /api?x=1 HTTP/1.1",
            "Host: example.com:8080",
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            f"HTTP2-Settings: {SETTINGS}",
            "Content-Length: 5",
            "X-Trace: abc",
            "TE: gzip",
        )
    )
    assert request.headers == [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "example.com:8080"),
        (":path", "/api?x=1"),
        ("x-trace", "abc"),
    ]
    assert request.settings == b"\x00\x03\x00\x00\x00\x64"
    assert request.content_length == 5


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (["GET / HTTP/1.1", "Host: x"], 505),
        (["GET / HTTP/1.1", "Upgrade: h2c", "Connection: Upgrade"], 400),
        (["GET / HTTP/1.1", "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings"], 400),
        (
            ["GET / HTTP/1.1", "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings",
             "HTTP2-Settings: !!!"],
            400,
        ),
        (
            ["POST / HTTP/1.1", "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings",
             f"HTTP2-Settings: {SETTINGS}", "Transfer-Encoding: chunked"],
            501,
        ),
        (["NONSENSE"], 400),
        (["GET / HTTP/1.1", "bad header line"], 400),
    ],
)  # fmt: skip
def test_unusable_requests_get_a_status(lines: list[str], status: int) -> None:
    with pytest.raises(UpgradeError) as caught:
        parse_upgrade(head(*lines))
    assert caught.value.status == status


def test_refusal_is_a_complete_response() -> None:
    response = refusal(505, "speak HTTP/2")
    assert response.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert response.endswith(b"\r\n\r\nspeak HTTP/2\n")
    assert b"Content-Length: 13\r\n" in response
