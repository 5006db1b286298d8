"""The call log: durable appends and a streaming, torn-tail-tolerant reader.

Writing (:class:`CallLog`):

* each entry is one ``write(2)`` of one line to a file opened ``O_APPEND``,
  mode 0600, under a thread lock and an exclusive ``flock(2)``, so threads and
  processes sharing the file never interleave entries;
* a short or failed write is truncated back and raised as
  :class:`~replay.errors.LogWriteError`; the caller must not acknowledge the call;
* the fsync policy (:class:`~replay.config.FsyncPolicy`) is Redis's
  ``appendfsync``: ``always`` syncs before :meth:`CallLog.append` returns,
  ``everysec`` syncs from a background thread once a second, ``no`` leaves it
  to the OS; :meth:`CallLog.close` always syncs;
* on open, a torn last line left by a crash is moved to
  ``recorded_api_calls.json.torn-<time>`` (never deleted) so the next append
  starts on a fresh line.

Reading (:class:`LogReader`) streams line by line.  An undecodable *last* line
is a torn tail: it is dropped with a warning and the start goes on.  An
undecodable line anywhere else raises :class:`~replay.errors.LogCorruptError`
naming the file and line; nothing is changed on disk.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .config import FsyncPolicy
from .entry import Entry, decode_entry
from .errors import EntryVersionError, LogCorruptError, LogVersionError, LogWriteError
from .files import FILE_MODE, ensure_private_dir, fsync_dir

__all__ = ["CallLog", "LogReader"]

logger = logging.getLogger("replay.log")

_flock, _LOCK_EX, _LOCK_UN, _write = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_UN, os.write

_TAIL_CHUNK = 1 << 16


def _content_end(fd: int, size: int) -> int:
    """Offset just past the last byte that is not white space (0 for a blank file)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start).rstrip()
        if chunk:
            return start + len(chunk)
        end = start
    return 0


def _line_start(fd: int, end: int) -> int:
    """Offset where the line holding byte ``end - 1`` starts."""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


class CallLog:
    """Append-only writer of ``recorded_api_calls.json``.

    :param path: the log file; its directory is created (0700) if needed.
    :param fsync: when appends are forced to disk.
    """

    def __init__(self, path: Path, fsync: FsyncPolicy = FsyncPolicy.EVERYSEC) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._always = fsync is FsyncPolicy.ALWAYS
        ensure_private_dir(self.path.parent)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)
        if created:
            fsync_dir(self.path.parent)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0  # entries appended by this object
        self._synced = 0  # of those, how many are known to be on disk
        self._dirty = False
        self._closed = False
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._repair_tail()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        if fsync is FsyncPolicy.EVERYSEC:
            self._syncer = threading.Thread(target=self._sync_every_second, name="replay-fsync", daemon=True)
            self._syncer.start()

    def _repair_tail(self) -> None:
        """Make the file end with a complete line, moving a torn last line aside."""
        size = os.fstat(self._fd).st_size
        end = _content_end(self._fd, size)
        if end == 0:
            return
        start = _line_start(self._fd, end)
        last = os.pread(self._fd, end - start, start)
        try:
            decode_entry(last)
        except EntryVersionError:
            pass  # a newer writer's complete entry: not ours to judge, and not torn
        except ValueError:
            aside = self.path.with_name(f"{self.path.name}.torn-{int(time.time() * 1000)}")
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                os.write(fd, os.pread(self._fd, size - start, start))
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.path.parent)
            os.ftruncate(self._fd, start)
            os.fsync(self._fd)
            logger.warning(
                "%s: moved a torn last entry (%d bytes) to %s before appending", self.path, size - start, aside
            )
            return
        if end == size:  # complete entry, only its newline was lost
            os.write(self._fd, b"\n")
            os.fsync(self._fd)

    def append(self, line: bytes) -> None:
        """Append one encoded entry (``line`` ends with ``\\n``).

        Under ``always`` it returns only once the entry is on disk.  Concurrent
        appenders share syncs (group commit): one ``fdatasync`` covers every
        entry written before it started, so N threads waiting cost about one
        sync, not N.

        :raises LogWriteError: it could not be written in full (or synced under
            ``always``); the file holds no part of it.
        """
        fd = self._fd
        with self._lock:
            if self._closed:
                raise LogWriteError(self.path, f"{self.path}: the log is closed")
            _flock(fd, _LOCK_EX)
            try:
                try:
                    written = _write(fd, line)
                except OSError as exc:
                    raise LogWriteError(self.path, f"{self.path}: cannot append an entry: {exc}") from exc
                if written != len(line):
                    self._truncate_back(written)
                    raise LogWriteError(self.path, f"{self.path}: short write ({written} of {len(line)} bytes)")
            finally:
                _flock(fd, _LOCK_UN)
            self._written += 1
            ticket = self._written
            if not self._always:
                self._dirty = True
                return
        with self._sync_lock:
            if self._synced >= ticket:
                return  # a sync that started after our write already covered it
            covered = self._written
            try:
                os.fdatasync(fd)
            except OSError as exc:
                raise LogWriteError(self.path, f"{self.path}: fsync failed: {exc}") from exc
            self._synced = covered

    def _truncate_back(self, written: int) -> None:
        try:
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        except OSError:
            logger.exception("%s: could not remove a partial entry; the reader will drop it", self.path)

    def sync(self) -> None:
        """Force everything appended so far to disk."""
        self._dirty = False
        os.fdatasync(self._fd)

    def _sync_every_second(self) -> None:
        while not self._stop.wait(1.0):
            if self._dirty:
                try:
                    self.sync()
                except OSError:
                    logger.exception("%s: background fsync failed", self.path)

    def close(self) -> None:
        """Sync and close; later appends raise :class:`LogWriteError`."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._sync_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CallLog {self.path} fsync={self.fsync.value}>"


class LogReader:
    """Stream ``(line number, entry)`` pairs from a log file.

    A missing file reads as empty.  :attr:`position` (bytes consumed) and
    :attr:`size` let callers show progress; :attr:`torn_line` is the number of a
    dropped torn last line, if there was one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.size = self.path.stat().st_size
        except FileNotFoundError:
            self.size = 0
        self.position = 0
        self.torn_line: int | None = None

    def _decode(self, line: bytes, number: int) -> Entry:
        try:
            return decode_entry(line)
        except EntryVersionError as exc:
            raise LogVersionError(self.path, number, exc.version, exc.supported) from None

    def __iter__(self) -> Iterator[tuple[int, Entry]]:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed in finally, generator-scoped
        except FileNotFoundError:
            return
        try:
            pending: bytes | None = None
            pending_number = 0
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    self.position += len(line)
                    continue
                if pending is not None:
                    try:
                        entry = self._decode(pending, pending_number)
                    except ValueError as exc:
                        raise LogCorruptError(self.path, pending_number, str(exc)) from None
                    self.position += len(pending)
                    yield pending_number, entry
                pending, pending_number = line, number
            if pending is not None:
                try:
                    entry = self._decode(pending, pending_number)
                except LogVersionError:
                    raise
                except ValueError:
                    self.torn_line = pending_number
                    logger.warning(
                        "%s:%d: dropped a torn last entry (%d bytes, cut short by a crash while it was written)",
                        self.path,
                        pending_number,
                        len(pending),
                    )
                    return
                finally:
                    self.position += len(pending)
                yield pending_number, entry
        finally:
            handle.close()
