"""Every input the fuzzers (``fuzz/``) found to break a decoder, replayed through the same
property, plus a direct check of what the fix does."""

from __future__ import annotations

import base64
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import pytest

from fuzz import fuzz_framer, fuzz_http2, fuzz_spdy, fuzz_ssh, fuzz_topology
from fuzz._harness import chunks
from streams.backends.http2._codec import new_connection
from streams.backends.spdy.codec_headers import decode_header_block

CHECKS = {
    "framer": fuzz_framer.check,
    "spdy": fuzz_spdy.check,
    "http2": fuzz_http2.check,
    "ssh": fuzz_ssh.check,
    "topology": fuzz_topology.check,
}

#: (target, base64 of the input as libFuzzer wrote it, what went wrong before the fix)
FINDINGS = [
    (
        "spdy",
        "IAAAAAMAAAAJeC1zZXJ2aWNlAAAABGVjaG8AAAAKAQAAAAAAAAxudAAAAAlzdHJlYW1zLzEAAAAGeC1tYW55"
        "AAAAA2EAYg==",
        "a header name holding NUL was accepted, and could not be sent on (ValueError)",
    ),
    (
        "http2",
        "TwAAKgQAAAAAAAABAAAQAAACAAAAAQAEAAD//wAFAABAAAAIAAAAAAADAAAAZAAGAAEAAAAAJwEEAAAAAYOG"
        "QYEfhECH8rILZ3MQv4MpJz96BkJsKOlDAUCF8rUjq9eBH36BjwAABQAAAGgAAQBlbGxvAAAECAAAAAABg4ZB"
        "gR+EQIfysgtncxC/gyknP3qGQmwo6UMBQIXytSOr14EffoGPAAAFAAAAaAABAGVsbG8AAAE=",
        "a header value that is not UTF-8 let h2's UnicodeDecodeError escape the driver",
    ),
]


@pytest.mark.parametrize(
    ("target", "data"),
    [(target, base64.b64decode(text)) for target, text, _ in FINDINGS],
    ids=[f"{target}-{index}" for index, (target, _, _) in enumerate(FINDINGS)],
)
def test_a_fuzzer_finding_holds_the_property(target: str, data: bytes) -> None:
    CHECKS[target](data)


def test_the_seed_corpora_hold_the_property() -> None:
    root = Path(fuzz_framer.__file__).parent / "corpus"
    seen = 0
    for target, check in CHECKS.items():
        for seed in sorted((root / target).iterdir()):
            check(seed.read_bytes())
            seen += 1
    assert seen >= 40


def test_a_spdy_header_name_with_nul_is_refused() -> None:
    block = b"\x00\x00\x00\x01" + b"\x00\x00\x00\x03a\x00b" + b"\x00\x00\x00\x01v"
    with pytest.raises(ValueError, match="NUL"):
        decode_header_block(block)


def test_an_http2_header_that_is_not_utf8_is_a_protocol_error() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")]
    client.send_headers(1, [*request, (b":path", b"/"), (b"x-latin", b"caf\xe9")])
    server = new_connection(
        client=False,
        receive_window=65535,
        connection_window=65535,
        max_frame_size=16384,
        max_concurrent_streams=10,
        max_header_list_size=16384,
    )
    server.data_to_send()
    with pytest.raises(h2.exceptions.ProtocolError, match="not UTF-8"):
        server.receive_data(client.data_to_send())
    # last of what the driver flushes before it closes: a GOAWAY (type 7, 8-byte body)
    goaway = server.data_to_send()[-17:]
    assert goaway[3] == 0x7
    assert int.from_bytes(goaway[-4:], "big") == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_chunks_cover_the_input_in_order() -> None:
    data = bytes(range(50))
    for control in range(16):
        assert b"".join(chunks(data, control)) == data
