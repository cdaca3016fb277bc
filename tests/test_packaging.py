"""What `pip install worldflow` (not the editable install the suite runs on) would ship.

The distribution lists its packages by hand (three source folders mapped through
`package-dir`), so a new package folder or a template that the list misses installs fine in
development and is silently absent from a wheel. These tests read pyproject.toml the way
setuptools does and compare it with the tree.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = CONFIG["package-dir"]


def _folder(package: str) -> Path:
    """The source folder of a dotted package name under `package-dir`."""
    best = max(
        (root for root in PACKAGE_DIR if package == root or package.startswith(root + ".")), key=len
    )
    rest = package[len(best) :].lstrip(".")
    return ROOT / PACKAGE_DIR[best] / Path(*rest.split(".")) if rest else ROOT / PACKAGE_DIR[best]


def _package_name(folder: Path) -> str:
    for name, source in PACKAGE_DIR.items():
        base = ROOT / source
        if folder == base or base in folder.parents:
            rest = folder.relative_to(base).parts
            return ".".join((name, *rest))
    raise AssertionError(f"{folder} is under no package-dir entry")


def test_every_package_folder_is_listed() -> None:
    listed = set(CONFIG["packages"])
    on_disk = {
        _package_name(init.parent)
        for source in PACKAGE_DIR.values()
        for init in (ROOT / source).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk - listed == set(), "packages missing from pyproject.toml's packages list"
    assert listed - on_disk == set(), "pyproject.toml lists packages that do not exist"


def test_every_data_file_is_shipped() -> None:
    globs: dict[str, list[str]] = CONFIG["package-data"]
    missing = []
    for package in CONFIG["packages"]:
        folder = _folder(package)
        nested = {init.parent for init in folder.rglob("__init__.py") if init.parent != folder}
        for path in folder.rglob("*"):
            if not path.is_file() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            if any(parent in nested for parent in path.parents):
                continue  # belongs to a nested package, checked there
            relative = path.relative_to(folder).as_posix()
            if not any(fnmatch.fnmatchcase(relative, g) for g in globs.get(package, [])):
                missing.append(f"{package}: {relative}")
    assert missing == [], "data files no package-data glob ships"


def test_folders_map_to_package_names_as_setuptools_maps_them() -> None:
    # The comparison above is only meaningful if _package_name maps folders as setuptools does.
    assert _package_name(ROOT / "worlds" / "_file") == "worldflow.worlds._file"
    assert _folder("worldflow.inspector.ui") == ROOT / "inspector" / "ui"
