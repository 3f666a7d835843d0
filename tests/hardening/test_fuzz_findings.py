"""Every input the fuzzers (``fuzz/``) found to break a decoder, replayed through the same
property, plus a direct check of what the fix does."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fuzz import fuzz_framer, fuzz_http2, fuzz_spdy, fuzz_ssh, fuzz_topology
from fuzz._harness import chunks
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


def test_chunks_cover_the_input_in_order() -> None:
    data = bytes(range(50))
    for control in range(16):
        assert b"".join(chunks(data, control)) == data
