"""The arrows of docs/architecture.md, kept by a test: codecs do no I/O, wrappers never
import a backend, and the core imports neither."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "streams"
IO_MODULES = {"anyio", "asyncio", "trio", "socket", "ssl", "selectors", "time"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def sources(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


def codec_modules() -> list[Path]:
    found = [*sources("backends/*/codec*.py"), *sources("backends/*/_codec*.py")]
    return [*found, ROOT / "_core" / "flow.py"]


@pytest.mark.parametrize("path", codec_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_codecs_do_no_io(path: Path) -> None:
    for name in imported_modules(path):
        top = name.lstrip(".").split(".")[0]
        assert top not in IO_MODULES, f"{path.name} imports {name}: codecs must stay sans-IO"


@pytest.mark.parametrize("path", sources("wrappers/**/*.py"), ids=lambda p: p.name)
def test_wrappers_never_import_backends(path: Path) -> None:
    for name in imported_modules(path):
        assert "backends" not in name, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sources("_core/**/*.py"), ids=lambda p: p.name)
def test_core_imports_neither_backends_nor_wrappers(path: Path) -> None:
    for name in imported_modules(path):
        assert "backends" not in name, f"{path.name} imports {name}"
        assert "wrappers" not in name, f"{path.name} imports {name}"
