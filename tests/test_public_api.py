"""Each package's public surface is real: every name in __all__ resolves."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "package",
    [
        "articlegen",
        "articlegen.cli",
        "articlegen.core",
        "articlegen.db",
        "articlegen.export",
        "articlegen.flows",
        "articlegen.generator",
        "articlegen.importing",
        "articlegen.runs",
    ],
)
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
