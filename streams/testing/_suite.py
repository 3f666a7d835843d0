"""The conformance suite as pytest tests: subclass :class:`ProviderConformance`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

import pytest

from ._checks import CHECKS, Check
from ._pairs import ConformanceOptions, ProviderPair

__all__ = ["ProviderConformance"]


def _make_test(name: str, check: Check) -> Callable[[Any], Awaitable[None]]:
    async def test(self: ProviderConformance) -> None:
        await check(self.provider_pair, self.options)

    test.__name__ = f"test_{name}"
    test.__doc__ = check.__doc__
    return pytest.mark.anyio(test)


class ProviderConformance:
    """Every conformance check as a separate pytest test, on asyncio and on trio.

    Subclass it in a test module (the subclass's name must start with ``Test``) and
    implement :meth:`provider_pair`::

        class TestMyProvider(ProviderConformance):
            def provider_pair(self):
                return my_connected_pair()

    Set :attr:`options` to describe the provider's bounds; override the ``anyio_backend``
    fixture to run on other event loops.
    """

    #: what the checks may assume about the provider
    options: ClassVar[ConformanceOptions] = ConformanceOptions()
    #: checks whose rule the protocol cannot express, by check name, with the reason
    #: (for example: HTTP/2 servers cannot open streams). They are not generated at all,
    #: rather than skipped; state the reason so readers see what was left out and why.
    not_applicable: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, reason in cls.not_applicable.items():
            if name not in CHECKS:
                raise TypeError(f"{cls.__name__}.not_applicable names no check {name!r}")
            if not reason:
                raise TypeError(f"{cls.__name__}.not_applicable[{name!r}] needs a reason")
            # None hides the inherited test from collection
            setattr(cls, f"test_{name}", None)

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> Any:
        return request.param

    def provider_pair(self) -> AbstractAsyncContextManager[ProviderPair]:
        """Return an async context manager giving a fresh connected pair."""
        raise NotImplementedError


for _name, _check_function in CHECKS.items():
    setattr(ProviderConformance, f"test_{_name}", _make_test(_name, _check_function))
