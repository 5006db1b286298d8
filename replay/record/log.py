"""The call log, written: durable appends, the header that names a checkpoint, rewrites.

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
* each entry gets the next sequence number of the file (``"seq"``, assigned
  under the locks, so file order and number order agree; another process's
  appends are noticed by the file's size and counted on);
* on open, a torn last line left by a crash (an *unterminated* one) is moved
  to ``recorded_api_calls.json.torn-<time>`` (never deleted) so the next
  append starts on a fresh line; a complete last line that is not an entry is
  corruption, refused like any other;
* :meth:`CallLog.rewrite` replaces the file with a header and the calls from a
  given offset (what a checkpoint leaves of the log) while appenders go on:
  the bulk is copied without blocking them, the rest under the locks, then the
  new file is renamed over the old one.  Appenders in other processes notice
  the replaced file under ``flock`` and reopen it;
* an *exclusive* log (``CallLog(..., exclusive=True)``, for a process that owns
  its data dir: :class:`~replay.storage.datadir.DataDirLock`) takes the ``flock`` once,
  when it opens, and keeps it until it closes (a rewritten file is locked
  before it is renamed into place); its appends neither lock nor ``fstat``:
  the file's end and the last sequence number are kept in memory.

A log that continues a checkpoint (:mod:`replay.storage.checkpoint`) starts with a
header line that names it, ``{"v": 1, "checkpoint": "000004", "seq": 812}``
(``seq``: the last sequence number given out when it was written); a log
without one holds the whole history.

Reading is :mod:`replay.record.reader`'s.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from ..config import FsyncPolicy
from ..errors import EntryVersionError, LogCorruptError, LogWriteError
from ..files import FILE_MODE, ensure_private_dir, fsync_dir
from .bodies import BodyFile, BodyStore, bodies_beside
from .entry import decode_entry, numbered

__all__ = ["CallLog", "decode_header", "encode_header", "last_seq", "read_header"]

logger = logging.getLogger("replay.log")

_flock, _LOCK_EX, _LOCK_UN, _write, _fstat = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_UN, os.write, os.fstat

_TAIL_CHUNK = 1 << 16
_COPY_CHUNK = 1 << 20


def encode_header(checkpoint: str, seq: int = 0) -> bytes:
    """The first line of a log that continues ``checkpoint``, after sequence number ``seq``."""
    tail = b',"seq":' + str(seq).encode() if seq else b""
    return b'{"v":1,"checkpoint":' + orjson.dumps(checkpoint) + tail + b"}\n"


def _header_seq(line: bytes) -> int:
    """The sequence number a header line carries (0 when it carries none)."""
    try:
        seq = orjson.loads(line).get("seq", 0)
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else 0


def decode_header(line: bytes) -> str | None:
    """The checkpoint a header line names; ``None`` when ``line`` is not a header."""
    if b'"checkpoint"' not in line or b'"request"' in line:
        return None
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("checkpoint"), str) and "request" not in document:
        return str(document["checkpoint"])
    return None


def _first_line(fd: int) -> tuple[bytes, int]:
    """The first non-blank line of the file and the offset just past it (``b""``, 0 when there is none)."""
    offset = 0
    pending = b""
    while True:
        chunk = os.pread(fd, _TAIL_CHUNK, offset + len(pending))
        if not chunk:
            return (pending, offset + len(pending)) if pending.strip() else (b"", 0)
        pending += chunk
        while (newline := pending.find(b"\n")) >= 0:
            line, pending = pending[: newline + 1], pending[newline + 1 :]
            if line.strip():
                return line, offset + len(line)
            offset += len(line)


def read_header(path: Path) -> tuple[str | None, int]:
    """``(checkpoint, offset after the header)`` of the log at ``path``; ``(None, 0)`` without a header or file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, 0
    try:
        line, end = _first_line(fd)
    finally:
        os.close(fd)
    checkpoint = decode_header(line)
    return (checkpoint, end) if checkpoint is not None else (None, 0)


