"""A workflow's registered name does not depend on how its module was launched."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_module_run_with_dash_m_registers_its_import_name(tmp_path: Path) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "orders.py").write_text(
        textwrap.dedent(
            """
            from worldflow import step, workflow

            @step
            async def pack(x: int) -> int:
                return x

            @workflow
            async def ship(x: int) -> int:
                return await pack(x)

            if __name__ == "__main__":
                print(ship.definition.name, pack.definition.name)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "shop.orders"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["shop.orders:ship", "shop.orders:pack"]
