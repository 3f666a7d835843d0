"""Durations (``5s``, ``250ms``, ``1m30s``) and sizes (``256KiB``, ``1MB``) as operators
write them in topologies."""

from __future__ import annotations

import re

__all__ = ["DURATION_PATTERN", "SIZE_PATTERN", "parse_duration", "parse_size"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h)"
#: a JSON Schema pattern for durations (no sign: a negative duration is never valid)
DURATION_PATTERN = rf"^(?:{_DURATION_PART})+$"

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}
#: a JSON Schema pattern for sizes
SIZE_PATTERN = r"^\d+(?:\.\d+)?\s*(?:[kKmMgG]i?[bB]|[bB])?$"


def parse_duration(text: str | int | float) -> float:
    """Seconds in *text* (a number is taken as seconds).

    :raises ValueError: if it is not a duration
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text}: a duration cannot be negative")
        return float(text)
    parts = re.findall(_DURATION_PART, str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"{text!r} is not a duration like 5s, 250ms or 1m30s")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_size(text: str | int) -> int:
    """Bytes in *text* (a number is taken as bytes).

    :raises ValueError: if it is not a size
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text}: a size cannot be negative")
        return text
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", str(text).strip())
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size like 256KiB, 1MiB or 65536")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])
