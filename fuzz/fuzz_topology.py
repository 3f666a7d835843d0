"""Fuzz the topology loader: whatever the text, only a topology or
:class:`streams.ConfigError` may come out."""

from __future__ import annotations

from fuzz._harness import main
from streams import ConfigError
from streams.config import parse_topology


def check(data: bytes) -> None:
    """The property for one input; raises if it does not hold."""
    text = data.decode("utf-8", "replace")
    try:
        parse_topology(text, source="fuzz.yaml")
    except ConfigError as exc:
        if not str(exc):
            raise AssertionError("a ConfigError without a message") from exc


if __name__ == "__main__":
    main(check)
