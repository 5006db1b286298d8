"""Checkpoints: the call log folded into saved state, so a start replays only the calls since.

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

:meth:`Checkpointer.checkpoint` takes these steps; the data dir restores the
full state if the process dies after any of them, or inside any:

1. ``captured``: with no state-changing call in flight
   (:class:`~replay.locks.MutationGate`), note where the log ends and serialise
   every active service to memory; calls wait only for this.
2. ``snapshots``: write the snapshot files into a new checkpoint directory.
3. ``base``: write ``calls.json``: the previous checkpoint's calls plus the
   log's calls up to the captured end, compacted.
4. ``manifest``: replace ``MANIFEST.json`` (atomically) to name the new
   checkpoint, and say that the log, whose header still names the previous one,
   continues it from the captured offset.
5. ``log``: rewrite the log as a header naming the new checkpoint followed by
   the calls after the captured offset (:meth:`~replay.record.log.CallLog.rewrite`;
   appends go on meanwhile).
6. ``cleaned``: remove the previous checkpoint directories, and the data dir's
   body files (:mod:`replay.record.bodies`) that no call after the checkpoint names
   (the checkpoint's ``calls.json`` has its own links to those it names).

Before step 4 the manifest still names the previous checkpoint and the log
still holds every call since it; a directory the manifest does not name is
left over from a crash and removed at the next start.  After step 4,
:func:`tail_start` finds the calls since the checkpoint whichever log the
crash left: the old one (from the captured offset) or the new one (after its
header).  A log whose header names neither is refused, and nothing is changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..adapters import StateAdapter
from ..errors import CheckpointError, SnapshotError
from ..files import atomic_write, ensure_private_dir, fsync_dir
from ..locks import MutationGate
from ..record.bodies import BODIES_DIR, CHECKPOINT_FILE_THRESHOLD, is_digest, named_in
from ..record.log import CallLog, read_header
from ..record.reader import Segment
from .bgsave import mode as bgsave_mode
from .bgsave import run_save
from .rewrite import RewriteReport, compact_logs
from .snapshot import Saved, read_snapshot, write_snapshot

__all__ = [
    "CHECKPOINTS_DIR",
    "MANIFEST_NAME",
    "STEPS",
    "Checkpoint",
    "Checkpointer",
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
STEPS = ("captured", "snapshots", "base", "manifest", "log", "cleaned")
_DUMP_ATTEMPTS = 3


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


@dataclasses.dataclass
class CheckpointResult:
    """What one checkpoint did, and what each step cost."""

    name: str
    services: list[str]
    offset: int
    base: RewriteReport | None = None
    size: int = 0
    pause: float = 0.0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "checkpoint": self.name,
            "services": self.services,
            "folded_offset": self.offset,
            "state_bytes": self.size,
            "pause": round(self.pause, 6),
            "timings": {step: round(seconds, 6) for step, seconds in self.timings.items()},
            "base": self.base.to_dict() if self.base is not None else None,
        }


class Checkpointer:
    """Makes checkpoints of an emulator whose mutating calls pass ``gate`` and are appended to ``log``.

    :param data_dir: the data dir.
    :param adapter: reaches the emulator's state.
    :param log: the live call log.
    :param gate: the gate the recording middleware holds for each state-changing call.
    :param key: this data dir's snapshot signing key (asked for when first needed).
    :param manifest: the current manifest (``None``: no checkpoint yet).
    :param tail: where the calls since the current checkpoint start in ``log``.
    :param quiesce_timeout: how long to wait for calls in flight before giving up.
    :param step: called with each step's name once it is done (tests stop the process there).
    :param pending: the services whose saved state is not loaded yet (:mod:`replay.restore.lazyload`): their
        snapshot files are linked from the current checkpoint, not dumped from the (empty) emulator.
    :param moved: told of a new checkpoint once it is current (pending services' files are in it now).
    """

    def __init__(
        self,
        data_dir: Path,
        adapter: StateAdapter,
        log: CallLog,
        gate: MutationGate,
        key: Callable[[], bytes],
        manifest: Manifest | None,
        tail: int,
        quiesce_timeout: float = 5.0,
        step: Callable[[str], None] | None = None,
        pending: Callable[[], frozenset[str]] = frozenset,
        moved: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.adapter = adapter
        self.log = log
        self.gate = gate
        self.key = key
        self.manifest = manifest
        self.tail = tail
        self._bodies_mark = 0.0  # when the last capture began: bodies kept since are never pruned
        self.quiesce_timeout = quiesce_timeout
        self.step = step
        self.pending = pending
        self.moved = moved
        self.bgsave = bgsave_mode()  # fork: calls wait only for the fork (replay.storage.bgsave)
        self._lock = threading.Lock()

    @property
    def tail_bytes(self) -> int:
        """Bytes of calls appended since the current checkpoint."""
        return max(0, self.log.size() - self.tail)

    def _next_name(self) -> str:
        names = [int(child.name) for child in checkpoints_dir(self.data_dir).glob("[0-9]*") if child.name.isdigit()]
        if self.manifest is not None:
            names.append(int(self.manifest.checkpoint))
        return f"{max(names, default=0) + 1:06d}"

    def _done(self, name: str, timings: dict[str, float], since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        if self.step is not None:
            self.step(name)
        return now

    def checkpoint(self) -> CheckpointResult:
        """Fold the log into a new checkpoint (one at a time; see the module docstring for the steps).

        An error before the manifest step leaves the current checkpoint as it was
        and removes what the new one had written.

        :raises QuiesceTimeoutError: state-changing calls stayed in flight; nothing was written.
        """
        with self._lock:
            return self._checkpoint()

    @contextlib.contextmanager
    def _quiesced(self, captured: dict[str, Any], before: Iterable[str]) -> Iterator[None]:
        """No state-changing call in flight: note the log's end, its header and the services to capture."""
        with self.gate.quiesced(self.quiesce_timeout):
            self._bodies_mark = self.log.bodies.mark()
            captured["offset"] = self.log.size()
            captured["header"] = read_header(self.log.path)[0]
            # asked here, not before: a call that finished meanwhile may have made a service's first state
            linked = self.pending() & set(before)  # not loaded, so unchanged since the current checkpoint
            captured["linked"] = sorted(linked)
            captured["services"] = sorted((set(self.adapter.active()) | set(before)) - linked)
            yield

    def _dump(self, new: Checkpoint, services: Iterable[str]) -> dict[str, bytes]:
        """Every service's state, serialised (its large data written to the checkpoint's assets)."""
        payloads: dict[str, bytes] = {}
        for service in services:
            for attempt in range(_DUMP_ATTEMPTS):
                try:
                    payloads[service] = self.adapter.dump(service, new.assets(service))
                    break
                except RuntimeError:  # inline, a read changed a dict being pickled (moto makes backends lazily)
                    if attempt == _DUMP_ATTEMPTS - 1:
                        raise
        return payloads

    def _write(
        self, new: Checkpoint, previous: Checkpoint | None, payloads: dict[str, bytes], captured: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the snapshots and ``calls.json`` of ``new`` (in the save's child when forked); what was written."""
        began = time.perf_counter()
        meta, key = self.adapter.meta(), self.key()
        for service, payload in payloads.items():
            write_snapshot(new.state(service), service, payload, key, meta)
            self.adapter.prune_assets(new.assets(service))
        linked: list[str] = captured["linked"]
        if linked and previous is not None:
            _link_states(previous, new, linked)
        size = (
            sum(len(payload) for payload in payloads.values())
            + sum(new.state(service).stat().st_size for service in linked)
            + _bytes_under(new.directory / "assets")
        )
        services = sorted([*payloads, *linked])
        offset = captured["offset"]
        payloads.clear()
        written = time.perf_counter()
        segments = [Segment(previous.base_log)] if previous is not None else []
        segments.append(Segment(self.log.path, self.tail, offset))
        base = compact_logs(segments, new.base_log, files_from=CHECKPOINT_FILE_THRESHOLD)
        _share_bodies(new)
        timings = {"snapshots": written - began, "base": time.perf_counter() - written}
        return {"services": services, "size": size, "base": base.to_dict(), "timings": timings}

    def _checkpoint(self) -> CheckpointResult:
        previous = Checkpoint(self.data_dir, self.manifest.checkpoint) if self.manifest is not None else None
        new = Checkpoint(self.data_dir, self._next_name())
        ensure_private_dir(new.directory)
        timings: dict[str, float] = {}
        started = mark = time.perf_counter()
        before: Iterable[str] = ()
        if self.manifest is not None:  # those the adapter still has: a service no longer selected is left out
            kept = set(self.adapter.services())
            before = [service for service in self.manifest.services if service in kept]
        captured: dict[str, Any] = {}
        try:
            if previous is not None:
                _link_assets(previous, new, before)
            meta = self.adapter.meta()
            self.key()  # made (or read) before the fork: the child only signs with it
            outcome = run_save(
                lambda: self._dump(new, captured["services"]),
                lambda payloads: self._write(new, previous, payloads, captured),
                self._quiesced(captured, before),
                self.bgsave,
            )
            written: dict[str, Any] = outcome.result
            timings["captured"] = outcome.held
            timings.update({step: float(written["timings"][step]) for step in ("snapshots", "base")})
            for step in ("captured", "snapshots", "base"):  # the child did the last two: told once it is done
                if self.step is not None:
                    self.step(step)
            mark = time.perf_counter()
            services, size = list(written["services"]), int(written["size"])
            base = RewriteReport.from_dict(written["base"])
            offset, header, pause = captured["offset"], captured["header"], outcome.held
        except Exception:
            shutil.rmtree(new.directory, ignore_errors=True)
            raise
        folded = (
            (self.manifest.folded if self.manifest is not None else 0)
            + base.read
            - (self.manifest.calls if self.manifest is not None else 0)
        )
        manifest = Manifest(
            checkpoint=new.name,
            services=tuple(services),
            calls=base.kept,
            folded=folded,
            size=size,
            created=time.time(),
            meta=meta,
            tail_after=header,
            tail_offset=offset,
        )
        write_manifest(self.data_dir, manifest)
        self.manifest = manifest
        self.tail = offset
        if self.moved is not None:
            self.moved(new)
        mark = self._done("manifest", timings, mark)
        self.log.rewrite(offset, new.name)
        self.tail = read_header(self.log.path)[1]
        mark = self._done("log", timings, mark)
        remove_stale(self.data_dir, manifest)
        # bodies only calls folded into the checkpoint named are in its own bodies folder now
        self.log.bodies.prune(named_in(self.log.path, self.tail), self._bodies_mark)
        self._done("cleaned", timings, mark)
        result = CheckpointResult(new.name, services, offset, base, size, pause, timings)
        logger.info(
            "checkpoint %s: %d services (%d bytes), %d calls folded into %d, calls paused %.1f ms, %.2f s in all",
            new.name,
            len(services),
            size,
            base.read,
            base.kept,
            pause * 1000,
            time.perf_counter() - started,
        )
        return result


def _bytes_under(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) if directory.exists() else 0


def _share_bodies(checkpoint: Checkpoint) -> None:
    """Store each body that ``calls.json`` names and a snapshot's asset holds too (an S3 object put whole) once:
    the body file becomes a hard link of the asset, durably, before the manifest names the checkpoint."""
    bodies = checkpoint.directory / BODIES_DIR
    assets = checkpoint.directory / "assets"
    if not bodies.is_dir() or not assets.is_dir():
        return
    found = {asset.name: asset for service in assets.iterdir() if service.is_dir() for asset in service.iterdir()}
    shared = False
    for body in bodies.iterdir():
        asset = found.get(body.name)
        if asset is None or not is_digest(body.name):
            continue
        try:
            mine, theirs = body.stat(), asset.stat()
            if mine.st_ino == theirs.st_ino or mine.st_size != theirs.st_size:
                continue
            temporary = bodies / f".{body.name}.shared"
            temporary.unlink(missing_ok=True)
            os.link(asset, temporary)
            os.replace(temporary, body)  # same name, same bytes (both are named by their SHA-256), one copy
            shared = True
        except OSError:  # no hard links here: two copies, as before
            continue
    if shared:
        fsync_dir(bodies)


def _link_states(previous: Checkpoint, new: Checkpoint, services: list[str]) -> None:
    """The previous checkpoint's snapshot files of ``services`` (not loaded since), in the new one, durably."""
    for service in services:
        target = new.state(service)
        ensure_private_dir(target.parent)
        try:
            os.link(previous.state(service), target)
        except OSError:  # no hard links here: a copy
            atomic_write(target, previous.state(service).read_bytes())
    fsync_dir(new.directory / "state")


def _link_assets(previous: Checkpoint, new: Checkpoint, services: Iterable[str]) -> None:
    """Hard-link the previous checkpoint's asset files into the new one: unchanged bodies are not written again."""
    for service in services:
        source = previous.assets(service)
        if not source.is_dir():
            continue
        target = new.assets(service)
        ensure_private_dir(target)
        for asset in source.iterdir():
            destination = target / asset.name
            if not destination.exists():
                try:
                    os.link(asset, destination)
                except OSError:  # a filesystem without hard links: the dump writes it again
                    continue
        fsync_dir(target)  # the links are durable before the manifest that names this checkpoint
