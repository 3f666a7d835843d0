"""Stream headers: case-insensitive, multi-valued and ordered, the counterpart of Go's
``http.Header``. Built on :mod:`multidict`, which is well kept and fast."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = ["REDACTED", "Headers", "HeadersLike", "is_sensitive_header"]

#: header names whose values usually carry credentials; such values are never shown in
#: reprs, logs, metrics or debug output
_SENSITIVE_NAME = re.compile(
    r"(^|[-_])(authorization|authentication|cookie|set-cookie|token|secret|password|passwd"
    r"|api-?key|session|credentials?|signature)($|[-_])",
    re.IGNORECASE,
)
#: what a sensitive header's value is shown as
REDACTED = "<redacted>"


def is_sensitive_header(name: str) -> bool:
    """``True`` if the header *name* usually carries a credential (``Authorization``,
    ``Cookie``, ``X-Api-Key``, ``X-Auth-Token``, ...), so its value must not be shown."""
    return _SENSITIVE_NAME.search(name) is not None


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

    def redacted(self) -> list[tuple[str, str]]:
        """The headers as pairs, with the values of sensitive names (see
        :func:`is_sensitive_header`) replaced by ``<redacted>``: safe to log or show."""
        return [
            (name, REDACTED if is_sensitive_header(name) else value) for name, value in self.items()
        ]

    def __repr__(self) -> str:
        # reprs end up in logs and tracebacks, so credentials are masked here too
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self.redacted())
        return f"Headers({{{inner}}})"


HeadersLike: TypeAlias = (
    Headers
    | CIMultiDict[str]
    | CIMultiDictProxy[str]
    | Mapping[str, str]
    | Iterable[tuple[str, str]]
)
"""What the API accepts wherever it takes headers."""
