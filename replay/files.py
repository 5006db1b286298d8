"""Private, durable files: 0700 directories, 0600 files, atomic replacement.

:func:`atomic_write` is the safe-replace sequence: write a temporary file in
the same directory, flush and fsync it, ``os.replace`` it over the target, then
fsync the directory, so that after a crash the target is either the old file or
the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["DIR_MODE", "FILE_MODE", "atomic_write", "atomic_writer", "ensure_private_dir", "fsync_dir"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents as 0700, durably; existing directories are left as they are.

    Each new directory's entry is fsynced in its parent before the next is made (and before this
    returns), so a file that later names the new directory (a manifest, a rename into it) can never
    survive a power loss that the directory itself did not.
    """
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a new or renamed entry in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path``'s new content to; it replaces ``path`` (0600) when the block ends without error.

    A crash or an exception leaves the old file (or none), whole; the temporary file is removed.
    """
    path = Path(path)
    ensure_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600) so that a crash leaves the old or the new file, whole."""
    with atomic_writer(path) as handle:
        handle.write(data)
