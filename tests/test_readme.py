"""The README's example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_first_example_runs_as_written() -> None:
    blocks = python_blocks()
    assert blocks, "the README has no python example"
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "echoed: b'hello, streams'" in result.stdout
    assert "'x-seen-path': '/echo'" in result.stdout
