"""The shared conformance suite on HTTP/2, over h2c and over TLS with ALPN h2."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from streams.backends.http2 import Http2Settings
from streams.testing import ConformanceOptions, ProviderConformance, ProviderPair
from tests.certificates import Certificates, make_certificates
from tests.http2.helpers import http2_pair

OPTIONS = ConformanceOptions(
    # the stream window (256 KiB) plus one frame in flight; auto-tuning cannot grow the
    # window of a stream nobody reads
    max_buffered_per_stream=1024 * 1024,
    bulk_bytes=32 * 1024 * 1024,
)

NOT_HTTP2 = (
    "HTTP/2 has no server-initiated requests: only the client side opens streams "
    "(the server's open_stream raises StreamError); see docs/http2.md"
)


class TestHttp2Cleartext(ProviderConformance):
    options = OPTIONS

    def provider_pair(self) -> AbstractAsyncContextManager[ProviderPair]:
        return http2_pair()

    not_applicable = {"open_and_accept_from_either_side": NOT_HTTP2}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(Path(tmp_path_factory.mktemp("certs")))


class TestHttp2TLS(ProviderConformance):
    options = OPTIONS

    @pytest.fixture(autouse=True)
    def _certificates(self, certificates: Certificates) -> None:
        self.certificates = certificates

    def provider_pair(self) -> AbstractAsyncContextManager[ProviderPair]:
        return http2_pair(certificates=self.certificates)

    not_applicable = {"open_and_accept_from_either_side": NOT_HTTP2}


SMALL = Http2Settings(
    receive_window=16384,
    max_receive_window=16384,
    max_frame_size=16384,
    connection_window=65535,
)


class TestHttp2SmallWindows(ProviderConformance):
    """The protocol's smallest windows and frames: every byte waits for credit, so flow
    control bugs (lost updates, starved streams) show up as hangs here."""

    options = ConformanceOptions(
        max_buffered_per_stream=256 * 1024, bulk_bytes=8 * 1024 * 1024, concurrent_streams=300
    )

    def provider_pair(self) -> AbstractAsyncContextManager[ProviderPair]:
        return http2_pair(SMALL)

    not_applicable = {"open_and_accept_from_either_side": NOT_HTTP2}
