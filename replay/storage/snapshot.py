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

import dataclasses
import hashlib
import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from ..errors import SnapshotError
from ..files import FILE_MODE, atomic_write, ensure_private_dir, fsync_dir

__all__ = ["FORMAT", "MAGIC", "Saved", "load_key", "read_snapshot", "write_snapshot"]

logger = logging.getLogger("replay.snapshot")

MAGIC = b"REPLAY-SNAPSHOT\n"
FORMAT = 1
KEY_FILE_NAME = "snapshot.key"
_KEY_BYTES = 32
_MAX_HEADER = 1 << 16


@dataclasses.dataclass(frozen=True)
class Saved:
    """Where one service's saved state is: its snapshot file and its assets directory."""

    state: Path
    assets: Path


def load_key(state_dir: Path, create: bool = True) -> bytes:
    """This data dir's signing key, made (0600, atomically and durably, once) if there is none yet and ``create``.

    The key is written to a temporary file, fsynced, and linked into place (``link(2)`` fails if
    another process made one first), then the directory is fsynced: a crash leaves no key or a whole
    one.  A malformed key (as an older version could leave, cut short by a crash while it was first
    written) is made again when nothing can depend on it yet: no snapshot and no checkpoint exists.

    :raises SnapshotError: there is none and not ``create``, or it is malformed and signs something.
    """
    path = Path(state_dir) / KEY_FILE_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise SnapshotError(path, "malformed", "the data dir has snapshots but no key to check them with") from None
        return _make_key(path)
    if len(key) != _KEY_BYTES:
        if create and not _signed_anything(Path(state_dir).parent):
            logger.warning(
                "%s: malformed (%d bytes) and nothing is signed with it yet: making a new key", path, len(key)
            )
            path.unlink()
            return _make_key(path)
        raise SnapshotError(path, "malformed", f"a snapshot key must be {_KEY_BYTES} bytes, found {len(key)}")
    return key


def _make_key(path: Path) -> bytes:
    ensure_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    key = os.urandom(_KEY_BYTES)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:  # another process made it first: use theirs
        return load_key(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
        fsync_dir(path.parent)
    return key


def _signed_anything(data_dir: Path) -> bool:
    """Whether a snapshot or a checkpoint of ``data_dir`` may have been signed with its key."""
    return any((data_dir / "state" / "api_states").glob("*/*.state")) or any(
        (data_dir / "checkpoints").glob("*/state/*.state")
    )


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
