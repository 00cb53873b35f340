"""The fault campaign's findings: each test fails on the code it was written against and asserts
the safe behaviour. They would make CI red, so they are skipped unless GESTOR_CAMPAIGN=1."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

_HERE = Path(__file__).parent.resolve()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("GESTOR_CAMPAIGN") == "1":
        return
    skip = pytest.mark.skip(reason="campaign finding: run with GESTOR_CAMPAIGN=1; fixed findings move to the regular suite")
    for item in items:
        try:
            inside = Path(str(item.fspath)).resolve().is_relative_to(_HERE)
        except (OSError, ValueError):
            inside = False
        if inside:
            item.add_marker(skip)
