"""The shared conformance suite on SPDY/3.1, over TCP and over TLS, on asyncio and trio."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.testing import ConformanceOptions, ProviderConformance
from tests.certificates import Certificates, make_certificates
from tests.spdy.helpers import spdy_pair

OPTIONS = ConformanceOptions(
    max_buffered_per_stream=20 * 1024 * 1024,
    bulk_bytes=16 * 1024 * 1024,
    concurrent_streams=300,
)


class TestSpdyTCP(ProviderConformance):
    options = OPTIONS

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return spdy_pair()


class TestSpdyTLS(ProviderConformance):
    options = OPTIONS

    @pytest.fixture(autouse=True)
    def _certificates(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.certificates: Certificates = make_certificates(Path(tmp_path_factory.mktemp("tls")))

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return spdy_pair(self.certificates)
