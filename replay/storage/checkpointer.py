"""Taking a checkpoint: what a running server does to fold its log into saved state, step by step.

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
:func:`~replay.storage.checkpoint.tail_start` finds the calls since the checkpoint whichever log the
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

from ..adapters import StateAdapter
from ..files import atomic_write, ensure_private_dir, fsync_dir
from ..locks import MutationGate
from ..record.bodies import BODIES_DIR, CHECKPOINT_FILE_THRESHOLD, is_digest, named_in
from ..record.log import CallLog, last_seq, read_header
from ..record.reader import Segment
from .bgsave import mode as bgsave_mode
from .bgsave import run_save
from .checkpoint import (
    Checkpoint,
    Manifest,
    checkpoints_dir,
    remove_stale,
    write_manifest,
)
from .rewrite import RewriteReport, compact_logs
from .snapshot import write_snapshot

__all__ = ["STEPS", "CheckpointResult", "Checkpointer"]

logger = logging.getLogger("replay.checkpoint")

STEPS = ("captured", "snapshots", "base", "manifest", "log", "cleaned")
_DUMP_ATTEMPTS = 3


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
    :param before_fold: called just before the manifest names a new checkpoint, while the log still holds
        every call folded into it (the replicator ships them: :mod:`replay.share.replicator`).
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
        before_fold: Callable[[], None] | None = None,
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
        self.before_fold = before_fold
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
            captured["through"] = last_seq(self.log.path)
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
            through=captured["through"],
        )
        if self.before_fold is not None:
            try:
                self.before_fold()
            except Exception:  # the checkpoint goes on: the replica starts a new generation from it if it must
                logger.exception("could not ship the calls a checkpoint folds before it")
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
