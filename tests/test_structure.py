"""Module boundaries the architecture page promises, checked on the source (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "exposure_cli"


def _imports(path: Path):
    """(imported module, names) for every ``from … import …`` of the package in `path`, relative or not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "exposure_cli":
                yield module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "exposure_cli":
                    yield alias.name, []


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: from {module} import {', '.join(private)}")
    assert offenders == []


def test_decoding_does_not_depend_on_discovery():
    for name in ("decoding.py", "exif.py"):
        imported = {module for module, _ in _imports(PACKAGE / name)}
        assert "exposure_cli.discovery" not in imported, name
