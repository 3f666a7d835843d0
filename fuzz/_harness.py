"""What the harnesses share: feeding bytes in the splits a network would make, and the
atheris entry point."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

#: the chunk sizes one control byte chooses between (byte-at-a-time to all-at-once),
#: so every split point a socket may produce gets exercised
_STEPS = (1, 2, 3, 5, 7, 8, 11, 12, 13, 16, 64, 100, 512, 4096, 1 << 30, 1 << 30)


def chunks(data: bytes, control: int) -> Iterator[bytes]:
    """*data* cut into pieces whose size the low four bits of *control* select."""
    step = _STEPS[control & 0xF]
    for start in range(0, len(data), step):
        yield data[start : start + step]


def main(check: Callable[[bytes], None]) -> None:
    """Run *check* under atheris with the command line's libFuzzer arguments.

    Everything imported so far (the codec under test included) is instrumented for
    coverage.
    """
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
