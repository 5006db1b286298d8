"""Large request bodies: spooled to disk while they arrive, kept next to the log by their SHA-256.

A request body of up to :data:`SPOOL_THRESHOLD` bytes stays in memory and is
stored inline in its log entry, as always.  A larger one (an S3 upload, a
chunked upload without ``Content-Length``) is written to a temporary file as it
is read, so that ``replay`` holds at most one threshold's worth of it in memory
whatever its size (:func:`spool`), and the app reads it from that file.  When
such a call is recorded its body becomes a file of the data dir::

    <data dir>/bodies/<sha256>          the body, named by its SHA-256 (shared by identical bodies)
    <data dir>/bodies/.incoming/        bodies still arriving (emptied at every start)

and the entry names it instead of holding it: ``"body": "<sha256>", "encoding":
"file", "size": N``.  :meth:`BodyStore.keep` makes the file durable (fsync of
the file, then of the directory, whatever ``REPLAY_FSYNC`` says) before the
entry that names it is appended, so an entry never outlives its body.  A log
file's bodies are always in the ``bodies`` folder beside it: a checkpoint's
``calls.json`` has its own (hard links), as has an archive's.  A reader checks a
named body's size and SHA-256 before it is used: a missing or altered body is
corruption, refused with the file and line of its entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from ..errors import RequestError
from ..files import FILE_MODE, atomic_write, ensure_private_dir, fsync_dir

__all__ = [
    "BODIES_DIR",
    "CHECKPOINT_FILE_THRESHOLD",
    "INCOMING_DIR",
    "SPOOL_THRESHOLD",
    "BodyFile",
    "BodyStore",
    "BodyWriter",
    "bodies_beside",
    "is_digest",
    "keep_in",
    "named_in",
    "spool",
    "store_bytes",
    "stream_of",
]

logger = logging.getLogger("replay.bodies")

SPOOL_THRESHOLD = 1 << 20
"""Bodies larger than this many bytes go to disk while they arrive, and are recorded as files."""

CHECKPOINT_FILE_THRESHOLD = 64 * 1024
"""Bodies this large or larger are files in a checkpoint's ``calls.json`` (not base64 inside it): an S3 object
put whole is then one file shared with the snapshot's asset of the same SHA-256 (moto's, from 64 KiB)."""

BODIES_DIR = "bodies"
INCOMING_DIR = ".incoming"
_CHUNK = 1 << 20
_STARTED = time.time() - 1.0  # files in .incoming older than this were left by an earlier process
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """Is ``text`` a SHA-256 in lower-case hex (the only names a body file may have)?"""
    return _DIGEST.fullmatch(text) is not None


def bodies_beside(log: Path) -> Path:
    """The folder of the bodies that the entries of log file ``log`` name."""
    return Path(log).parent / BODIES_DIR


class BodyFile:
    """A body held in a file: ``size`` bytes whose SHA-256 is ``digest``.

    A temporary one (a body still being handled) is removed when :meth:`discard` is called or the
    object is collected; a stored one (:meth:`BodyStore.keep`) belongs to the data dir.
    """

    __slots__ = ("__weakref__", "_finalizer", "digest", "path", "size", "stored")

    def __init__(self, path: Path, size: int, digest: str, stored: bool = False, temporary: bool = False) -> None:
        self.path = Path(path)
        self.size = size
        self.digest = digest
        self.stored = stored
        self._finalizer = weakref.finalize(self, _unlink, str(self.path)) if temporary else None

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def read(self) -> bytes:
        """The whole body, in memory (for the few readers that need all of it)."""
        return self.path.read_bytes()

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes."""
        with self.open() as handle:
            return handle.read(size)

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        with self.open() as handle:
            while chunk := handle.read(size):
                yield chunk

    def windows(self, size: int = _CHUNK, overlap: int = 4096) -> Iterator[bytes]:
        """The body in pieces of about ``size`` bytes, each starting ``overlap`` bytes before the last ended,
        so that a pattern shorter than ``overlap`` is wholly inside at least one of them."""
        tail = b""
        for chunk in self.chunks(size):
            yield tail + chunk
            tail = (tail + chunk)[-overlap:]

    def problem(self) -> str | None:
        """Why this body cannot be used (missing, another size, another SHA-256), or ``None`` when it can."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return f"its body file {self.path} is missing"
        except OSError as exc:
            return f"its body file {self.path} cannot be read: {exc.strerror or exc}"
        if size != self.size:
            return f"its body file {self.path} holds {size:,} bytes, not {self.size:,}"
        digest = hashlib.sha256()
        try:
            for chunk in self.chunks():
                digest.update(chunk)
        except OSError as exc:
            return f"its body file {self.path} cannot be read: {exc.strerror or exc}"
        if digest.hexdigest() != self.digest:
            return f"its body file {self.path} does not match its SHA-256 (altered or damaged)"
        return None

    def discard(self) -> None:
        """Remove a temporary body now (a stored one is left alone)."""
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return f"<BodyFile {self.path} {self.size} bytes>"


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class BodyWriter:
    """Write a new temporary body file in ``directory`` (the system's temporary folder when ``None``), hashing it."""

    def __init__(self, directory: Path | None) -> None:
        if directory is not None:
            ensure_private_dir(directory)
        fd, name = tempfile.mkstemp(prefix="body-", dir=directory)
        os.fchmod(fd, FILE_MODE)
        self.path = Path(name)
        self._handle = os.fdopen(fd, "wb", buffering=_CHUNK)
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self._digest.update(data)
        self.size += len(data)

    def finish(self) -> BodyFile:
        """Close the file: the body it holds (temporary: removed when no longer used)."""
        try:
            self._handle.close()
        except BaseException:
            self.abort()
            raise
        return BodyFile(self.path, self.size, self._digest.hexdigest(), temporary=True)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        _unlink(str(self.path))


def spool(
    read: Callable[[int], bytes],
    wanted: int | None,
    limit: int,
    directory: Path | None,
    too_large: Callable[[], Exception],
) -> bytes | BodyFile:
    """Read a body with ``read`` in steps of at most 1 MiB: ``wanted`` bytes, or to its end (``None``).

    Up to :data:`SPOOL_THRESHOLD` bytes come back as ``bytes``; beyond, everything read so far and the
    rest go to a temporary file in ``directory``.  More than ``limit`` bytes raises ``too_large()``
    (checked before the bytes over it are written); a file that cannot be written (a full disk) raises
    :class:`~replay.errors.RequestError` with status 503, and ``read`` failing raises its ``OSError``.
    """
    parts: list[bytes] = []
    size = 0
    writer: BodyWriter | None = None
    try:
        while wanted is None or size < wanted:
            step = _CHUNK if wanted is None else min(_CHUNK, wanted - size)
            chunk = read(step)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise too_large()
            try:
                if writer is not None:
                    writer.write(chunk)
                    continue
                parts.append(chunk)
                if size > SPOOL_THRESHOLD:
                    writer = BodyWriter(directory)
                    for part in parts:
                        writer.write(part)
                    parts = []
            except OSError as exc:
                raise _cannot_hold(directory, exc) from None
        if writer is None:
            return b"".join(parts)
        try:
            return writer.finish()
        except OSError as exc:
            writer = None  # finish removed it
            raise _cannot_hold(directory, exc) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def _cannot_hold(directory: Path | None, exc: OSError) -> RequestError:
    where = directory if directory is not None else tempfile.gettempdir()
    return RequestError("503 Service Unavailable", f"cannot hold the request body in {where}: {exc.strerror or exc}")


def keep_in(directory: Path, body: BodyFile) -> BodyFile:
    """``body`` as a durable file ``directory/<sha256>`` (already there: left as it is); the stored body.

    The file is fsynced, then linked (copied across filesystems) under its final name, then the
    directory is fsynced: once this returns the body survives a power loss.
    """
    ensure_private_dir(directory)
    target = directory / body.digest
    if body.path == target:
        return body
    try:
        if target.stat().st_size == body.size:
            return BodyFile(target, body.size, body.digest, stored=True)
        target.unlink()  # torn by a crash while it was copied: made again below
    except FileNotFoundError:
        pass
    with open(body.path, "rb") as source:
        os.fsync(source.fileno())
    try:
        os.link(body.path, target)
    except FileExistsError:
        pass
    except OSError:  # another filesystem (or no hard links): copy, then rename into place
        temporary = directory / f".{body.digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(body.path, "rb") as source, open(temporary, "wb") as out:
                os.fchmod(out.fileno(), FILE_MODE)
                shutil.copyfileobj(source, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            _unlink(str(temporary))
            raise
    fsync_dir(directory)
    return BodyFile(target, body.size, body.digest, stored=True)


def store_bytes(directory: Path, data: bytes) -> BodyFile:
    """``data`` as a durable body file ``directory/<sha256>`` (written atomically, once); the stored body."""
    digest = hashlib.sha256(data).hexdigest()
    target = directory / digest
    try:
        if target.stat().st_size == len(data):
            return BodyFile(target, len(data), digest, stored=True)
    except FileNotFoundError:
        pass
    atomic_write(target, data)  # temporary file, fsync, rename, directory fsync
    return BodyFile(target, len(data), digest, stored=True)


class BodyStore:
    """The ``bodies`` folder of a data dir (or of a checkpoint): where recorded bodies are kept.

    :meth:`keep` and :meth:`prune` are safe to call from several threads: a body kept since the
    :meth:`mark` given to :meth:`prune` is never pruned, so an entry appended while a checkpoint cleans
    up keeps its body.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.incoming = self.directory / INCOMING_DIR
        self._lock = threading.Lock()
        self._recent: dict[str, float] = {}  # digest -> when it was last kept

    def clear_incoming(self) -> None:
        """Remove bodies left half-received by an earlier process (files older than this one)."""
        if not self.incoming.is_dir():
            return
        for leftover in self.incoming.iterdir():
            try:
                if leftover.stat().st_mtime < _STARTED:
                    _unlink(str(leftover))
            except OSError:
                continue

    def keep(self, body: BodyFile) -> BodyFile:
        """Make ``body`` one of this store's files, durably (:func:`keep_in`); the stored body."""
        with self._lock:
            self._recent[body.digest] = time.monotonic()
            return keep_in(self.directory, body)

    def mark(self) -> float:
        """The moment to pass to :meth:`prune`: bodies kept after it are spared."""
        return time.monotonic()

    def prune(self, referenced: Iterable[str], since: float) -> int:
        """Remove every body neither in ``referenced`` nor kept since ``since``; how many were removed."""
        keep = set(referenced)
        removed = 0
        if not self.directory.is_dir():
            return 0
        with self._lock:
            for path in self.directory.iterdir():
                name = path.name
                if is_digest(name) and name not in keep and self._recent.get(name, -1.0) < since:
                    _unlink(str(path))
                    removed += 1
            self._recent = {name: when for name, when in self._recent.items() if when >= since}
        if removed:
            fsync_dir(self.directory)
        return removed


def named_in(log: Path, start: int = 0) -> set[str]:
    """The SHA-256 of every body that the entries of log file ``log`` from byte ``start`` name as files."""
    names: set[str] = set()
    try:
        handle = open(log, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return names
    with handle:
        handle.seek(start)
        for line in handle:
            if b'"encoding":"file"' not in line:
                continue
            try:
                name = orjson.loads(line)["request"]["body"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(name, str) and is_digest(name):
                names.add(name)
    return names


def stream_of(body: bytes | BodyFile) -> BinaryIO:
    """A file object that reads ``body`` from its start."""
    if isinstance(body, BodyFile):
        return body.open()
    return io.BytesIO(body)
