"""How streams map onto HTTP/2 requests and responses (see ``docs/http2.md``).

Pure functions, no I/O: the opener's headers become a request header list, a handler's
decision becomes a response header list, and a response's ``:status`` decides whether
the opener was accepted.

The lists built here are complete and valid as they are: lower-case names, pseudo-headers
first and only the allowed ones, no connection-specific fields, no line breaks, values
without surrounding whitespace, credentials and short cookies marked never to be indexed.
So h2 is told not to validate and normalize them again (``_codec.new_connection``), which
costs it a chain of ten generators per header block.
"""

from __future__ import annotations

from typing import cast

from hpack import NeverIndexedHeaderTuple

from ..._core.errors import ErrorCode, StreamRejected
from ..._core.headers import Headers

__all__ = [
    "BODYLESS_METHODS",
    "DEFAULT_REJECT_STATUS",
    "accept_response",
    "is_accepted",
    "reject_response",
    "rejection_from_response",
    "request_headers",
]

#: requests without a body: their HEADERS frame ends the request (END_STREAM)
BODYLESS_METHODS = frozenset({"GET", "HEAD"})
#: the status of a rejection whose handler did not choose one
DEFAULT_REJECT_STATUS = "403"
#: the status of a rejection because the handler raised
FAILED_HANDLER_STATUS = "500"

_REQUEST_PSEUDO = (":method", ":scheme", ":authority", ":path")
# RFC 9113, section 8.2.2: these belong to HTTP/1.1 connections and are malformed here
_CONNECTION_SPECIFIC = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


#: fields kept out of HPACK's dynamic table (as h2 and nghttp2 do): credentials, and
#: cookies short enough to guess by probing the compression
_NEVER_INDEXED = frozenset({"authorization", "proxy-authorization"})
_SHORT_COOKIE = 20


def _field(name: str, value: str) -> tuple[str, str]:
    value = value.strip()
    if name in _NEVER_INDEXED or (name == "cookie" and len(value.encode()) < _SHORT_COOKIE):
        # a tuple of the two strings all the same, which h2 and hpack recognise
        return cast(tuple[str, str], NeverIndexedHeaderTuple(name, value))
    return (name, value)


def _check_name(name: str, value: str) -> None:
    bare = name[1:] if name.startswith(":") else name
    if not bare or ":" in bare or any(c.isspace() or not c.isprintable() for c in bare):
        raise ValueError(f"{name!r} is not a valid HTTP/2 header name")
    if name in _CONNECTION_SPECIFIC or (name == "te" and value.strip().lower() != "trailers"):
        raise ValueError(f"the connection-specific header {name!r} is not allowed in HTTP/2")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"the value of header {name!r} contains a line break or NUL")


def request_headers(headers: Headers, *, scheme: str, authority: str) -> list[tuple[str, str]]:
    """The request header list for an opener's *headers*.

    The pseudo-headers ``:method`` (``POST``), ``:scheme``, ``:authority`` and ``:path``
    (``/``) get defaults unless *headers* gives them; names are lower-cased.

    :raises ValueError: if a header cannot be sent over HTTP/2
    """
    pseudo: dict[str, str] = {}
    regular: list[tuple[str, str]] = []
    for name, value in headers.items():
        lowered = name.lower()
        _check_name(lowered, value)
        if lowered.startswith(":"):
            if lowered not in _REQUEST_PSEUDO:
                raise ValueError(f"{name!r} is not a request pseudo-header")
            if lowered in pseudo:
                raise ValueError(f"the pseudo-header {name!r} is given twice")
            pseudo[lowered] = value
        else:
            regular.append(_field(lowered, value))
    method = pseudo.get(":method", "POST").strip()
    out = [(":method", method)]
    if method != "CONNECT":
        out.append((":scheme", pseudo.get(":scheme", scheme).strip()))
    out.append((":authority", pseudo.get(":authority", authority).strip()))
    if method != "CONNECT":
        out.append((":path", pseudo.get(":path", "/").strip() or "/"))
    return out + regular


def _regular(headers: Headers) -> list[tuple[str, str]]:
    regular = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(":"):
            continue
        _check_name(lowered, value)
        regular.append(_field(lowered, value))
    return regular


def accept_response(response: Headers) -> list[tuple[str, str]]:
    """The response header list that accepts a stream: ``:status`` 200 (or the 2xx the
    handler chose) and the handler's headers, lower-cased.

    :raises ValueError: if a header cannot be sent, or the handler chose a non-2xx status
    """
    status = response.get(":status", "200").strip()
    if not is_accepted(status):
        raise ValueError(f"a stream is accepted with a 2xx :status, not {status!r}")
    return [(":status", status), *_regular(response)]


def reject_response(rejection: StreamRejected) -> list[tuple[str, str]]:
    """The response header list that rejects a stream: the handler's ``:status`` when it
    chose a non-2xx one, else 500 for a handler that failed and 403 otherwise."""
    status = rejection.response_headers.get(":status", "").strip()
    if not (len(status) == 3 and status.isdigit() and status[0] in "3456"):
        failed = rejection.code == ErrorCode.INTERNAL_ERROR
        status = FAILED_HANDLER_STATUS if failed else DEFAULT_REJECT_STATUS
    try:
        regular = _regular(rejection.response_headers)
    except ValueError:
        regular = []
    return [(":status", status), *regular]


def is_accepted(status: str) -> bool:
    """``True`` for a final 2xx status."""
    return len(status) == 3 and status.isdigit() and status[0] == "2"


def rejection_from_response(headers: Headers) -> StreamRejected:
    """The :class:`~streams.StreamRejected` an opener raises for a non-2xx response."""
    status = headers.get(":status", "")
    code = ErrorCode.INTERNAL_ERROR if status.startswith("5") else ErrorCode.REFUSED_STREAM
    return StreamRejected(headers, f"HTTP status {status}", code=code, retryable=False)
