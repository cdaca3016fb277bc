"""Empty files made ahead of need, so a new run's log is renamed into place, not created.

Creating a file is the costliest thing a new run's first append does: on ext4 the inode
allocator may walk the inode bitmap and the inode table of the directory's block group (it
skips inodes freed recently), which on a directory with files created and removed before
(purged runs, a busy ``/tmp``) was measured at 0.05-0.55 ms of kernel CPU per file, while a
rename or a link of an existing empty file took ~0.02 ms. So a helper thread keeps a few
empty files in ``spares/`` (at the world's root), opened for appending, and the writer
thread links one under the new log's name and writes through its descriptor.

Durability is the same as for a created file: the link changes the log directory's
entries, which the next checkpoint syncs, and until then the journal holds every write to
the new log, so after a power cut :func:`~worldflow.worlds._file.writer.replay_wal` creates
the log again if the link was lost. Nothing durable depends on ``spares/``: what a crash
leaves there (an empty spare, the second name of a log, a spare whose link a power cut
undid) is debris, removed when the next writer starts its pool; removing a name never
touches a log. A closing writer removes its spares.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Final

__all__ = ["SPARES_DIR", "Spares"]

logger = logging.getLogger("worldflow.worlds.file")

SPARES_DIR: Final = "spares"
_FLAGS: Final = os.O_WRONLY | os.O_APPEND


class Spares:
    """A pool of empty files in ``root/spares``, refilled by a thread of its own.

    :meth:`take` is called by the writer thread only; the two deques are what both threads
    touch, and their ``append`` / ``popleft`` are atomic.
    """

    def __init__(self, root: Path, *, size: int = 32) -> None:
        self.directory = root / SPARES_DIR
        self.size = size
        self._ready: deque[tuple[Path, int]] = deque()  # (path, fd open for appending)
        self._spent: deque[Path] = deque()  # names of spares linked into place
        self._wanted = threading.Event()
        self._stopping = False
        self._serial = 0
        self._prefix = os.urandom(4).hex()  # a writer's names never meet an earlier one's
        self._thread = threading.Thread(
            target=self._fill, name=f"worldflow-file-spares:{root}", daemon=True
        )

    def start(self) -> None:
        """Clear what an earlier writer left and start filling the pool (in the thread)."""
        self._wanted.set()
        self._thread.start()

    def take(self, target: Path) -> int | None:
        """Link a spare as ``target`` and return its descriptor, open for appending;
        ``None`` when no spare is ready or ``target`` exists (it is never replaced).

        A link, not a rename: it fails on an existing file, so the caller need not look
        first. The spare's own name is removed later by the pool's thread (until then the
        log has two names; the one in ``spares/`` is debris a crash may leave, and removing
        it never touches the log)."""
        try:
            path, fd = self._ready.popleft()
        except IndexError:
            self._wanted.set()
            return None
        try:
            os.link(path, target)
        except FileExistsError:
            self._ready.appendleft((path, fd))
            return None
        except OSError:
            os.close(fd)
            self._spent.append(path)
            self._wanted.set()
            raise
        self._spent.append(path)
        if len(self._ready) < self.size // 2:
            self._wanted.set()
        return fd

    def close(self) -> None:
        """Stop the thread, then close and remove the spares left."""
        self._stopping = True
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join()
        while self._ready:
            path, fd = self._ready.popleft()
            os.close(fd)
            _remove(path)
        self._clear_spent()

    def _fill(self) -> None:
        try:
            self.directory.mkdir(exist_ok=True)
            with os.scandir(self.directory) as entries:
                for debris in list(entries):  # a crashed writer's spares
                    _remove(Path(debris.path))
        except OSError as exc:
            logger.warning("%s: no spare files for new run logs (%s)", self.directory, exc)
            return
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self._clear_spent()
            while not self._stopping and len(self._ready) < self.size:
                self._serial += 1
                path = self.directory / f"{self._prefix}-{self._serial}"
                try:
                    fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
                except OSError as exc:  # a full disk, too many open files: try again later
                    logger.debug("%s: could not make a spare file (%s)", self.directory, exc)
                    break
                self._ready.append((path, fd))
            if self._stopping:
                return

    def _clear_spent(self) -> None:
        while self._spent:
            _remove(self._spent.popleft())


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
