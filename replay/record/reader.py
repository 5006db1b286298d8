"""The call log, read: a streaming, torn-tail-tolerant reader of its entries, and the segments of a history.

Reading (:class:`LogReader`) streams line by line, from the start or from a
byte offset, and reports the header.  Only an undecodable last line that is
not terminated by a newline is a torn tail (Redis's ``aof-load-truncated``): it
is dropped with a warning and the start goes on.  An undecodable line anywhere
else, the last one included when it is complete, and an entry whose sequence
number is not above the one before it (a duplicated or reordered entry) raise
:class:`~replay.errors.LogCorruptError` naming the file and line; nothing is
changed on disk.

A :class:`Segment` names a byte range of one file and the reader for its format: this log's own, or
another one read as our entries (LocalStack's, :class:`~replay.share.localstack.LocalStackReader`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from ..errors import EntryVersionError, LogCorruptError, LogError, LogVersionError
from .bodies import bodies_beside
from .entry import Entry, decode_entry
from .log import decode_header

__all__ = ["LogReader", "Segment", "is_localstack_record"]

logger = logging.getLogger("replay.log")

_COPY_CHUNK = 1 << 20


class LogReader:
    """Stream ``(line number, entry)`` pairs from a log file.

    A missing file reads as empty.  :attr:`position` (bytes consumed) and
    :attr:`size` let callers show progress; :attr:`torn_line` is the number of a
    dropped torn last line, if there was one; :attr:`checkpoint` the checkpoint a
    header line names (read as soon as iteration starts).

    :param start: byte offset of the first line to read (a line boundary); the
        header is only looked for when reading from 0.
    :param end: byte offset where reading stops (a line boundary), e.g. where the
        log ended when a checkpoint was taken; ``None``: the end of the file.
    """

    def __init__(self, path: Path, start: int = 0, end: int | None = None) -> None:
        self.path = Path(path)
        try:
            self.size = self.path.stat().st_size
        except FileNotFoundError:
            self.size = 0
        self.start = start
        self.end = end
        if end is not None:
            self.size = min(self.size, end)
        self.position = start
        self.torn_line: int | None = None
        self.checkpoint: str | None = None
        self.last_seq = 0  # the sequence number of the last entry read (set it to chain readers)
        self.bodies = bodies_beside(self.path)  # where the bodies its entries name as files are

    def _decode(self, line: bytes, number: int) -> Entry | None:
        """The entry on line ``number``; ``None`` leaves it out (a subclass reading another format may).

        :raises ValueError: the line is not an entry.
        """
        try:
            entry = decode_entry(line, self.bodies)
        except EntryVersionError as exc:
            raise LogVersionError(self.path, number, exc.version, exc.supported) from None
        file = entry.request.file
        if file is not None and (problem := file.problem()) is not None:
            raise ValueError(problem)
        return entry

    def __iter__(self) -> Iterator[tuple[int, Entry]]:
        for number, _line, entry in self.records():
            yield number, entry

    def _lines(self, handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
        """``(number, line)`` of every non-blank line from :attr:`start`, the header excepted."""
        first = 1
        if self.start:
            offset = 0
            while offset < self.start:
                chunk = handle.read(min(_COPY_CHUNK, self.start - offset))
                if not chunk:
                    break
                first += chunk.count(b"\n")
                offset += len(chunk)
        looking_for_header = not self.start
        offset, end = self.start, self.end
        for number, line in enumerate(handle, first):
            if end is not None:
                if offset >= end:
                    return
                offset += len(line)
            if not line.strip():
                self.position += len(line)
                continue
            if looking_for_header:
                looking_for_header = False
                self.checkpoint = decode_header(line)
                if self.checkpoint is not None:
                    self.position += len(line)
                    continue
            yield number, line

    def _ordered(self, entry: Entry, number: int) -> Entry:
        """``entry``, once its sequence number is known to come after the last one's."""
        seq = entry.seq
        if seq is not None:
            if seq <= self.last_seq:
                raise LogCorruptError(
                    self.path,
                    number,
                    f"entry number {seq} comes after number {self.last_seq}: a duplicated or reordered entry "
                    "(replaying it would apply a call twice or out of order)",
                )
            self.last_seq = seq
        return entry

    def records(self) -> Iterator[tuple[int, bytes, Entry]]:
        """``(line number, raw line, entry)`` for every entry, in order."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed in finally, generator-scoped
        except FileNotFoundError:
            return
        except IsADirectoryError:
            raise LogError(self.path, f"{self.path}: is a directory, not a call log") from None
        except OSError as exc:
            raise LogError(self.path, f"{self.path}: cannot be read: {exc.strerror or exc}") from None
        try:
            pending: bytes | None = None
            pending_number = 0
            for number, line in self._lines(handle):
                if pending is not None:
                    try:
                        entry = self._decode(pending, pending_number)
                    except ValueError as exc:
                        raise LogCorruptError(self.path, pending_number, _reason(pending, exc)) from None
                    self.position += len(pending)
                    if entry is not None:
                        yield pending_number, pending, self._ordered(entry, pending_number)
                pending, pending_number = line, number
            if pending is not None:
                try:
                    entry = self._decode(pending, pending_number)
                except LogVersionError:
                    raise
                except ValueError as exc:
                    if _legacy(pending) or pending.endswith(b"\n"):  # whole: damaged, not a crash's leftover
                        raise LogCorruptError(self.path, pending_number, _reason(pending, exc)) from None
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
                if entry is not None:
                    yield pending_number, pending, self._ordered(entry, pending_number)
        finally:
            handle.close()


def is_localstack_record(document: object) -> bool:
    """Whether a decoded JSON value is a record of LocalStack's legacy log: an object with ``a``, ``m`` and
    ``p`` and no ``v`` (read by :mod:`replay.share.localstack`; recognised here to say what a line is)."""
    return (
        isinstance(document, dict) and "a" in document and "m" in document and "p" in document and "v" not in document
    )


def _legacy(line: bytes) -> bool:
    """Whether ``line`` is a record of LocalStack's legacy log."""
    try:
        return is_localstack_record(orjson.loads(line))
    except orjson.JSONDecodeError:
        return False


def _reason(line: bytes, exc: ValueError) -> str:
    """Why ``line`` is not an entry, with what to do when it is LocalStack's."""
    if _legacy(line):
        return "a LocalStack record, not a replay entry: convert the file with `replay import FILE --data-dir NEW_DIR`"
    return str(exc)


@dataclasses.dataclass(frozen=True)
class Segment:
    """The lines of ``path`` from byte ``start`` to byte ``end`` (``None``: its end), read by ``read_with``.

    ``legacy``: the file is in another format (LocalStack's log), which ``read_with`` reads as our entries
    (:class:`~replay.share.localstack.LocalStackReader`; :meth:`replay.share.sources.Source.segments`
    names it); its lines are not entries to copy as they are.
    """

    path: Path
    start: int = 0
    end: int | None = None
    legacy: bool = False
    read_with: type[LogReader] = dataclasses.field(default_factory=lambda: LogReader, compare=False)

    def __post_init__(self) -> None:
        if self.legacy and self.read_with is LogReader:
            raise ValueError(f"{self.path}: a legacy segment needs the reader of its format (read_with)")

    def reader(self) -> LogReader:
        return self.read_with(self.path, self.start, self.end)
