"""Who owns a data dir: one ``replay serve`` (or one offline command) at a time.

A server keeps an exclusive ``flock(2)`` on ``<data dir>/.replay.lock`` for as
long as it runs, and writes its process id and URL into it, so that

* a second server on the same data dir stops at once with an error naming the
  first (two emulators folding one log into checkpoints of their own state
  would each lose the other's calls);
* ``replay compact`` finds the running server and asks it to do the work, or,
  when none runs, holds the lock itself while it rewrites files.

The lock goes with the process: a server killed with ``kill -9`` leaves the
file, not the lock; a server that stops removes the file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import orjson

from ..errors import DataDirInUseError, SourceError
from ..files import FILE_MODE, ensure_private_dir

__all__ = ["LOCK_FILE_NAME", "DataDirLock", "owner"]

LOCK_FILE_NAME = ".replay.lock"


class DataDirLock:
    """An exclusive hold on ``data_dir`` until :meth:`release` (or the process ends)."""

    def __init__(self, data_dir: Path, **about: object) -> None:
        self.data_dir = Path(data_dir)
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise SourceError(self.data_dir, f"{self.data_dir} is a file, not a data dir; name a directory")
        ensure_private_dir(self.data_dir)
        self.path = self.data_dir / LOCK_FILE_NAME
        self._fd: int | None = None
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DataDirInUseError(self.data_dir, owner(self.data_dir) or {}) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
            else:  # the owner before us removed the file as we opened it: lock the current one
                os.close(fd)
        self.about: dict[str, object] = {"pid": os.getpid()}
        self.update(**about)

    def update(self, **about: object) -> None:
        """Say more about the owner (the URL, once the server has bound its port)."""
        if self._fd is None:
            return
        self.about.update(about)
        data = orjson.dumps(self.about)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Remove the lock file and drop the lock (a process that opened the file meanwhile tries again)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        document = orjson.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def owner(data_dir: Path) -> dict[str, Any] | None:
    """What the process holding ``data_dir`` says about itself; ``None`` when nobody holds it."""
    path = Path(data_dir) / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
