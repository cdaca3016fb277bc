"""Storage faults seen through HTTP keep what they are (issue #10, "A full disk" and "One
damaged run blocks every run"): a full disk is a 507 whose body says ENOSPC and what to do,
a damaged run's log a 500 ``corrupt_log`` naming the file and line, on the user-facing APIs
and on the World API, where a :class:`~worldflow.worlds.RemoteWorld` raises the same
``DiskFullError`` / ``CorruptLogError`` a local file world does. Both used to be a bare
``internal server error`` with an id (found by filling a 1 MiB tmpfs under ``worldflow
serve``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.runtime import running
from tests.http.served import serving
from tests.worlds.served import served
from tests.worlds.test_file_damage import _swap_type, _two_runs
from tests.worlds.test_file_full_disk import _BIG, _created, _fill, small_disk
from worldflow import CorruptLogError, DiskFullError, workflow
from worldflow.worlds import EventRaised, FileWorld
from worldflow.worlds._remote import RemoteWorld

pytestmark = pytest.mark.anyio
__all__ = ["small_disk"]


@workflow(name="faults.echo")
async def echo(x: object) -> object:
    """Return ``x``."""
    return x


async def test_a_full_disk_over_http_is_507_and_a_remote_world_raises_disk_full(
    small_disk: Path,
) -> None:
    async with (
        FileWorld(small_disk / "world") as world,
        running(world, [echo]) as engine,
        serving(engine) as srv,
        served(world) as url,
    ):
        await world.append("r1", _created("r1"))  # type: ignore[arg-type]
        remote = await RemoteWorld.from_url(url)
        ballast = _fill(small_disk)
        try:
            with pytest.raises(DiskFullError, match="ENOSPC") as full:
                await remote.append("r1", [EventRaised(run_id="r1", name="e", payload=_BIG)])
            assert "Free space" in full.value.message
            assert (await remote.get_run("r1")).last_seq == 2  # reads go on
        finally:
            await remote.aclose()
        path = "/v1.0/workflows/dapr/faults.echo/start?instanceID=d1"
        async with srv.request("POST", path, data=bytes(_BIG)) as r:
            text = await r.text()
            assert r.status == 507, text
            assert "ENOSPC" in text, text
        async with srv.request("GET", "/v1.0/workflows/dapr/r1") as r:
            assert r.status == 200, await r.text()
        ballast.unlink()


async def test_a_damaged_run_over_http_names_its_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "w"
    log = await _two_runs(root)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join([lines[0], _swap_type(lines[1]), *lines[2:]]))
    async with FileWorld(root) as world, served(world) as url:
        remote = await RemoteWorld.from_url(url)
        try:
            # the damage keeps the log's size: found when its events are first read
            with pytest.raises(CorruptLogError, match=r"bad\..*line 2"):
                await remote.list_events("bad")
            with pytest.raises(CorruptLogError, match=r"bad\..*line 2"):
                await remote.get_run("bad")
            assert (await remote.get_run("good")).corrupt is None
        finally:
            await remote.aclose()
        async with running(world, [echo]) as engine, serving(engine) as srv:
            async with srv.request("GET", "/v1.0/workflows/dapr/bad") as r:
                text = await r.text()
                assert r.status == 500, text
                assert "line 2" in text, text
            async with srv.request("POST", "/api/runs/bad/rerun") as r:
                text = await r.text()
                assert r.status == 500, text
                assert "corrupt_log" in text, text
