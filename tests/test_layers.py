"""The one-way layers: UI -> pipeline -> backend -> engine, with weights/ (the recipe) above the
library. Read from the source with `ast`, so a lazy import inside a function counts too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "reasoner"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports made absolute (`reasoner.x.y`)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = node.module if node.level == 0 else ".".join(filter(None, [base, node.module]))
            found.add(module)
            # `from .. import backends` names a module too
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def reaches(modules: set[str], layer: str) -> set[str]:
    return {m for m in modules if m == layer or m.startswith(layer + ".")}


def test_the_import_reader_sees_relative_and_lazy_imports():
    engine = LIBRARY / "engine"
    assert "reasoner.engine.fast" in imported_modules(engine / "onnx_runtime.py")
    assert "reasoner.errors" in imported_modules(engine / "__init__.py")
    assert "reasoner.backends.janus" in imported_modules(LIBRARY / "commands" / "bench.py")  # inside a function


@pytest.mark.parametrize("path", sorted((LIBRARY / "engine").glob("*.py")), ids=lambda p: p.name)
def test_the_engine_reads_tensors_only(path):
    modules = imported_modules(path)
    for layer in (
        "reasoner.backends",
        "reasoner.commands",
        "reasoner.models",
        "reasoner.pipeline",
        "reasoner.eval",
        "reasoner.cli",
        "weights",
        "ui",
    ):
        assert not reaches(modules, layer), (
            f"{path.name} imports {reaches(modules, layer)}: the engine is below {layer}"
        )


@pytest.mark.parametrize("path", sorted((LIBRARY / "backends").glob("*.py")), ids=lambda p: p.name)
def test_backends_do_not_reach_up(path):
    modules = imported_modules(path)
    for layer in ("reasoner.pipeline", "reasoner.eval", "reasoner.cli", "reasoner.commands", "weights", "ui"):
        assert not reaches(modules, layer), f"{path.name} imports {reaches(modules, layer)}"


def test_nothing_in_the_library_imports_weights_or_the_ui():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            reaches(imported_modules(path), "weights") | reaches(imported_modules(path), "ui")
        )
        for path in LIBRARY.rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}
