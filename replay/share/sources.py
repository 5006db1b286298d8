"""What a path given to a command holds: a call log, a LocalStack log, a data dir of either backend, or an archive.

:func:`identify` decides from as little as it can read: the first bytes and
the first line of a file, the names in a directory.  It never writes.

==============  ===================================================================
``log``         our call log (``recorded_api_calls.json``, version-1 lines)
``localstack``  a legacy LocalStack ``recorded_api_calls.json`` (:mod:`replay.share.localstack`)
``replay``      a data dir of the ``replay`` backend: a call log, maybe checkpoints
``snapshot``    a data dir of the ``snapshot`` backend: ``state/api_states/<service>/backend.state``
``archive``     a file made by ``replay export`` (:mod:`replay.share.archive`)
==============  ===================================================================

Anything else is a :class:`~replay.errors.SourceError` with a one-line message
that names the path and says what was expected.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ..adapters import StateAdapter
from ..config import LOG_FILE_NAME
from ..errors import SourceError
from ..record.reader import Segment, is_localstack_record
from ..record.seeding import Seeder
from ..restore.replayer import Replayer
from ..restore.transport import WSGITransport
from ..storage.checkpoint import CHECKPOINTS_DIR, MANIFEST_NAME, history
from ..storage.snapshot import load_key, read_snapshot
from .localstack import LocalStackReader

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "GZIP_MAGIC",
    "STATE_FILE_NAME",
    "Loaded",
    "Source",
    "SourceKind",
    "check_backend",
    "identify",
    "snapshot_path",
    "snapshot_services",
]

GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 1 << 16
STATE_FILE_NAME = "backend.state"


class SourceKind(str, enum.Enum):
    """What a path holds (see the module docstring)."""

    LOG = "log"
    LOCALSTACK = "localstack"
    REPLAY = "replay"
    SNAPSHOT = "snapshot"
    ARCHIVE = "archive"


@dataclasses.dataclass(frozen=True)
class Source:
    """A path and what it holds."""

    path: Path
    kind: SourceKind

    @property
    def data_dir(self) -> Path | None:
        """The data dir, for the two data-dir kinds."""
        return self.path if self.kind in (SourceKind.REPLAY, SourceKind.SNAPSHOT) else None

    @property
    def log_path(self) -> Path:
        """The call log this source's calls are read from (its data dir's, for ``replay``)."""
        return self.path / LOG_FILE_NAME if self.kind is SourceKind.REPLAY else self.path

    def segments(self) -> list[Segment]:
        """The calls that rebuild this source's state from empty, in order.

        :raises SourceError: the source holds snapshots or is an archive, not calls.
        :raises CheckpointError: the log and its data dir's checkpoint do not fit together.
        """
        if self.kind is SourceKind.LOCALSTACK:
            return [Segment(self.path, legacy=True, read_with=LocalStackReader)]
        if self.kind in (SourceKind.LOG, SourceKind.REPLAY):
            return history(self.log_path)
        what = "serialised state, not calls" if self.kind is SourceKind.SNAPSHOT else "an archive, not a call log"
        hint = "serve it with --backend snapshot" if self.kind is SourceKind.SNAPSHOT else "`replay import` it first"
        raise SourceError(self.path, f"{self.path} holds {what}; {hint}")

    def load_into(
        self, app: WSGIApplication, seeder: Seeder | None = None, adapter: StateAdapter | None = None
    ) -> Loaded:
        """Put this source's state into the (empty) emulator ``app``, in-process; nothing is written.

        Calls are replayed in order (a checkpoint's compacted calls, then the log's since), each in its
        recorded random stream when ``seeder`` is given; a ``snapshot`` data dir's files are checked
        against its key and loaded through ``adapter``.  An archive must be imported first.

        :raises SourceError: an archive; or snapshots without an ``adapter`` to load them.
        :raises SnapshotError: a snapshot is refused.
        """
        started = time.perf_counter()
        if self.kind is SourceKind.SNAPSHOT:
            if adapter is None:
                raise SourceError(self.path, f"{self.path} holds snapshots, and this emulator has no state adapter")
            state = self.path / "state"
            key = load_key(state, create=False)
            services = snapshot_services(self.path)
            payloads = {name: read_snapshot(snapshot_path(self.path, name), key)[1] for name in services}
            for name, payload in payloads.items():  # every file checked before any is used
                adapter.load(name, payload, state / name)
            return Loaded(self, 0, 0, services, time.perf_counter() - started)
        report = Replayer(WSGITransport(app), seeder=seeder).replay_segments(self.segments())
        return Loaded(self, report.restored, report.failed, [], time.perf_counter() - started)


@dataclasses.dataclass(frozen=True)
class Loaded:
    """What :meth:`Source.load_into` put into an emulator."""

    source: Source
    calls: int
    failed: int
    services: list[str]
    duration: float

    def describe(self) -> str:
        what = f"{len(self.services)} services from snapshots" if self.services else f"{self.calls} calls"
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.source.path} ({self.source.kind.value}): {what}{failed} in {self.duration:.2f} s"


def snapshot_path(data_dir: Path, service: str) -> Path:
    """Where a ``snapshot`` data dir keeps ``service``'s snapshot: ``state/api_states/<service>/backend.state``."""
    return Path(data_dir) / "state" / "api_states" / service / STATE_FILE_NAME


