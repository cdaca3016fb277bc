"""``open_world(url)``: schemes, the environment default, and the errors for what is missing."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from worldflow import ConfigurationError, WorldNotAvailableError
from worldflow.worlds import DEFAULT_WORLD_URL, MemoryWorld, _open, open_world

pytestmark = pytest.mark.anyio


async def test_memory_url_opens_a_fresh_memory_world() -> None:
    first = await open_world("memory://")
    second = await open_world("memory://")
    assert isinstance(first, MemoryWorld)
    assert first is not second
    await first.aclose()
    await second.aclose()


async def test_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="memory://") as caught:
        await open_world("redis://localhost")
    assert type(caught.value) is ConfigurationError
    assert "redis://localhost" in str(caught.value)
    with pytest.raises(ConfigurationError):
        await open_world("just-a-path")


async def test_missing_driver_names_the_pip_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wf_needs_driver.py").write_text(
        "import wf_driver_that_is_not_installed  # noqa: F401\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_open._WORLDS, "fancy", ("wf_needs_driver", "FancyWorld.from_url", "fancy"))
    with pytest.raises(WorldNotAvailableError) as caught:
        await open_world("fancy://x")
    message = str(caught.value)
    assert "wf_driver_that_is_not_installed" in message
    assert "pip install 'worldflow[fancy]'" in message


async def test_missing_world_module_is_not_implemented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_open._WORLDS, "later", ("wf_world_from_the_future", "W.from_url", None))
    with pytest.raises(WorldNotAvailableError, match="later:// world is not implemented"):
        await open_world("later://x")


@pytest.fixture
def recording_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Point the ``file`` scheme at a fake world that records the URLs it is opened with."""
    (tmp_path / "wf_recording_world.py").write_text(
        textwrap.dedent(
            """
            from worldflow.worlds import MemoryWorld

            OPENED = []

            class RecordingWorld(MemoryWorld):
                @classmethod
                async def from_url(cls, url):
                    OPENED.append(url)
                    return cls()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        _open._WORLDS, "file", ("wf_recording_world", "RecordingWorld.from_url", None)
    )
    module = importlib.import_module("wf_recording_world")
    opened: list[str] = module.OPENED
    yield opened
    sys.modules.pop("wf_recording_world", None)


async def test_default_url_is_the_file_world(
    recording_world: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORLDFLOW_WORLD", raising=False)
    world = await open_world()
    await world.aclose()
    assert recording_world == [DEFAULT_WORLD_URL]
    assert DEFAULT_WORLD_URL.startswith("file://")


async def test_worldflow_world_selects_the_default(
    recording_world: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLDFLOW_WORLD", "memory://")
    world = await open_world()
    assert type(world) is MemoryWorld
    await world.aclose()
    monkeypatch.setenv("WORLDFLOW_WORLD", "file:///srv/flows")
    world = await open_world()
    await world.aclose()
    assert recording_world == ["file:///srv/flows"]
    explicit = await open_world("memory://")  # an explicit URL wins over the environment
    assert type(explicit) is MemoryWorld
    await explicit.aclose()
    monkeypatch.setenv("WORLDFLOW_WORLD", "bogus://x")
    with pytest.raises(ConfigurationError, match="bogus"):
        await open_world()
