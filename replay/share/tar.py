"""Reading a ``replay export`` archive in one bounded pass: gzip inflated on demand, tar framing parsed here.

An archive is read in one pass, with every length checked before it is read: the gzip stream is inflated on
demand in bounded steps (Inflater), and the tar framing is parsed here (TarReader) rather than by tarfile,
which would read an extended header or a GNU long name of any size into memory, end silently at a broken
header and follow sparse maps.  Only what replay writes is accepted: ustar headers, at most one small pax
extended header per member, regular files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import IO

from ..errors import ArchiveError

__all__ = ["HOSTILE", "Inflater", "TarReader"]

_BLOCK = 512  # a tar block
_CHUNK = 1 << 20  # decompressed bytes read at a time
_INPUT_CHUNK = 1 << 16  # compressed bytes read from the file at a time
_MAX_PAX = 4096  # a member's pax extended header (replay writes one only for a name of over 100 bytes)
_HEADER_ROOM = 2 * _BLOCK + _MAX_PAX  # the most a member's headers may take
_MAX_TRAILER = 64 << 10  # zeros after the end-of-archive block (tar writers pad to 10 KiB records)
HOSTILE = "a damaged or hostile archive: export it again from its source"
_TYPES = {
    "1": "hard link",
    "2": "symbolic link",
    "3": "character device",
    "4": "block device",
    "5": "directory",
    "6": "FIFO",
    "7": "contiguous file",
    "g": "global pax header",
    "K": "GNU long link name",
    "L": "GNU long name",
    "S": "GNU sparse file",
}


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


class Inflater:
    """The decompressed bytes of a single-member gzip file, produced on demand.

    Each :meth:`read` inflates at most the bytes asked for from at most :data:`_INPUT_CHUNK` compressed bytes
    read ahead, so memory stays bounded whatever the compression ratio.  zlib checks the stream's CRC-32 and
    length at its end; anything after that end is refused.
    """

    def __init__(self, archive: Path, handle: IO[bytes]) -> None:
        self._archive = archive
        self._handle = handle
        self._stream = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only
        self._input = b""
        self._drained = False

    def read(self, size: int) -> bytes:
        """Up to ``size`` (> 0) decompressed bytes; ``b""`` once the gzip stream has ended.

        :raises EOFError: the file ends before its gzip stream does.
        :raises zlib.error: the stream is not deflate data, or its CRC-32 or length does not match.
        :raises ArchiveError: the file cannot be read, or goes on after its gzip stream.
        """
        if size < 1:
            raise ValueError("read at least one byte")  # zlib would take 0 as "no limit"
        while not self._stream.eof:
            if not self._input and not self._drained:
                self._input = self._fill()
                self._drained = not self._input
            data = self._stream.decompress(self._input, size)
            self._input = self._stream.unconsumed_tail
            if self._stream.eof and (self._stream.unused_data or self._fill(1)):
                raise ArchiveError(self._archive, "corrupt", f"it goes on after the end of its gzip stream ({HOSTILE})")
            if data:
                return data
            if self._drained and not self._input:
                raise EOFError("the file ends before its gzip stream does")
        return b""

    def _fill(self, size: int = _INPUT_CHUNK) -> bytes:
        try:
            data = self._handle.read(size)
        except OSError as exc:
            raise ArchiveError(self._archive, "corrupt", f"it cannot be read ({exc})") from None
        return data


@dataclasses.dataclass(frozen=True)
class _Header:
    """A tar member's header, its pax extended header applied."""

    name: str
    size: int
    type: str  # the typeflag, "0" for a regular file
    link: str

    @property
    def regular(self) -> bool:
        return self.type == "0"

    def describe(self) -> str:
        what = _TYPES.get(self.type, f"entry of type {self.type!r}")
        return f"a {what} (to {self.link[:200]!r})" if self.type in ("1", "2") else f"a {what}"


