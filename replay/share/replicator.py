"""Continuous replication: a running server's state shipped to a replica on S3 (``replay serve --replicate``).

Two steps, on one background thread; the server never waits for S3:

1. *cut* (every ``interval``, and just before a checkpoint folds calls out of the log): the log's
   entries past the last one cut become a segment file under ``<data dir>/replica/pending/``, with
   the large bodies they name (hard links); a new checkpoint, or a new snapshot save, becomes an
   archive there.  Each is written whole and fsynced before ``replica/state.json`` says how far the
   cut reached, so a crash at any point loses nothing and at worst cuts an entry twice (a restore
   skips what it has).
2. *upload* the pending files in order (the generation's ``generation.json``, snapshots, bodies,
   segments), deleting each once S3 has it.  A failure (S3 down, 5xx, throttling) is retried with
   a backoff doubling from 0.5 s to 5 s; the pending files are the backlog, on local disk, bounded
   by ``backlog`` bytes: past it they are dropped and, once S3 answers again, a new generation
   starts from the data dir's state (a replica never holds a history with a hole in it).

Before uploading anything the replicator takes the prefix's lease (:class:`~replay.share.replica.Lease`),
and renews it every few seconds.  A lease another data dir renewed less than ``LEASE_TTL`` ago
means another server replicates here: refused (:class:`~replay.errors.ReplicaInUseError`), at start
when S3 answers then, else as an ``error`` state.  The same data dir (its id, host and path)
takes its own lease back at once after a crash.

A start continues the generation ``replica/state.json`` names when the data dir still holds every
call after the last one cut (no checkpoint folded past it, no call lost from the log's end); else it
starts a new generation.  Only the log's lines go to S3, as written: their secrets were removed
when they were recorded (:mod:`replay.record.redact`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import gzip
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..config import LOG_FILE_NAME
from ..errors import ReplayError, ReplicaInUseError
from ..files import atomic_write, ensure_private_dir, fsync_dir
from ..record.bodies import BODIES_DIR
from ..record.log import decode_header, last_seq
from ..storage.checkpoint import CHECKPOINTS_DIR, MANIFEST_NAME, Checkpoint, Manifest, read_manifest
from .archive import file_digest, stage_snapshot_files, write_archive
from .replica import (
    GENERATION_INFO,
    LEASE_NAME,
    Generation,
    Lease,
    ReplicaClient,
    SegmentName,
    SnapshotName,
    host_name,
    new_generation_id,
    parse_replica,
    plan_retention,
)
from .sources import snapshot_path, snapshot_services

__all__ = ["LEASE_TTL", "ReplicaSource", "Replicator"]

logger = logging.getLogger("replay.replicator")

REPLICA_DIR = "replica"
STATE_NAME = "state.json"
LEASE_RENEW = 5.0  # seconds between lease renewals
LEASE_TTL = 20.0  # a lease not renewed for this long is free to take
SEGMENT_BYTES = 8 << 20  # at most this much of the log in one segment (uncompressed)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 5.0  # one try in 5 s costs S3 nothing; it is back soon after


class ReplicaSource(str, enum.Enum):
    """What a data dir ships: its log and checkpoints (``replay``), or its snapshot saves (``snapshot``)."""

    REPLAY = "replay"
    SNAPSHOT = "snapshot"


@dataclasses.dataclass
class _Local:
    """``<data dir>/replica/state.json``: where the cut reached, in which generation of which replica."""

    data_dir_id: str
    url: str = ""
    generation: str = ""
    cut: int = 0  # the last call number (replay) or save number (snapshot) cut into a pending file
    checkpoint: str = ""  # the checkpoint (replay) or save fingerprint (snapshot) last shipped

    @classmethod
    def read(cls, path: Path) -> _Local:
        try:
            document = orjson.loads(path.read_bytes())
            return cls(
                data_dir_id=str(document["data_dir_id"]),
                url=str(document.get("url", "")),
                generation=str(document.get("generation", "")),
                cut=int(document.get("cut", 0)),
                checkpoint=str(document.get("checkpoint", "")),
            )
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return cls(data_dir_id=secrets.token_hex(8))

    def write(self, path: Path) -> None:
        atomic_write(path, orjson.dumps(dataclasses.asdict(self)))


class _LogTail:
    """Reads the entries a log gained since the last read, following it across rewrites (new inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._ino = -1
        self._offset = 0
        self.reopened = False  # set when the file was (re)opened: the log was rewritten, or first read
        self.more = False  # the last read stopped at its limit, before the end it began with

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, after: int, limit: int) -> list[tuple[int, float, bytes]]:
        """``(seq, time, line)`` of the complete entries numbered past ``after``, about ``limit`` bytes at most.

        Only what the file held when the call began is read: a cut ends even while calls keep coming
        (:attr:`more` says whether the limit stopped it first).
        """
        self.more = False
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return []
        if ino != self._ino or self._fd is None:
            self.close()
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return []
            self._ino, self._offset = os.fstat(self._fd).st_ino, 0
            self.reopened = True
        size = os.fstat(self._fd).st_size
        found: list[tuple[int, float, bytes]] = []
        taken = 0
        while self._offset < size:
            if taken >= limit:
                self.more = True
                break
            chunk = os.pread(self._fd, min(1 << 20, limit - taken + (1 << 16), size - self._offset), self._offset)
            end = chunk.rfind(b"\n")
            if end < 0:
                if len(chunk) >= 1 << 20:  # one line longer than a read: read it whole
                    chunk = _read_line(self._fd, self._offset)
                    end = len(chunk) - 1 if chunk.endswith(b"\n") else -1
                if end < 0:
                    break
            block = chunk[: end + 1]
            self._offset += len(block)
            for line in block.splitlines(keepends=True):
                if not line.strip() or decode_header(line) is not None:
                    continue
                seq, started = _numbers(line)
                if seq <= after:
                    continue
                found.append((seq, started, line))
                taken += len(line)
        return found

    def rewind(self) -> None:
        """Read from the file's start again (after a failed cut)."""
        self._offset = 0


