"""The conformance suite every provider, backend or wrapper must pass.

Use it from pytest by subclassing :class:`ProviderConformance`, or call the checks in
:data:`CHECKS` (or :func:`run_all_checks`) directly with a factory of connected pairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._checks import CHECKS, Check, read_all, run_all_checks
from ._pairs import ConformanceOptions, PairFactory, ProviderPair, open_pair, stream_pair

if TYPE_CHECKING:
    from ._suite import ProviderConformance

__all__ = [
    "CHECKS",
    "Check",
    "ConformanceOptions",
    "PairFactory",
    "ProviderConformance",
    "ProviderPair",
    "open_pair",
    "read_all",
    "run_all_checks",
    "stream_pair",
]


def __getattr__(name: str) -> Any:
    # pytest is needed only by the pytest form of the suite
    if name == "ProviderConformance":
        from ._suite import ProviderConformance

        return ProviderConformance
    raise AttributeError(name)