def _number(field: bytes) -> int:
    """A tar header's numeric field: octal digits, or base-256 for a large value."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise ValueError(f"{text[:20]!r} is not a number")
    return int(text, 8)


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``length key=value\\n`` records of a pax extended header."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position, position + 20)
        length = data[position:space]
        if space < 0 or not length.isdigit():
            raise ValueError("a record does not start with its length")
        end = position + int(length)
        if end > len(data) or end <= space + 1 or data[end - 1] != 0x0A:
            raise ValueError("a record's length does not fit")
        key, equals, value = data[space + 1 : end - 1].partition(b"=")
        if not equals:
            raise ValueError("a record has no '='")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position = end
    return records


class TarReader:
    """The members of an archive's tar stream, every length checked before it is read.

    The bytes read never go past a budget: before the manifest, a manifest's worth (16 MiB and its headers);
    after it (:meth:`bound`), the members the manifest lists, each with room for its headers, and the end.
    """

    def __init__(self, archive: Path, source: Inflater, first_member: int) -> None:
        """``first_member``: the largest first member (the manifest) that may be read before :meth:`bound`."""
        self._archive = archive
        self._source = source
        self.offset = 0  # bytes of the tar stream read so far
        self.end = -1  # where the end-of-archive block starts, once it was read
        self.limit = _HEADER_ROOM + _padded(first_member)

    def bound(self, sizes: Collection[int]) -> None:
        """From here on, read no more than members of these ``sizes`` (the manifest's), their headers and the end."""
        members = sum(_padded(size) for size in sizes)
        self.limit = self.offset + members + len(sizes) * _HEADER_ROOM + _BLOCK + _MAX_TRAILER

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the tar stream (at least one)."""
        if self.offset + size > self.limit:
            raise ArchiveError(
                self._archive,
                "oversized",
                f"it goes on past the {self.limit:,} bytes its manifest accounts for ({HOSTILE})",
            )
        data = self._source.read(size)
        if not data:
            raise EOFError(f"the tar stream ends at byte {self.offset:,}, inside a member or before its end")
        self.offset += len(data)
        return data

    def take(self, size: int) -> bytes:
        """Exactly ``size`` bytes of the tar stream."""
        parts = []
        while size > 0:
            part = self._read(size)
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def content(self, header: _Header) -> bytes:
        """``header``'s data, read into memory (a small member: the manifest), and its padding."""
        data = self.take(header.size)
        self.take(_padded(header.size) - header.size)
        return data

    def copy(self, header: _Header, sink: IO[bytes] | None) -> str:
        """Stream ``header``'s data (exactly its size) into ``sink``, if any; its SHA-256."""
        sha = hashlib.sha256()
        left = header.size
        while left > 0:
            chunk = self._read(min(_CHUNK, left))
            sha.update(chunk)
            if sink is not None:
                sink.write(chunk)
            left -= len(chunk)
        self.take(_padded(header.size) - header.size)
        return sha.hexdigest()

    def _broken(self, offset: int, why: str) -> ArchiveError:
        if offset == 0:
            return ArchiveError(self._archive, "foreign", f"gzip-compressed, but not a replay archive ({why})")
        return ArchiveError(
            self._archive,
            "corrupt",
            f"its tar framing is broken at byte {offset:,} ({why}): the member before it is longer than "
            f"its header says, or the file is damaged ({HOSTILE})",
        )

    def _block(self, block: bytes, offset: int) -> _Header:
        if block[257:262] != b"ustar":
            raise self._broken(offset, "no tar header where one should start")
        try:
            checksum = _number(block[148:156])
            size = _number(block[124:136])
        except ValueError as exc:
            raise self._broken(offset, f"a header field is not a number: {exc}") from None
        if checksum != sum(block[:148]) + 8 * 0x20 + sum(block[156:]):
            raise self._broken(offset, "a tar header's checksum does not match")
        name, prefix = _text(block[:100]), _text(block[345:500])
        kind = chr(block[156]) if block[156] else "0"
        return _Header(f"{prefix}/{name}" if prefix else name, size, kind, _text(block[157:257]))

    def header(self) -> _Header | None:
        """The next member's header, or ``None`` at the end-of-archive block."""
        offset = self.offset
        block = self.take(_BLOCK)
        if block.count(0) == _BLOCK:
            self.end = offset
            return None
        header = self._block(block, offset)
        if header.type != "x":
            return header
        if header.size > _MAX_PAX:
            raise ArchiveError(
                self._archive,
                "oversized",
                f"the pax header at byte {offset:,} is {header.size:,} bytes, replay writes at most {_MAX_PAX:,} "
                f"({HOSTILE})",
            )
        try:
            records = _pax_records(self.content(header))
        except ValueError as exc:
            raise self._broken(offset, f"its pax header is malformed: {exc}") from None
        block = self.take(_BLOCK)
        if block.count(0) == _BLOCK:
            raise self._broken(offset, "a pax header is followed by the end of the archive")
        header = self._block(block, offset)
        if header.type in ("x", "g"):
            raise self._broken(offset, "two pax headers in a row")
        if any(key.startswith("GNU.sparse") for key in records):
            return dataclasses.replace(header, type="S")
        if "size" in records:
            if not re.fullmatch(r"[0-9]{1,20}", records["size"]):
                raise self._broken(offset, f"its pax header has a bad size {records['size'][:20]!r}")
            header = dataclasses.replace(header, size=int(records["size"]))
        return dataclasses.replace(
            header, name=records.get("path", header.name), link=records.get("linkpath", header.link)
        )

    def finish(self) -> None:
        """Read on after the end-of-archive block: only a little zero padding, then the gzip stream's end."""
        while data := self._source.read(min(_CHUNK, self.end + _MAX_TRAILER + 1 - self.offset)):
            self.offset += len(data)
            if data.count(0) != len(data):
                raise ArchiveError(
                    self._archive,
                    "corrupt",
                    f"it holds data after the end of its tar at byte {self.end:,} ({HOSTILE})",
                )
            if self.offset - self.end > _MAX_TRAILER:
                raise ArchiveError(
                    self._archive,
                    "oversized",
                    f"it goes on after the end of its tar with more than {_MAX_TRAILER:,} bytes of padding ({HOSTILE})",
                )
