"""Checkpoints on disk: the call log folded into saved state, so a start replays only the calls since.

Layout under the data dir::

    recorded_api_calls.json                  the calls since the checkpoint, after a header line naming it
    checkpoints/MANIFEST.json                the current checkpoint, and where the log's calls since it start
    checkpoints/000004/state/<service>.state each service's state at the checkpoint (signed: ``snapshot``)
    checkpoints/000004/assets/<service>/     its large data (S3 bodies), by SHA-256
    checkpoints/000004/calls.json            every call up to the checkpoint, compacted (:mod:`replay.storage.rewrite`)
    checkpoints/000004/bodies/<sha256>       the large request bodies its calls name (links: ``bodies``)
    bodies/<sha256>                          those the calls since the checkpoint name

``calls.json`` is the checkpoint in a form that does not depend on the
emulator's classes: when the snapshots cannot be used (written by another moto
version, or refused as torn, corrupt or foreign), the start replays it instead,
and then the log; ``replay restore`` and ``replay verify`` replay it too.

Taking one is :mod:`replay.storage.checkpointer`'s; this module reads and names what is on disk.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..adapters import StateAdapter
from ..errors import CheckpointError, SnapshotError
from ..files import atomic_write, fsync_dir
from ..record.log import CallLog, read_header
from ..record.reader import Segment
from .snapshot import Saved, read_snapshot

__all__ = [
    "CHECKPOINTS_DIR",
    "MANIFEST_NAME",
    "Checkpoint",
    "Manifest",
    "check_snapshots",
    "finish_interrupted",
    "history",
    "load_snapshots",
    "read_manifest",
    "remove_stale",
    "tail_start",
    "write_manifest",
]

logger = logging.getLogger("replay.checkpoint")

CHECKPOINTS_DIR = "checkpoints"
MANIFEST_NAME = "MANIFEST.json"
BASE_LOG_NAME = "calls.json"
MANIFEST_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What ``checkpoints/MANIFEST.json`` says.

    :ivar checkpoint: the current checkpoint's name (``"000004"``).
    :ivar services: the services it holds a snapshot of.
    :ivar calls: how many calls its ``calls.json`` keeps.
    :ivar folded: how many calls of history it stands for (before compaction).
    :ivar size: bytes of its snapshots and asset files: the live state, which the automatic trigger
        compares the log's growth with.
    :ivar meta: the emulator's versions when it was taken.
    :ivar tail_after: the header of the log it was folded from (``None``: that log had none).
    :ivar tail_offset: where, in that log, the calls since the checkpoint start.
    :ivar through: the sequence number of the last call folded into it (``None``: written before it was kept).
    """

    checkpoint: str
    services: tuple[str, ...]
    calls: int
    folded: int
    size: int
    created: float
    meta: dict[str, str]
    tail_after: str | None
    tail_offset: int
    through: int | None = None

    def to_json(self) -> bytes:
        document = dataclasses.asdict(self)
        document["services"] = list(self.services)
        document["format"] = MANIFEST_FORMAT
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"

    @classmethod
    def from_json(cls, path: Path, data: bytes) -> Manifest:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CheckpointError(
                path, f"not JSON ({exc}); restore it from a backup or remove the checkpoints"
            ) from None
        if not isinstance(document, dict):
            raise CheckpointError(path, "not a checkpoint manifest")
        version = document.get("format")
        if not isinstance(version, int) or version > MANIFEST_FORMAT:
            raise CheckpointError(path, f"format {version!r} is not one this replay reads (up to {MANIFEST_FORMAT})")
        try:
            return cls(
                checkpoint=_name(document["checkpoint"]),
                services=tuple(str(service) for service in document["services"]),
                calls=int(document["calls"]),
                folded=int(document["folded"]),
                size=int(document["size"]),
                created=float(document["created"]),
                meta={str(k): str(v) for k, v in dict(document["meta"]).items()},
                tail_after=None if document["tail_after"] is None else _name(document["tail_after"]),
                tail_offset=int(document["tail_offset"]),
                through=None if document.get("through") is None else int(document["through"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"malformed manifest ({exc!r})") from None


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.isdigit():
        raise ValueError(f"bad checkpoint name {value!r}")
    return value


def checkpoints_dir(data_dir: Path) -> Path:
    return Path(data_dir) / CHECKPOINTS_DIR


def read_manifest(data_dir: Path) -> Manifest | None:
    """The data dir's manifest, or ``None`` when it has no checkpoint.

    :raises CheckpointError: the manifest is unreadable or newer than this replay.
    """
    path = checkpoints_dir(data_dir) / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return Manifest.from_json(path, data)


def write_manifest(data_dir: Path, manifest: Manifest) -> None:
    atomic_write(checkpoints_dir(data_dir) / MANIFEST_NAME, manifest.to_json())


def tail_start(manifest: Manifest | None, log_path: Path) -> int:
    """The byte offset in the log where the calls since the checkpoint start.

    :raises CheckpointError: the log continues another checkpoint than the manifest's.
    """
    header, after = read_header(log_path)
    if manifest is None:
        if header is not None:
            raise CheckpointError(
                log_path,
                f"the log continues checkpoint {header}, but the data dir has no checkpoints/{MANIFEST_NAME}; "
                "restore the checkpoints directory next to it",
            )
        return 0
    if not log_path.exists():
        return 0  # no calls since the checkpoint
    if header == manifest.checkpoint:
        return after
    if header == manifest.tail_after:
        size = log_path.stat().st_size
        if size < manifest.tail_offset:
            raise CheckpointError(
                log_path,
                f"is {size} bytes, shorter than the {manifest.tail_offset} checkpoint {manifest.checkpoint} folded",
            )
        return manifest.tail_offset
    raise CheckpointError(
        log_path,
        f"the log continues checkpoint {header or '(none: a whole history)'}, but the data dir's checkpoint is "
        f"{manifest.checkpoint}; the log and the checkpoints directory come from different data dirs",
    )


def history(log_path: Path) -> list[Segment]:
    """The calls that rebuild a data dir's state from empty: its checkpoint's compacted calls, then the log's since.

    :raises CheckpointError: the log and the checkpoint do not fit together.
    """
    data_dir = Path(log_path).parent
    manifest = read_manifest(data_dir)
    start = tail_start(manifest, Path(log_path))
    segments = [Segment(Checkpoint(data_dir, manifest.checkpoint).base_log)] if manifest is not None else []
    segments.append(Segment(Path(log_path), start))
    return segments


def finish_interrupted(log: CallLog, manifest: Manifest | None, start: int) -> int:
    """Finish a checkpoint that stopped between its manifest and its log rewrite; where the log's calls now start.

    ``start`` is :func:`tail_start` of the log.
    """
    if manifest is None or log.header == manifest.checkpoint:
        return start
    log.rewrite(start, manifest.checkpoint)
    logger.info("finished checkpoint %s, interrupted before its log was rewritten", manifest.checkpoint)
    return read_header(log.path)[1]


def remove_stale(data_dir: Path, manifest: Manifest | None) -> list[str]:
    """Remove checkpoint directories (and temporary files) the manifest does not name; their names."""
    root = checkpoints_dir(data_dir)
    if not root.exists():
        return []
    keep = manifest.checkpoint if manifest is not None else None
    removed = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.isdigit() and child.name != keep:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
        elif child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)
    if removed:
        fsync_dir(root)
    return removed


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint on disk."""

    data_dir: Path
    name: str

    @property
    def directory(self) -> Path:
        return checkpoints_dir(self.data_dir) / self.name

    @property
    def base_log(self) -> Path:
        return self.directory / BASE_LOG_NAME

    def state(self, service: str) -> Path:
        return self.directory / "state" / f"{service}.state"

    def assets(self, service: str) -> Path:
        return self.directory / "assets" / service

    def saved(self, service: str) -> Saved:
        return Saved(self.state(service), self.assets(service))

    def read_snapshots(self, services: Iterable[str], key: bytes) -> None:
        """Check every snapshot (:func:`~replay.storage.snapshot.read_snapshot`), one at a time.

        :raises SnapshotError: one is torn, corrupt, foreign, newer or missing.
        """
        for service in services:
            path = self.state(service)
            if not path.exists():
                raise SnapshotError(path, "malformed", "missing from its checkpoint")
            read_snapshot(path, key)


def check_snapshots(data_dir: Path, manifest: Manifest, adapter: StateAdapter, key: bytes) -> dict[str, Saved]:
    """Where each snapshot of the checkpoint is, once every file has passed its checks (none is unpickled).

    Services the adapter no longer has (not selected any more) are left out.

    :raises CheckpointError: another emulator version wrote it.
    :raises SnapshotError: a snapshot is refused (torn, corrupt, foreign, newer or missing).
    """
    checkpoint = Checkpoint(data_dir, manifest.checkpoint)
    ours = {name: value for name, value in adapter.meta().items() if name != "python"}
    theirs = {name: value for name, value in manifest.meta.items() if name != "python"}
    if ours != theirs:
        raise CheckpointError(
            checkpoint.directory,
            f"taken with {theirs or 'an unknown emulator'}, this is {ours}: its snapshots are not used",
        )
    checkpoint.read_snapshots(manifest.services, key)  # each file read and checked, one at a time
    kept = set(adapter.services())
    return {service: checkpoint.saved(service) for service in manifest.services if service in kept}


def load_snapshots(data_dir: Path, manifest: Manifest, adapter: StateAdapter, key: bytes) -> None:
    """Put the checkpoint's state into the emulator, in place.

    Every file is checked before any is used, and a checkpoint taken with
    another emulator version is not unpickled at all.

    :raises CheckpointError: another emulator version wrote it (nothing was changed).
    :raises SnapshotError: a snapshot is refused (nothing was changed).
    """
    saved = check_snapshots(data_dir, manifest, adapter, key)
    for service, where in saved.items():  # read again (checked again): holding every payload would double the peak
        _header, payload = read_snapshot(where.state, key)
        adapter.load(service, payload, where.assets)
