"""Stream headers: case-insensitive, multi-valued and ordered, the counterpart of Go's
``http.Header``. Built on :mod:`multidict`, which is well kept and fast."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = ["Headers", "HeadersLike"]


class Headers(CIMultiDict[str]):
    """Stream headers.

    Names compare case-insensitively and keep the case they were given; a name may have
    several values; iteration keeps insertion order. Values are strings.

    >>> h = Headers([("X-Trace", "a"), ("x-trace", "b")])
    >>> h.getall("X-TRACE")
    ['a', 'b']
    """

    @classmethod
    def coerce(cls, value: HeadersLike | None) -> Headers:
        """Return *value* as :class:`Headers` (a copy), accepting every form the API takes.

        :param value: ``None``, a mapping, a multidict, or an iterable of ``(name, value)``
        :raises TypeError: if a name or a value is not a string
        """
        if value is None:
            return cls()
        items: Iterable[tuple[str, str]]
        multi = (CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy)
        if isinstance(value, (*multi, Mapping)):
            items = value.items()
        else:
            items = value
        headers = cls()
        for name, val in items:
            if not isinstance(name, str) or not isinstance(val, str):
                raise TypeError(f"header names and values must be str, got {name!r}: {val!r}")
            headers.add(name, val)
        return headers

    def lowercased(self) -> list[tuple[str, str]]:
        """The headers as ``(name, value)`` pairs with lower-case names, in order."""
        return [(name.lower(), value) for name, value in self.items()]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"Headers({{{inner}}})"


HeadersLike: TypeAlias = (
    Headers
    | CIMultiDict[str]
    | CIMultiDictProxy[str]
    | Mapping[str, str]
    | Iterable[tuple[str, str]]
)
"""What the API accepts wherever it takes headers."""
