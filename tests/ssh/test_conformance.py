import pytest

from streams.testing import ConformanceOptions, ProviderConformance

from .helpers import Keys, ssh_pair


class TestSSH(ProviderConformance):
    options = ConformanceOptions(
        max_buffered_per_stream=4 * 1024 * 1024,
    )

    @pytest.fixture(autouse=True)
    def _keys(self, ssh_keys: Keys) -> None:
        self.keys = ssh_keys

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return ssh_pair(self.keys)