def last_seq(path: Path) -> int:
    """The sequence number of the log's last entry (or of its header, when it holds none); 0 without any."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        return _last_seq(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


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
    :param header: the checkpoint this log continues: written as the first line
        when the file is new or empty (an existing header is left as it is).
    :param on_failure: told, in one line, when the once-a-second sync of ``everysec`` fails
        (appends themselves raise :class:`~replay.errors.LogWriteError`).
    :param exclusive: this object is the file's only writer (its process holds the data dir's
        :class:`~replay.storage.datadir.DataDirLock`): the ``flock`` is taken once, now, and kept until
        :meth:`close`, and appends skip the per-append ``flock`` and ``fstat``.

    :raises LogWriteError: ``exclusive``, and another writer holds the file's ``flock``.

    :attr:`header` is the checkpoint the file's header names (``None``: no header).
    """

    def __init__(
        self,
        path: Path,
        fsync: FsyncPolicy = FsyncPolicy.EVERYSEC,
        header: str | None = None,
        on_failure: Callable[[str], None] | None = None,
        *,
        exclusive: bool = False,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.header = header
        self.on_failure = on_failure  # told (one line) when a background sync fails
        self.exclusive = exclusive
        self._always = fsync is FsyncPolicy.ALWAYS
        ensure_private_dir(self.path.parent)
        self.bodies = BodyStore(bodies_beside(self.path))
        if exclusive:  # locked before anything another writer may be using is touched
            self._fd = self._open_exclusive()
            self.bodies.clear_incoming()
        else:
            self.bodies.clear_incoming()
            self._fd = self._open()
        _remove_leftovers(self.path)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._retired: list[int] = []
        self._written = 0  # entries appended by this object
        self._synced = 0  # of those, how many are known to be on disk
        self._seq = 0  # the last sequence number in the file
        self._end = -1  # the file's size after the last append seen: another size means another writer
        self._cut_to: int | None = None  # a failed append's partial bytes could not be removed: cut here first
        self._dirty = False
        self._closed = False
        self._closed_size = 0  # the size when closed: what size() says after close()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        with self._lock:
            if exclusive:
                try:
                    self._prepare(header)
                except BaseException:
                    os.close(self._fd)  # a corrupt log, say: its lock must not outlive the error
                    raise
            else:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    self._prepare(header)
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        if fsync is FsyncPolicy.EVERYSEC:
            self._syncer = threading.Thread(target=self._sync_every_second, name="replay-fsync", daemon=True)
            self._syncer.start()

    def _prepare(self, header: str | None) -> None:
        """Repair the tail, write ``header`` into an empty file, read the header, the end and the last number."""
        self._repair_tail()
        if header is not None and os.fstat(self._fd).st_size == 0:
            os.write(self._fd, encode_header(header))
            os.fsync(self._fd)
        self.header = decode_header(_first_line(self._fd)[0])
        self._end = os.fstat(self._fd).st_size
        self._seq = _last_seq(self._fd, self._end)

    def _open(self) -> int:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        if created:
            fsync_dir(self.path.parent)
        return fd

    def _open_exclusive(self) -> int:
        """:meth:`_open`, with the ``flock`` taken for good (the one writer).

        :raises LogWriteError: another writer holds it.
        """
        fd = self._open()
        try:
            _lock_now(fd, self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _lock_current(self) -> tuple[int, int]:
        """``flock`` the file now at :attr:`path` (reopening it if another process replaced it); its fd and size."""
        fd = self._fd
        _flock(fd, _LOCK_EX)
        while (status := _fstat(fd)).st_nlink == 0:  # rewritten by another process: append to the new file
            _flock(fd, _LOCK_UN)
            self._retired.append(fd)  # closed with the log: a sync may still hold its number
            self._fd = fd = self._open()
            _flock(fd, _LOCK_EX)
        return fd, status.st_size

    def _repair_tail(self) -> None:
        """Make the file end with a complete line, moving a torn last line aside."""
        size = os.fstat(self._fd).st_size
        end = _content_end(self._fd, size)
        if end == 0:
            return
        start = _line_start(self._fd, end)
        last = os.pread(self._fd, end - start, start)
        try:
            if start > 0 or decode_header(last) is None:
                decode_entry(last)
        except EntryVersionError:
            pass  # a newer writer's complete entry: not ours to judge, and not torn
        except ValueError as exc:
            if b"\n" in os.pread(self._fd, size - end, end):  # complete: damage, not a crash's leftover
                number = _count_lines(self._fd, start) + 1
                raise LogCorruptError(self.path, number, str(exc)) from None
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

    @property
    def spool_dir(self) -> Path:
        """Where bodies too large for memory wait while their call is handled (beside :meth:`keep_body`'s)."""
        return self.bodies.incoming

    def keep_body(self, body: BodyFile) -> BodyFile:
        """Keep ``body`` (a request body too large to inline) durably beside the log, before the entry naming it.

        :raises LogWriteError: it could not be written or synced.
        """
        try:
            return self.bodies.keep(body)
        except OSError as exc:
            where = self.bodies.directory
            raise LogWriteError(self.path, f"{where}: cannot keep a request body: {_os_reason(exc)}") from exc

    def append(self, line: bytes) -> None:
        """Append one encoded entry (``line`` ends with ``\\n``).

        Under ``always`` it returns only once the entry is on disk.  Concurrent
        appenders share syncs (group commit): one ``fdatasync`` covers every
        entry written before it started, so N threads waiting cost about one
        sync, not N.

        :raises LogWriteError: it could not be written in full (or synced under
            ``always``); the file holds no part of it.
        """
        with self._lock:
            if self._closed:
                raise LogWriteError(self.path, f"{self.path}: the log is closed")
            if self._cut_to is not None:
                self._cut_partial()
            exclusive = self.exclusive
            if exclusive:  # the flock is held for good and nobody else writes: the end is known
                fd, size = self._fd, self._end
                if size < 0:  # unknown after a failed append
                    size = _fstat(fd).st_size
            else:
                fd, size = self._lock_current()
            try:
                if size != self._end:  # another process appended: count on from its last entry
                    self._seq = max(self._seq, _last_seq(fd, size))
                line = numbered(line, self._seq + 1)
                written = 0
                try:
                    written = _write(fd, line)
                    while written < len(line):  # a short write: go on, or learn why it cannot
                        more = _write(fd, line[written:])
                        if not more:
                            raise OSError(0, f"short write ({written} of {len(line)} bytes)")
                        written += more
                except OSError as exc:
                    if written:
                        self._truncate_back(written, size if exclusive else None)
                    if exclusive:
                        self._end = -1  # the next append asks the file (were the truncate to have failed)
                    raise LogWriteError(self.path, f"{self.path}: cannot append an entry: {_os_reason(exc)}") from exc
                self._seq += 1
                self._end = size + written
            finally:
                if not exclusive:
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
                os.fdatasync(self._fd)
            except OSError as exc:
                raise LogWriteError(self.path, f"{self.path}: fsync failed: {_os_reason(exc)}") from exc
            self._synced = covered

    def _truncate_back(self, written: int, end: int | None = None) -> None:
        """Remove the ``written`` bytes of a failed append: cut back to ``end`` (where the file ended before it,
        when that is known) or to the file's size less them.  If that fails too, the next append tries again
        first and refuses to write after the partial bytes (they would make the line it writes unreadable)."""
        if not self.exclusive:  # other writers may append after it: only this attempt is safe
            try:
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
            except OSError:
                logger.exception("%s: could not remove a partial entry; the next line will be unreadable", self.path)
            return
        self._cut_to = end if end is not None else max(0, self._end)
        try:
            self._cut_partial()
        except LogWriteError:
            logger.error("%s: could not remove a partial entry; appends are refused until it is", self.path)

    def _cut_partial(self) -> None:
        """Remove what a failed append left past :attr:`_cut_to`.

        :raises LogWriteError: it cannot be removed (yet).
        """
        assert self._cut_to is not None
        try:
            os.ftruncate(self._fd, self._cut_to)
        except OSError as exc:
            raise LogWriteError(
                self.path, f"{self.path}: cannot remove a failed append's partial entry: {_os_reason(exc)}"
            ) from exc
        self._cut_to = None

    def sync(self) -> None:
        """Force everything appended so far to disk."""
        with self._sync_lock:
            self._dirty = False
            if not self._closed:
                os.fdatasync(self._fd)

    @property
    def last_seq(self) -> int:
        """The sequence number of the last entry written (as far as this process knows)."""
        return self._seq

    def size(self) -> int:
        """The file's size now: everything appended so far ends there (once closed: its size at the close,
        so that a status read while the log closes still answers)."""
        with self._lock:
            if self._closed:
                return self._closed_size
            return os.fstat(self._fd).st_size

    def rewrite(self, start: int, header: str | None, prefix: Path | None = None) -> int:
        """Replace the file with ``header``'s line, the lines of ``prefix``, then what follows ``start``.

        Returns the new size.  Appends go on while the bytes up to the current
        end are copied; the rest is copied with appends held, then the new file
        (fsynced) is renamed over the old one and the directory fsynced.  A
        crash at any point leaves either the old file or the new one, whole.

        :raises LogWriteError: another process replaced the file meanwhile (nothing was changed).
        """
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.rewrite")
        inode = os.fstat(self._fd).st_ino  # ``start`` is an offset in this file
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            if header is not None:
                _write_all(out, encode_header(header, self._seq))
            if prefix is not None:
                with open(prefix, "rb") as lines:
                    while chunk := lines.read(_COPY_CHUNK):
                        _write_all(out, chunk)
            copied = self._copy_from(out, start, os.fstat(self._fd).st_size)
            with self._sync_lock, self._lock:
                if self._closed:
                    raise LogWriteError(self.path, f"{self.path}: the log is closed")
                fd = self._fd if self.exclusive else self._lock_current()[0]
                try:
                    if os.fstat(fd).st_ino != inode:
                        raise LogWriteError(
                            self.path, f"{self.path}: replaced by another process during the rewrite; try again"
                        )
                    self._copy_from(out, copied, os.fstat(fd).st_size)
                    os.fsync(out)
                    if self.exclusive:
                        # the new file is locked before its name is: no moment where another writer could take it
                        new = os.open(temporary, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
                        try:
                            _lock_now(new, self.path)
                            os.replace(temporary, self.path)
                        except BaseException:
                            os.close(new)
                            raise
                        self._fd = new
                    else:
                        os.replace(temporary, self.path)
                        # appends go to the new file from here on (were this open to fail, the next append
                        # would find the old file unlinked and reopen the path itself)
                        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
                    self.header = header
                    self._synced = self._written
                    self._dirty = False
                    fsync_dir(self.path.parent)
                    self._end = os.fstat(self._fd).st_size
                    return self._end
                finally:
                    if self._fd != fd or not self.exclusive:  # an exclusive log keeps its current file's lock
                        _flock(fd, _LOCK_UN)
                    if self._fd != fd:
                        os.close(fd)  # the replaced file
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        finally:
            os.close(out)

    def _copy_from(self, out: int, start: int, end: int) -> int:
        """Copy bytes ``start..end`` of the log to ``out``; returns ``end``."""
        offset = start
        while offset < end:
            chunk = os.pread(self._fd, min(_COPY_CHUNK, end - offset), offset)
            if not chunk:
                raise LogWriteError(self.path, f"{self.path}: shrank while it was copied (at byte {offset})")
            _write_all(out, chunk)
            offset += len(chunk)
        return end

    def _sync_every_second(self) -> None:
        while not self._stop.wait(1.0):
            if self._dirty:
                try:
                    self.sync()
                except OSError as exc:
                    cause = f"{self.path}: background fsync failed: {_os_reason(exc)}"
                    if self.on_failure is not None:
                        self.on_failure(cause)
                    else:
                        logger.error("%s", cause)

    def probe(self, size: int = 1 << 20) -> None:
        """Show that an entry of ``size`` bytes can be written and synced next to the log now, and sync the log.

        :raises OSError: it cannot (the disk is still full, read-only, failing ...).
        """
        path = self.path.with_name(f".{self.path.name}.{os.getpid()}.probe")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            _write_all(fd, b"\0" * max(size, 4096))
            os.fsync(fd)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
        with self._sync_lock:
            if not self._closed:
                os.fdatasync(self._fd)

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
                self._closed_size = os.fstat(self._fd).st_size
                os.fsync(self._fd)
            finally:
                if self.exclusive:
                    _flock(self._fd, _LOCK_UN)  # explicitly: a forked child may share the open file
                os.close(self._fd)
                for fd in self._retired:
                    os.close(fd)

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CallLog {self.path} fsync={self.fsync.value}{' exclusive' if self.exclusive else ''}>"


def _lock_now(fd: int, path: Path) -> None:
    """Take the exclusive ``flock`` on ``fd`` (the log at ``path``) without waiting.

    :raises LogWriteError: another writer holds it.
    """
    try:
        _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LogWriteError(
            path, f"{path}: another writer holds the log's lock (another replay on this data dir?); stop it first"
        ) from None


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary files (``.<name>.<pid>.*``) that processes rewriting ``path`` left when they died."""
    prefix = f"{path.name}."
    for leftover in path.parent.glob(f".*{glob.escape(prefix)}*"):
        stripped = leftover.name.lstrip(".")
        if not stripped.startswith(prefix):
            continue
        pid = stripped[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
            logger.info("removed %s, left by process %s, which died while rewriting the log", leftover, pid)
        except PermissionError:
            pass  # alive, another user's


def _count_lines(fd: int, end: int) -> int:
    """How many newlines the file holds before byte ``end``."""
    count, offset = 0, 0
    while offset < end:
        chunk = os.pread(fd, min(_COPY_CHUNK, end - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def _last_seq(fd: int, size: int) -> int:
    """The sequence number of the file's last entry (or its header's), 0 when there is none."""
    end = _content_end(fd, size)
    if end == 0:
        return 0
    start = _line_start(fd, end)
    last = os.pread(fd, end - start, start)
    if start == 0 and decode_header(last) is not None:
        return _header_seq(last)
    try:
        return decode_entry(last).seq or 0
    except ValueError:
        return 0


def _os_reason(exc: OSError) -> str:
    """An OS error in words (``No space left on device``), without the errno and path around it."""
    return exc.strerror or str(exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
