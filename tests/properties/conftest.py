"""Property tests: ``--slow`` switches to the long, random budgets (see ``budget.py``)."""

from __future__ import annotations

import pytest

from tests.properties import budget


def pytest_configure(config: pytest.Config) -> None:
    budget.SLOW = bool(config.getoption("--slow"))
