import pytest


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "asyncio")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # every async test runs on asyncio and on trio unless it chose its backends itself
    if "anyio_backend" in metafunc.fixturenames and not any(
        mark.name == "parametrize" and "anyio_backend" in str(mark.args[0])
        for mark in metafunc.definition.iter_markers()
    ):
        fixturedefs = metafunc._arg2fixturedefs.get("anyio_backend", ())
        if fixturedefs and fixturedefs[-1].params is None:
            metafunc.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)
