"""The snapshot file: one service's state, checksummed, versioned and signed by this data dir.

Layout (the header is one line of JSON after a magic line; the payload follows)::

    REPLAY-SNAPSHOT\\n
    {"format": 1, "service": "sqs", "created": 1732441234.1, "length": 2048,
     "sha256": "<hex of the payload>", "hmac": "<hex>", "meta": {"moto": "5.2.5", "python": "3.11.7"}}\\n
    <payload: length bytes>

``hmac`` is HMAC-SHA256, keyed with ``<data dir>/state/snapshot.key`` (32 random
bytes, mode 0600, made on first use), over the canonical header without
``hmac``; the header carries the payload's SHA-256, so the HMAC covers the
payload without a second pass over it.  :func:`read_snapshot` checks, before anything in
the payload is touched: the magic line, the format version (a newer one is
refused), the length (a short file is *torn*), the SHA-256 (*corrupt*), and
the HMAC (*foreign*: written by another data dir, or tampered with).  Only a
file that passes every check is handed back; pickles are executable, so this
is the line between "we wrote it" and "someone did".

Files are written with :func:`replay.files.atomic_write`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from pathlib import Path
from typing import Any

import orjson

from .errors import SnapshotError
from .files import FILE_MODE, atomic_write, ensure_private_dir, fsync_dir

__all__ = ["FORMAT", "MAGIC", "load_key", "read_snapshot", "write_snapshot"]

MAGIC = b"REPLAY-SNAPSHOT\n"
FORMAT = 1
KEY_FILE_NAME = "snapshot.key"
_KEY_BYTES = 32
_MAX_HEADER = 1 << 16


def load_key(state_dir: Path, create: bool = True) -> bytes:
    """This data dir's signing key, made (0600, atomically, once) if there is none yet and ``create``.

    :raises SnapshotError: there is none and not ``create``, or it is malformed.
    """
    path = Path(state_dir) / KEY_FILE_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise SnapshotError(path, "malformed", "the data dir has snapshots but no key to check them with") from None
        ensure_private_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:  # another process made it first
            return load_key(state_dir)
        try:
            key = os.urandom(_KEY_BYTES)
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return key
    if len(key) != _KEY_BYTES:
        raise SnapshotError(path, "malformed", f"a snapshot key must be {_KEY_BYTES} bytes, found {len(key)}")
    return key


def _signature(key: bytes, header: dict[str, Any]) -> str:
    """HMAC of the header; the header holds the payload's SHA-256, so the payload is covered too."""
    canonical = orjson.dumps({k: v for k, v in header.items() if k != "hmac"}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def write_snapshot(path: Path, service: str, payload: bytes, key: bytes, meta: dict[str, str] | None = None) -> None:
    """Write ``payload`` as ``service``'s snapshot at ``path``, atomically."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "service": service,
        "created": time.time(),
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "meta": meta or {},
    }
    header["hmac"] = _signature(key, header)
    atomic_write(path, MAGIC + orjson.dumps(header) + b"\n" + payload)


def read_snapshot(path: Path, key: bytes) -> tuple[dict[str, Any], bytes]:
    """``(header, payload)`` of a snapshot this data dir wrote.

    :raises SnapshotError: the file is torn, corrupt, foreign, newer or malformed;
        nothing in its payload has been interpreted.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SnapshotError(path, "malformed", "not a replay snapshot (bad magic line)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if end < 0:
        raise SnapshotError(path, "torn", "the header line is incomplete")
    try:
        header = orjson.loads(data[len(MAGIC) : end])
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(path, "malformed", f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SnapshotError(path, "malformed", "the header is not an object")
    version = header.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SnapshotError(path, "malformed", "the header has no format version")
    if version > FORMAT:
        raise SnapshotError(path, "newer", f"format {version} is newer than this replay reads (up to {FORMAT})")
    payload = data[end + 1 :]
    length = header.get("length")
    if not isinstance(length, int) or len(payload) < length:
        raise SnapshotError(path, "torn", f"{len(payload)} payload bytes of {length}")
    if len(payload) > length:
        raise SnapshotError(path, "corrupt", f"{len(payload) - length} bytes past the payload")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise SnapshotError(path, "corrupt", "the payload does not match its SHA-256")
    if not hmac.compare_digest(_signature(key, header), str(header.get("hmac", ""))):
        raise SnapshotError(path, "foreign", "not signed by this data dir's key (another data dir's, or tampered)")
    return header, payload
