"""The shared conformance suite on the framer, over TCP, TLS and a Unix socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.testing import ConformanceOptions, ProviderConformance
from tests.certificates import Certificates, make_certificates

from .pairs import framer_memory_pair, framer_pair

# a stalled stream may hold its window (256 KiB, not grown: it is never read) plus what the
# sockets buffer on the way
OPTIONS = ConformanceOptions(max_buffered_per_stream=4 * 1024 * 1024)


class TestFramerTCP(ProviderConformance):
    options = OPTIONS

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return framer_pair()


class TestFramerTLS(ProviderConformance):
    options = OPTIONS

    @pytest.fixture(autouse=True)
    def _certificates(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.certificates: Certificates = make_certificates(tmp_path_factory.mktemp("tls"))

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return framer_pair(tls=self.certificates)


class TestFramerUnix(ProviderConformance):
    options = ConformanceOptions(
        max_buffered_per_stream=4 * 1024 * 1024,
        bulk_bytes=16 * 1024 * 1024,
        concurrent_streams=200,
    )

    @pytest.fixture(autouse=True)
    def _path(self, tmp_path: Path) -> None:
        self.path = tmp_path / "framer.sock"

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return framer_pair(unix_path=self.path)


class TestFramerMemoryByteStream(ProviderConformance):
    """The driver on an in-memory anyio byte stream: no socket involved."""

    options = ConformanceOptions(
        max_buffered_per_stream=4 * 1024 * 1024,
        bulk_bytes=16 * 1024 * 1024,
        concurrent_streams=200,
    )

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return framer_memory_pair()


class TestFramerRaw(ProviderConformance):
    """Raw mode has no headers: only the checks that need none apply."""

    options = ConformanceOptions(
        max_buffered_per_stream=4 * 1024 * 1024,
        bulk_bytes=16 * 1024 * 1024,
        concurrent_streams=200,
    )

    not_applicable = dict.fromkeys(
        (
            "open_and_accept_from_either_side",
            "headers_round_trip",
            "reject_with_response_headers",
            "zero_round_trip_open_accepted",
            "zero_round_trip_open_rejected",
            "handler_exception",
        ),
        "raw mode carries no headers, so these rules cannot be expressed",
    )

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return framer_pair(raw=True)
