from pathlib import Path

import pytest

from .helpers import Keys, make_keys


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(Path(tmp_path_factory.mktemp("ssh-keys")))