def _read_line(fd: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(parts)
        end = chunk.find(b"\n")
        if end >= 0:
            parts.append(chunk[: end + 1])
            return b"".join(parts)
        parts.append(chunk)
        offset += len(chunk)


_HEAD = re.compile(rb'\{"v":1,"seq":([0-9]+),"time":([0-9.eE+-]+),')


def _numbers(line: bytes) -> tuple[int, float]:
    """An entry line's sequence number and start time (read from its head, as the log writes it, when it can)."""
    head = _HEAD.match(line)
    if head is not None:
        with contextlib.suppress(ValueError):
            seq, started = int(head.group(1)), float(head.group(2))
            if seq > 0:
                return seq, started
    try:
        document = orjson.loads(line)
        seq, started = document["seq"], document["time"]
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 and isinstance(started, (int, float)):
            return seq, float(started)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    raise ReplayError(f"a line of the log is not a numbered entry ({line[:80]!r}...): it cannot be replicated")


def _file_bodies(line: bytes) -> list[str]:
    if b'"file"' not in line:
        return []
    request = orjson.loads(line).get("request") or {}
    body = request.get("body")
    return [body] if request.get("encoding") == "file" and isinstance(body, str) else []


def _manifest_through(manifest: Manifest, log_path: Path) -> int:
    """The last call number a checkpoint folded (derived from the log for a manifest that does not say)."""
    if manifest.through is not None:
        return manifest.through
    try:
        with open(log_path, "rb") as handle:
            handle.readline()  # the header
            for line in handle:
                if line.strip():
                    return _numbers(line)[0] - 1
    except FileNotFoundError:
        pass
    return last_seq(log_path)


class Replicator:
    """Ship ``data_dir`` to ``url`` continuously (see the module's text).

    :param source: what to ship (the server's backend).
    :param interval: seconds between cuts (bounds the lag).
    :param retention: seconds of restore points kept (older objects are pruned).
    :param backlog: bytes of pending files kept while S3 cannot be reached.
    :param archive_key: signs the archives (snapshots) shipped (``REPLAY_ARCHIVE_KEY``).
    """

    def __init__(
        self,
        data_dir: Path,
        url: str,
        source: ReplicaSource,
        endpoint_url: str | None = None,
        interval: float = 1.0,
        retention: float = 72 * 3600.0,
        backlog: int = 1 << 30,
        archive_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.location = parse_replica(url)
        self.source = source
        self.endpoint_url = endpoint_url
        self.interval = interval
        self.retention = retention
        self.backlog = backlog
        self.archive_key = archive_key
        self.clock = clock
        self.client = ReplicaClient(self.location, endpoint_url, timeout=max(5.0, interval * 5))
        self.dir = self.data_dir / REPLICA_DIR
        self.log_path = self.data_dir / LOG_FILE_NAME
        self._cut_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._tail = _LogTail(self.log_path)
        self._session = secrets.token_hex(8)
        self._claimed = False
        self._lost: str | None = None  # why uploads stopped for good (another server took the lease)
        self._renewed = 0.0
        self._pruned = 0.0
        self._backoff = 0.0
        self._next_try = 0.0
        self._last_error: str | None = None
        self._last_upload: float | None = None
        self._uploaded = 0
        self._overflowed = False
        self._reachable = False  # the last round reached S3 (the backlog bound applies while it does not)
        self._manifest_seen: tuple[int, int] | None = None
        self.local = _Local.read(self.dir / STATE_NAME)

    # --- the local side -----------------------------------------------------------------------------------------

    @property
    def generation(self) -> str:
        return self.local.generation

    def _pending(self) -> Path:
        return self.dir / "pending" / self.local.generation

    def prepare(self) -> None:
        """Continue the generation the data dir last shipped to, or start a new one; take the lease if S3 answers.

        :raises ReplicaInUseError: S3 answered, and another server holds the lease.
        """
        ensure_private_dir(self.dir)
        if self.source is ReplicaSource.SNAPSHOT and self.archive_key is None:
            logger.warning(
                "replica %s: saves are shipped unsigned (no REPLAY_ARCHIVE_KEY): importing them needs --trust",
                self.location,
            )
        with self._cut_lock:
            reason = self._continuity()
            if reason is None:
                logger.info(
                    "replicating to %s: continuing generation %s after #%d",
                    self.location,
                    self.generation,
                    self.local.cut,
                )
            else:
                self._new_generation(reason)
        try:
            self._claim()
        except ReplicaInUseError:
            raise
        except ReplayError as exc:
            self._failed(exc)
            logger.warning("replica %s cannot be reached yet (%s); shipping starts once it can", self.location, exc)

    def _continuity(self) -> str | None:
        """Why the data dir cannot continue its generation (``None``: it can)."""
        local = self.local
        if local.url != str(self.location) or not local.generation:
            return "first replication of this data dir to this replica"
        if self.source is ReplicaSource.SNAPSHOT:
            return None
        manifest = read_manifest(self.data_dir)
        if manifest is not None and _manifest_through(manifest, self.log_path) > local.cut:
            return f"a checkpoint folded calls past #{local.cut} that were never shipped"
        if last_seq(self.log_path) < local.cut:
            return f"the log ends before #{local.cut}, which was shipped: its end was lost or rewritten"
        return None

    def _new_generation(self, reason: str) -> None:
        old = self.dir / "pending"
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        self.local.generation = new_generation_id(self.clock(), after=self.local.generation)
        self.local.url = str(self.location)
        self.local.checkpoint = ""
        self._manifest_seen = None  # its checkpoint ships again, into this generation
        self.local.cut = 0
        self._tail.rewind()
        if self.source is ReplicaSource.REPLAY:
            manifest = read_manifest(self.data_dir)
            self.local.cut = _manifest_through(manifest, self.log_path) if manifest is not None else 0
        info = {
            "format": 1,
            "generation": self.local.generation,
            "created": self.clock(),
            "backend": self.source.value,
            "host": host_name(),
            "data_dir": str(self.data_dir),
            "data_dir_id": self.local.data_dir_id,
            "starts_after": self.local.cut,
            "reason": reason,
        }
        atomic_write(self._pending() / GENERATION_INFO, orjson.dumps(info))
        self.local.write(self.dir / STATE_NAME)
        self._overflowed = False
        logger.info("replicating to %s: generation %s starts (%s)", self.location, self.local.generation, reason)

    def before_fold(self) -> None:
        """Cut the log now: a checkpoint is about to fold calls out of it (its archive ships in the next round)."""
        self.cut(snapshots=False)

    def cut(self, snapshots: bool = True) -> None:
        """Move what the data dir gained since the last cut into pending files (fast: local disk only).

        ``snapshots``: also pack a new checkpoint (replay backend) as an archive; a stop leaves that to the
        next start, since the segments already hold every call it folded.
        """
        with self._cut_lock:
            if self._overflowed:
                return
            if self.source is ReplicaSource.REPLAY:
                if snapshots:
                    self._ship_checkpoint()
                self._cut_log()
            else:
                self._ship_save()
            if not self._reachable and self._pending_bytes() > self.backlog:
                self._overflow()

    def _cut_log(self) -> None:
        while True:
            self._tail.reopened = False
            entries = self._tail.read(self.local.cut, SEGMENT_BYTES)
            manifest = read_manifest(self.data_dir) if self._tail.reopened else None
            if manifest is not None and _manifest_through(manifest, self.log_path) > self.local.cut:
                self._new_generation(f"a checkpoint folded calls past #{self.local.cut} before they were cut")
                continue  # from the checkpoint on
            if not entries:
                return
            after = self.local.cut
            expected = after
            kept: list[tuple[int, float, bytes]] = []
            for entry in entries:
                if entry[0] <= expected:
                    continue  # the same call twice in one read: keep the first
                kept.append(entry)
                expected = entry[0]
            if not kept:
                return
            content = b"".join(line for _, _, line in kept)
            times = [started for _, started, _ in kept]
            name = SegmentName.make(after, kept[-1][0], min(times), max(times), hashlib.sha256(content).hexdigest())
            pending = self._pending()
            digests = {digest for _, _, line in kept for digest in _file_bodies(line)}
            if digests:
                folder = pending / "bodies" / name.bodies
                ensure_private_dir(folder)
                for digest in sorted(digests):
                    _link(self.data_dir / BODIES_DIR / digest, folder / digest)
                fsync_dir(folder)
            atomic_write(pending / "segments" / name.name, gzip.compress(content, compresslevel=1, mtime=0))
            self.local.cut = name.last
            self.local.write(self.dir / STATE_NAME)
            if not self._tail.more:
                return

    def _ship_checkpoint(self) -> None:
        path = self.data_dir / CHECKPOINTS_DIR / MANIFEST_NAME
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_ino, stat.st_mtime_ns)
        if seen == self._manifest_seen:
            return
        manifest = read_manifest(self.data_dir)
        if manifest is None or manifest.checkpoint == self.local.checkpoint:
            self._manifest_seen = seen
            return
        checkpoint = Checkpoint(self.data_dir, manifest.checkpoint)
        staging = self._pending() / f".staging-{manifest.checkpoint}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            ensure_private_dir(staging)
            _link(checkpoint.base_log, staging / "calls.json")
            bodies = checkpoint.directory / BODIES_DIR
            if bodies.is_dir():
                for body in bodies.iterdir():
                    ensure_private_dir(staging / BODIES_DIR)
                    _link(body, staging / BODIES_DIR / body.name)
        except FileNotFoundError:  # a newer checkpoint replaced it meanwhile: the next cut ships that one
            shutil.rmtree(staging, ignore_errors=True)
            return
        through = _manifest_through(manifest, self.log_path)
        facts = {"kind": "replay", "calls": manifest.calls, "emulator": dict(manifest.meta)}
        self._pack(staging, through, manifest.created, facts)
        self.local.checkpoint = manifest.checkpoint
        self.local.write(self.dir / STATE_NAME)
        self._manifest_seen = seen

    def _ship_save(self) -> None:
        fingerprint = self._save_fingerprint()
        if not fingerprint or fingerprint == self.local.checkpoint:
            return
        staging = self._pending() / ".staging-save"
        shutil.rmtree(staging, ignore_errors=True)
        ensure_private_dir(staging)
        services = stage_snapshot_files(self.data_dir, staging)
        if self._save_fingerprint() != fingerprint:  # a save landed while we read: take it at the next cut
            shutil.rmtree(staging, ignore_errors=True)
            return
        as_of = max(stat[1] for stat in orjson.loads(fingerprint)) / 1e9
        self._pack(staging, self.local.cut + 1, as_of, {"kind": "snapshot", "services": services})
        self.local.cut += 1
        self.local.checkpoint = fingerprint
        self.local.write(self.dir / STATE_NAME)

    def _save_fingerprint(self) -> str:
        stats = []
        for service in snapshot_services(self.data_dir):
            with contextlib.suppress(FileNotFoundError):
                stat = snapshot_path(self.data_dir, service).stat()
                stats.append((service, stat.st_mtime_ns, stat.st_size))
        return orjson.dumps(stats).decode() if stats else ""

    def _pack(self, staging: Path, through: int, as_of: float, facts: dict[str, Any]) -> None:
        packed = self._pending() / f".packing-{os.getpid()}.tar.gz"
        try:
            write_archive(staging, packed, key=self.archive_key, **facts)
            digest = file_digest(packed)[1]
            target = self._pending() / "snapshots" / SnapshotName.make(through, as_of, digest).name
            ensure_private_dir(target.parent)
            os.replace(packed, target)
            fsync_dir(target.parent)
        finally:
            packed.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)

    def _pending_files(self) -> list[Path]:
        """The pending files in upload order: generation info, snapshots, bodies, then segments."""
        pending = self._pending()
        if not pending.is_dir():
            return []
        files = [pending / GENERATION_INFO] if (pending / GENERATION_INFO).exists() else []
        for part in ("snapshots", "bodies", "segments"):
            folder = pending / part
            if folder.is_dir():
                files += sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return files

    def _pending_bytes(self) -> int:
        total = 0
        for path in self._pending_files():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def _overflow(self) -> None:
        self._overflowed = True
        shutil.rmtree(self.dir / "pending", ignore_errors=True)
        self._last_error = (
            f"the backlog passed {self.backlog} bytes while the replica could not be reached: dropped; "
            "a new generation starts once it answers"
        )
        logger.error("replica %s: %s", self.location, self._last_error)

    # --- the S3 side --------------------------------------------------------------------------------------------

    def _lease(self) -> Lease:
        return Lease(
            data_dir_id=self.local.data_dir_id,
            host=host_name(),
            data_dir=str(self.data_dir),
            session=self._session,
            pid=os.getpid(),
            generation=self.local.generation,
            renewed=self.clock(),
        )

    def _claim(self) -> None:
        mine = self._lease()
        held = self.client.lease()
        if held is not None and held.session != self._session and not held.same_owner(mine):
            age = self.clock() - held.renewed
            if age < LEASE_TTL:
                raise ReplicaInUseError(str(self.location), held.about(), age)
        self.client.mark()
        pending_info = (self._pending() / GENERATION_INFO).exists()
        if not pending_info and self.client.get(f"generations/{self.generation}/{GENERATION_INFO}") is None:
            with self._cut_lock:
                self._new_generation(f"generation {self.generation} is gone from the replica")
            mine = self._lease()
        self.client.put(LEASE_NAME, mine.to_json())
        self._claimed, self._renewed = True, self.clock()

    def _renew(self) -> None:
        held = self.client.lease()
        if held is not None and held.session != self._session:
            self._lost = (
                f"another server took the replica's lease ({', '.join(f'{k} {v}' for k, v in held.about().items())}); "
                "replication stopped"
            )
            logger.error("replica %s: %s", self.location, self._lost)
            return
        self.client.put(LEASE_NAME, self._lease().to_json())
        self._renewed = self.clock()

    def _release(self) -> None:
        """Give the lease up at a clean stop, so another data dir may replicate here at once."""
        if not self._claimed or self._lost is not None:
            return
        try:
            held = self.client.lease()
            if held is not None and held.session == self._session:
                self.client.delete([LEASE_NAME])
        except Exception as exc:  # it runs out by itself
            logger.info("replica %s: lease not released (%s); it runs out in %.0f s", self.location, exc, LEASE_TTL)
        self._claimed = False

    def _upload(self) -> None:
        generation = Generation(self.local.generation)
        pending = self._pending()
        for path in self._pending_files():
            name = path.relative_to(pending).as_posix()
            self.client.put(generation.key(name), path)
            path.unlink(missing_ok=True)
            self._uploaded += 1
            self._last_upload = self.clock()

    def _prune(self) -> None:
        generations = self.client.generations()
        doomed = plan_retention(generations, self.clock() - self.retention, self.generation)
        if doomed:
            self.client.delete(doomed)
            logger.info(
                "replica %s: pruned %d objects older than the %.0f s retention",
                self.location,
                len(doomed),
                self.retention,
            )

    def _failed(self, exc: Exception) -> None:
        self._last_error = " ".join(str(exc).split())
        self._backoff = min(_BACKOFF_MAX, self._backoff * 2 if self._backoff else _BACKOFF_FIRST)
        self._next_try = time.monotonic() + self._backoff

    def sync(self, snapshots: bool = True) -> None:
        """One round: cut, then (unless backing off) claim or renew the lease, upload, prune."""
        self.cut(snapshots)
        generation = self.generation
        if self._lost is not None or time.monotonic() < self._next_try:
            return
        try:
            if not self._claimed:
                self._claim()
            elif self._overflowed or self.clock() - self._renewed >= LEASE_RENEW:  # overflowed: S3 must answer first
                self._renew()
                if self._lost is not None:
                    return
            self._reachable = True
            if self._overflowed:
                with self._cut_lock:
                    self._new_generation("the backlog overflowed while the replica could not be reached")
            if self.generation != generation:  # a new one started in this round: its first cut goes up with it
                self.cut(snapshots)
            self._upload()
            if self.clock() - self._pruned >= min(60.0, max(1.0, self.retention / 4)):
                self._prune()
                self._pruned = self.clock()
        except ReplicaInUseError as exc:
            self._lost = str(exc)
            logger.error("%s", exc)
        except Exception as exc:  # S3 down, 5xx, throttling, a full disk: try again later
            self._reachable = False
            if self._last_error is None:
                logger.warning("replica %s: %s (retrying with backoff)", self.location, " ".join(str(exc).split()))
            self._failed(exc)
        else:
            if self._last_error is not None and not self._overflowed:
                logger.info("replica %s: uploading again", self.location)
            self._last_error, self._backoff = None, 0.0

    # --- running ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._thread = threading.Thread(target=self._run, name="replay-replicator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sync()
            except Exception as exc:  # a cut failed (the disk): said in the status, tried again
                self._failed(exc)
                logger.exception("replica %s: a cut failed", self.location)
            # twice an interval: a call waits at most about one interval (half for its cut, half for the upload)
            self._stop.wait(max(0.0, self.interval / 2 - (time.monotonic() - began)))

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread, then a last cut and, if S3 answers within ``timeout``, a last upload.

        Whatever is not uploaded by then stays pending on disk: the next start ships it.
        """
        self._stop.set()
        if not self._started:  # the server never served (its restore failed): nothing of it is shipped
            self._tail.close()
            return
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # stuck in a call to an S3 that does not answer: leave it behind
                logger.warning(
                    "replica %s: S3 did not answer in %.0f s; the next start ships the rest", self.location, timeout
                )
                with self._cut_lock:
                    self.cut(snapshots=False)
                return
            self._thread = None
        self._next_try = 0.0
        while True:
            try:
                self.sync(snapshots=False)
            except Exception as exc:
                self._failed(exc)
            if self._last_error is None or time.monotonic() + self._backoff > deadline:
                break
            time.sleep(self._backoff)
        self._tail.close()
        if self._last_error is None:
            self._release()
        if self._pending_files():
            logger.warning("replica %s: stopped with files not uploaded yet; the next start ships them", self.location)

    def status(self) -> dict[str, object]:
        """What ``/_localstack/health`` says under ``replication``."""
        now = self.clock()
        oldest: float | None = None
        pending = self._pending_files()
        for path in pending:
            segment = SegmentName.parse(path.name)
            if segment is not None:
                oldest = segment.first_ms / 1000 if oldest is None else min(oldest, segment.first_ms / 1000)
            elif oldest is None:
                with contextlib.suppress(FileNotFoundError):
                    oldest = path.stat().st_mtime
        lag = max(0.0, now - oldest) if oldest is not None else 0.0
        if self._lost is not None or self._last_error is not None:
            state = "error"
        elif lag > max(5.0, 3 * self.interval):
            state = "lagging"
        else:
            state = "ok"
        return {
            "state": state,
            "lag_seconds": round(lag, 3),
            "last_upload": self._last_upload,
            "url": str(self.location),
            "generation": self.generation,
            "pending": len(pending),
            "uploaded": self._uploaded,
            "error": self._lost or self._last_error,
        }


def _link(source: Path, destination: Path) -> None:
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError as exc:
        if not source.exists():
            raise FileNotFoundError(str(source)) from exc
        shutil.copyfile(source, destination)
