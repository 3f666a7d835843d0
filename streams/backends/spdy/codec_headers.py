"""SPDY/3 name/value header blocks: the block format, and the zlib contexts (primed with
the SPDY dictionary) that compress one direction of a session. Sans-IO."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from ._dictionary import DICTIONARY
from .codec_frames import _U32, Pairs, SessionError

__all__ = [
    "HeaderCompressor",
    "HeaderDecompressor",
    "TooManyHeaders",
    "decode_header_block",
    "encode_header_block",
]


class TooManyHeaders(ValueError):
    """A header block carries more values than the receiver accepts."""


def encode_header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """The uncompressed name/value block of *headers*.

    Names are lower-cased and grouped: several values of one name travel as one value
    joined with NUL, at the place of the name's first occurrence.

    :raises ValueError: for an empty name, or a value that cannot travel (a NUL inside it,
        or an empty value among several)
    """
    grouped: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        key = name.lower().encode("utf-8", "surrogateescape")
        if not key:
            raise ValueError("a header name must not be empty")
        raw = value.encode("utf-8", "surrogateescape")
        if b"\x00" in raw or b"\x00" in key:
            raise ValueError(f"header {name!r}: NUL cannot travel in a SPDY header")
        grouped.setdefault(key, []).append(raw)
    parts = [_U32.pack(len(grouped))]
    for key, values in grouped.items():
        if len(values) > 1 and not all(values):
            raise ValueError(f"header {key!r}: an empty value cannot travel among several")
        joined = b"\x00".join(values)
        parts += [_U32.pack(len(key)), key, _U32.pack(len(joined)), joined]
    return b"".join(parts)


def decode_header_block(block: bytes, max_headers: int | None = None) -> Pairs:
    """Parse an uncompressed name/value block into pairs, one per value.

    :param max_headers: the most values (pairs out) accepted; ``None``: no limit
    :raises TooManyHeaders: if the block carries more than *max_headers* values (several
        values of one name, joined with NUL, count one each)
    :raises ValueError: if the block is malformed, a name is empty, holds a NUL, is not
        lower case or is repeated, or a value list has an empty member
    """
    view = memoryview(block)
    if len(view) < 4:
        raise ValueError("header block shorter than its count")
    (count,) = _U32.unpack_from(view, 0)
    position = 4
    # each pair needs at least 8 bytes: a huge count cannot make us loop for long
    if count > (len(view) - 4) // 8:
        raise ValueError(f"header block announces {count} pairs in {len(view)} bytes")
    if max_headers is not None and count > max_headers:
        raise TooManyHeaders(f"header block of {count} names, more than {max_headers}")
    seen: set[bytes] = set()
    pairs: list[tuple[str, str]] = []
    for _ in range(count):
        name, position = _read_string(view, position)
        value, position = _read_string(view, position)
        if not name:
            raise ValueError("empty header name")
        if b"\x00" in name:
            # NUL separates values: such a name could never be sent on again
            raise ValueError(f"header name {name!r} holds a NUL")
        if name != name.lower():
            raise ValueError(f"header name {name!r} is not lower case")
        if name in seen:
            raise ValueError(f"header name {name!r} appears twice")
        seen.add(name)
        text_name = name.decode("utf-8", "surrogateescape")
        if max_headers is not None and len(pairs) + value.count(b"\x00") + 1 > max_headers:
            # counted before splitting: a value of NULs would otherwise become as many
            # objects as it has bytes
            raise TooManyHeaders(f"header block of more than {max_headers} values")
        values = value.split(b"\x00")
        if len(values) > 1 and not all(values):
            raise ValueError(f"header {text_name!r} has an empty value among several")
        pairs += [(text_name, v.decode("utf-8", "surrogateescape")) for v in values]
    if position != len(view):
        raise ValueError(f"{len(view) - position} bytes after the header block")
    return tuple(pairs)


def _read_string(view: memoryview, position: int) -> tuple[bytes, int]:
    if position + 4 > len(view):
        raise ValueError("header block truncated")
    (length,) = _U32.unpack_from(view, position)
    position += 4
    if position + length > len(view):
        raise ValueError("header block truncated")
    return bytes(view[position : position + length]), position + length


class HeaderCompressor:
    """The sending direction's zlib context, primed with the SPDY dictionary."""

    def __init__(self, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self._zlib = zlib.compressobj(
            level, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )

    def compress(self, block: bytes) -> bytes:
        """Compress one block, flushed to a byte boundary so the peer can decode it now."""
        return self._zlib.compress(block) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The receiving direction's zlib context, with a cap on what one block may expand to.

    :param limit: the most bytes one decompressed header block may have
    """

    def __init__(self, limit: int) -> None:
        self._zlib = zlib.decompressobj(15, DICTIONARY)
        self._limit = limit

    def decompress(self, data: bytes) -> bytes:
        """Decompress one block. Stops at ``limit + 1`` bytes of output, so a compression
        bomb is refused without the whole of it ever being allocated.

        :raises SessionError: if the data is not a valid continuation of the zlib stream,
            or expands past the limit
        """
        try:
            block = self._zlib.decompress(data, self._limit + 1)
        except zlib.error as exc:
            raise SessionError(f"header block does not decompress: {exc}") from exc
        if len(block) > self._limit or self._zlib.unconsumed_tail:
            raise SessionError(
                f"header block expands past {self._limit} bytes",
                limit="max_header_block",
            )
        if self._zlib.eof:
            raise SessionError("the peer ended its header compression stream")
        return block
