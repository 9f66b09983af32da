"""The vendor simulators are written from the vendor documents, not from the connectors: none
imports the library (vendor_import), each names the seed document and VENDORS.md section it
follows, and the connectors never import a simulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIMULATORS = sorted(p for p in (ROOT / "local" / "simulators").glob("*.py") if p.name != "__init__.py")
SEEDS = {"aep": "seed 003", "campaign": "seed 001", "cirrus": "seed 004", "hopex": "seed 002",
         "simplemente": "seed 000"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SIMULATORS, ids=[p.stem for p in SIMULATORS])
def test_a_simulator_shares_no_code_with_the_library(path):
    assert not [m for m in imported_modules(path) if m.split(".")[0] == "vendor_import"]


@pytest.mark.parametrize("vendor", sorted(SEEDS))
def test_a_simulator_names_its_sources(vendor):
    doc = ast.get_docstring(ast.parse((ROOT / "local" / "simulators" / f"{vendor}.py").read_text())) or ""
    assert SEEDS[vendor] in doc and "VENDORS.md" in doc


def test_no_connector_imports_a_simulator():
    library = ROOT / "layers" / "common" / "vendor_import"
    offenders = [p.name for p in library.rglob("*.py") if any(m.startswith("local") for m in imported_modules(p))]
    assert offenders == []
