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
from streams import ConfigError
from streams.backends.http2._codec import new_connection
from streams.backends.http2._codec_upgrade import UpgradeError, parse_upgrade
from streams.backends.spdy.codec_headers import decode_header_block
from streams.backends.ssh._codec import CodecError, parse_host_port
from streams.config import parse_topology

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


def _upgrade_request(settings_hex: str, *fields: bytes) -> bytes:
    settings = base64.urlsafe_b64encode(bytes.fromhex(settings_hex)).rstrip(b"=")
    return b"\r\n".join(
        [
            b"GET / HTTP/1.1",
            b"Host: a",
            b"Connection: Upgrade, HTTP2-Settings",
            b"Upgrade: h2c",
            b"HTTP2-Settings: " + settings,
            *fields,
        ]
    )


@pytest.mark.parametrize(
    ("settings", "field", "status"),
    [
        # ENABLE_PUSH = 2**31: h2 raised InvalidSettingsValueError when the connection started
        ("000280000000", b"Content-Length: 0", 400),
        # INITIAL_WINDOW_SIZE = 2**31
        ("000480000000", b"Content-Length: 0", 400),
        # MAX_FRAME_SIZE = 0
        ("000500000000", b"Content-Length: 0", 400),
        # a latin-1 digit that int() refuses: ValueError escaped
        ("", b"Content-Length: \xb2", 400),
        # more digits than int() converts: ValueError escaped
        ("", b"Content-Length: " + b"9" * 5000, 413),
    ],
)
def test_an_h2c_upgrade_that_cannot_start_is_refused(
    settings: str, field: bytes, status: int
) -> None:
    head = _upgrade_request(settings, field)
    with pytest.raises(UpgradeError) as caught:
        parse_upgrade(head)
    assert caught.value.status == status
    fuzz_http2.check(b"\x2f" + head + b"\r\n\r\n")


def test_an_h2c_upgrade_with_valid_settings_starts() -> None:
    request = parse_upgrade(_upgrade_request("000300000064000400010000", b"Content-Length: 5"))
    assert request.content_length == 5
    assert request.settings == bytes.fromhex("000300000064000400010000")


@pytest.mark.parametrize("text", ["host:\u00b2", "host:\u0663", "host:" + "1" * 5000, "h:65536"])
def test_an_ssh_destination_with_a_bad_port_is_a_codec_error(text: str) -> None:
    with pytest.raises(CodecError):
        parse_host_port(text)
    fuzz_ssh.check(b"\x40" + text.encode())


def test_an_ssh_destination_still_parses() -> None:
    assert parse_host_port("[::1]:2222") == ("::1", 2222)
    assert parse_host_port("example.org:22") == ("example.org", 22)


def _laughs(levels: int) -> str:
    lines = ["a0: &a0 [x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # a ReaderError, which has no mark, escaped
        ("version: 1\nservers: \x00", "not valid YAML"),
        # the composer's RecursionError escaped
        ("[" * 3000, "nested too deeply"),
        # aliases doubling at each level: 2**40 values, built for ever
        (_laughs(40), "expands to more than"),
    ],
    ids=["nul", "nesting", "aliases"],
)
@pytest.mark.timeout(20)
def test_a_hostile_topology_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_topology(text, source="t.yaml")


def test_chunks_cover_the_input_in_order() -> None:
    data = bytes(range(50))
    for control in range(16):
        assert b"".join(chunks(data, control)) == data