def snapshot_services(data_dir: Path) -> list[str]:
    """The services a ``snapshot`` data dir has a snapshot of."""
    root = Path(data_dir) / "state" / "api_states"
    return sorted(p.parent.name for p in root.glob(f"*/{STATE_FILE_NAME}")) if root.is_dir() else []


def _replay_dir(path: Path) -> bool:
    log = path / LOG_FILE_NAME
    return (log.is_file() and log.stat().st_size > 0) or (path / CHECKPOINTS_DIR / MANIFEST_NAME).is_file()


def _evidence(path: Path, kind: SourceKind) -> str:
    """What of ``path`` shows state of the ``kind`` backend, in words."""
    if kind is SourceKind.SNAPSHOT:
        return f"snapshots of {', '.join(snapshot_services(path))} under {path / 'state' / 'api_states'}"
    manifest = path / CHECKPOINTS_DIR / MANIFEST_NAME
    log = path / LOG_FILE_NAME
    found = [f"a call log ({log}, {log.stat().st_size:,} bytes)"] if log.is_file() and log.stat().st_size else []
    if manifest.is_file():
        found.append(f"checkpoints ({manifest})")
    return " and ".join(found)


def check_backend(data_dir: Path, kind: SourceKind) -> None:
    """Refuse to start the ``kind`` backend (``replay`` or ``snapshot``) on a data dir whose state the other
    one wrote: it would start empty, and its own first save could bury the state that is there.

    :raises SourceError: the data dir holds the other backend's state (and none of ``kind``'s).
    """
    path = Path(data_dir)
    if not path.is_dir():
        return
    replay, snapshot = _replay_dir(path), bool(snapshot_services(path))
    mine, theirs = (replay, snapshot) if kind is SourceKind.REPLAY else (snapshot, replay)
    if not theirs:
        return
    other = SourceKind.SNAPSHOT if kind is SourceKind.REPLAY else SourceKind.REPLAY
    if mine:
        raise SourceError(
            path,
            f"{path} holds state of both backends ({_evidence(path, kind)}; {_evidence(path, other)}): "
            "move the one you no longer use out of the data dir, then start again",
        )
    raise SourceError(
        path,
        f"{path} holds state the {other.value} backend wrote ({_evidence(path, other)}), and this server uses "
        f"the {kind.value} backend: start it with PERSISTENCE_BACKEND={other.value} (--backend {other.value}), "
        "or move that state aside to start empty",
    )


def _identify_dir(path: Path, expected: SourceKind | None) -> Source:
    replay, snapshot = _replay_dir(path), bool(snapshot_services(path))
    if expected in (SourceKind.REPLAY, SourceKind.SNAPSHOT):
        if (replay if expected is SourceKind.REPLAY else snapshot) or not (replay or snapshot):
            return Source(path, expected)
        other = "snapshot" if expected is SourceKind.REPLAY else "replay"
        raise SourceError(path, f"{path} holds {other}-backend state, not {expected.value}-backend state")
    if replay and snapshot:
        raise SourceError(
            path, f"{path} holds state of both backends (a call log and snapshots); say which with --backend"
        )
    if replay:
        return Source(path, SourceKind.REPLAY)
    if snapshot:
        return Source(path, SourceKind.SNAPSHOT)
    if (path / LOG_FILE_NAME).is_file():
        return Source(path, SourceKind.REPLAY)  # an empty log: a data dir that has recorded nothing yet
    raise SourceError(
        path,
        f"no call log at {path / LOG_FILE_NAME}, and no checkpoints or snapshots under {path}: "
        "it holds no replay state",
    )


def _first_line(path: Path) -> bytes:
    """The first non-blank line of ``path`` (read in chunks; a line may be long)."""
    with open(path, "rb") as handle:
        pending = b""
        while chunk := handle.read(_SNIFF_BYTES):
            pending += chunk
            lines = pending.split(b"\n")
            for line in lines[:-1]:
                if line.strip():
                    return line
            pending = lines[-1]
            if pending.strip() and not pending.lstrip().startswith(b"{"):
                return pending  # not JSON: no need to read on to its end
        return pending


def _identify_file(path: Path) -> Source:
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == GZIP_MAGIC:
        return Source(path, SourceKind.ARCHIVE)
    line = _first_line(path).strip()
    if not line:
        return Source(path, SourceKind.LOG)  # empty: a log with no calls yet
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        if "v" in document:
            return Source(path, SourceKind.LOG)
        if is_localstack_record(document):
            return Source(path, SourceKind.LOCALSTACK)
    raise SourceError(
        path,
        f"{path} is not a replay call log, a LocalStack log or a replay archive (its first line starts {line[:40]!r})",
    )


def identify(path: Path | str, expected: SourceKind | None = None) -> Source:
    """What ``path`` holds.

    :param expected: for a directory, the backend whose state to look for (``replay`` or
        ``snapshot``), when a data dir might hold both.
    :raises SourceError: ``path`` does not exist or holds nothing replay reads.
    """
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            return _identify_dir(path, expected)
        if path.is_file():
            return _identify_file(path)
    except OSError as exc:
        raise SourceError(path, f"cannot read {path}: {exc.strerror or exc}") from None
    raise SourceError(path, f"no call log at {path}: no such file or directory")
