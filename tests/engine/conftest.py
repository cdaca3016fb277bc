"""Engine test setup: close the workflow instances a test left open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.history import close_all


@pytest.fixture(autouse=True)
def _close_instances() -> Iterator[None]:
    yield
    close_all()
