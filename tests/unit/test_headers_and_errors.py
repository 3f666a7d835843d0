import types

import anyio
import pytest
from multidict import CIMultiDict

import streams
from streams import (
    ConfigError,
    ConnectionLost,
    ErrorCode,
    GoingAway,
    Headers,
    ProtocolError,
    ProviderClosed,
    StreamError,
    StreamRejected,
    StreamReset,
)


def test_headers_are_case_insensitive_multi_valued_and_ordered() -> None:
    headers = Headers([("B", "1"), ("a", "2"), ("b", "3")])
    assert headers.getall("b") == ["1", "3"]
    assert [name for name, _ in headers.items()] == ["B", "a", "b"]
    assert "A" in headers
    assert headers.lowercased() == [("b", "1"), ("a", "2"), ("b", "3")]


@pytest.mark.parametrize(
    "value",
    [
        {"X-One": "1"},
        [("X-One", "1")],
        (("X-One", "1"),),
        CIMultiDict([("X-One", "1")]),
        Headers({"X-One": "1"}),
    ],
)
def test_headers_accept_every_form_the_api_takes(value: object) -> None:
    headers = Headers.coerce(value)  # type: ignore[arg-type]
    assert isinstance(headers, Headers)
    assert headers["x-one"] == "1"


def test_coerce_copies() -> None:
    original = Headers({"a": "1"})
    copy = Headers.coerce(original)
    copy["a"] = "2"
    assert original["a"] == "1"


def test_non_string_values_are_refused() -> None:
    with pytest.raises(TypeError):
        Headers.coerce({"a": 1})  # type: ignore[dict-item]
    assert Headers.coerce(None) == Headers()


def test_errors_are_rooted_in_anyio() -> None:
    assert issubclass(StreamReset, anyio.BrokenResourceError)
    assert issubclass(ConnectionLost, anyio.BrokenResourceError)
    assert issubclass(ProtocolError, ConnectionLost)
    assert issubclass(GoingAway, ConnectionLost)
    assert issubclass(ProviderClosed, anyio.ClosedResourceError)
    for error in (StreamReset, ConnectionLost, ProviderClosed, StreamRejected, ConfigError):
        assert issubclass(error, StreamError)


def test_errors_carry_codes_and_retryability() -> None:
    reset = StreamReset(ErrorCode.REFUSED_STREAM, remote=True)
    assert reset.code is ErrorCode.REFUSED_STREAM
    assert reset.retryable
    assert not StreamReset(ErrorCode.CANCEL).retryable
    assert StreamReset(0x1234).code == 0x1234
    assert "0x1234" in str(StreamReset(0x1234))
    assert GoingAway(last_stream_id=7).retryable
    assert ProtocolError("bad frame", ErrorCode.FRAME_SIZE_ERROR).code == 6
    rejected = StreamRejected(Headers({"x": "y"}), "nope")
    assert rejected.response_headers["x"] == "y"
    assert "nope" in str(rejected)


def test_config_error_names_file_line_and_path() -> None:
    error = ConfigError("expected a duration", path="upstreams.api.timeout", file="t.yaml", line=7)
    assert str(error) == "t.yaml:7: upstreams.api.timeout: expected a duration"


def test_public_api_is_exactly_all() -> None:
    public = {
        name
        for name in dir(streams)
        if not name.startswith("_") and not isinstance(getattr(streams, name), types.ModuleType)
    }
    assert public == set(streams.__all__) - {"__version__"}
