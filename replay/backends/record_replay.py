"""The ``replay`` backend: record mutating calls, replay them on start, fold them into checkpoints.

Without a state adapter every start replays the whole log, which is compacted
in place (:func:`~replay.storage.rewrite.compact_in_place`) whenever it has grown by
``percentage`` since its last compaction and is at least ``min_size`` bytes
(Redis's rule for its append-only file).  With one (moto's),
the log is folded into a checkpoint (:mod:`replay.storage.checkpoint`) whenever the
calls logged since the last one reach ``percentage`` of its size and at least
``min_size`` bytes (Redis's ``auto-aof-rewrite-percentage`` and ``-min-size``),
on ``POST /_localstack/state/save``, and when the server stops; a start then
loads the checkpoint and replays only the calls since.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters import StateAdapter
from ..config import REPORT_FILE_NAME, FsyncPolicy
from ..errors import CheckpointError, QuiesceTimeoutError
from ..locks import MutationGate
from ..record.classify import Classifier
from ..record.log import CallLog
from ..record.middleware import RecordingMiddleware
from ..record.seeding import Seeder
from ..record.writeguard import WriteGuard
from ..restore.lazyload import PendingState
from ..restore.livemap import LiveIdMapping
from ..restore.replayer import CALL_TIMEOUT, Progress, Replayer, ReplayReport
from ..restore.transport import WSGITransport
from ..share.archive import stage_calls
from ..share.sources import SourceKind, check_backend
from ..storage.bgsave import describe as describe_saves
from ..storage.checkpoint import (
    MANIFEST_NAME,
    Checkpoint,
    Manifest,
    check_snapshots,
    checkpoints_dir,
    finish_interrupted,
    history,
    load_snapshots,
    read_manifest,
    remove_stale,
    tail_start,
)
from ..storage.checkpointer import Checkpointer, CheckpointResult
from ..storage.rewrite import compact_in_place
from ..storage.snapshot import load_key

logger = logging.getLogger("replay.replayer")

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["CheckpointPolicy", "RecordReplayBackend"]


class CheckpointPolicy:
    """When checkpoints are taken (or, without a state adapter, the log compacted) automatically.

    :param percentage: the calls logged since the last checkpoint must reach this
        share of its size (without an adapter: the log must have grown by this share
        since its last compaction); 0: never automatically;
    :param min_size: ... and be at least this many bytes;
    :param interval: seconds between looks at the log's size.
    """

    def __init__(self, percentage: int = 100, min_size: int = 1024**2, interval: float = 1.0) -> None:
        self.percentage = percentage
        self.min_size = min_size
        self.interval = interval

    def threshold(self, manifest: Manifest | None) -> int:
        """Bytes of calls since ``manifest``'s checkpoint that make the next one due."""
        base = manifest.size if manifest is not None else 0
        return max(self.min_size, base * self.percentage // 100)


class RecordReplayBackend:
    """Replay ``log_path`` into ``app`` in-process, then record around it.

    :param app: the emulator; replayed calls go to it directly and are not recorded again.
    :param log_path: ``<data dir>/recorded_api_calls.json``.
    :param fsync: the log's fsync policy.
    :param classifier: which calls are recorded.
    :param seeder: per-call seeding of the emulator's randomness, so replayed calls generate the same ids.
    :param adapter: reaches the emulator's state; with one, the log is folded into checkpoints.
    :param policy: when checkpoints are taken automatically.
    :param reset: empties the emulator (used when a checkpoint's snapshots fail half-way through loading).
    :param step: passed to the :class:`~replay.storage.checkpointer.Checkpointer` (tests stop the process there).
    :param call_timeout: seconds one replayed call may take before the restore stops.
    :param lazy: load the checkpoint's snapshots per service on first use (:mod:`replay.restore.lazyload`),
        not at start.
    :param exclusive: this process holds the data dir's :class:`~replay.storage.datadir.DataDirLock`, so the log
        has one writer (:class:`~replay.record.log.CallLog`'s ``exclusive``: no ``flock`` per append).
    :param before_fold: called before a checkpoint folds calls out of the log (the replicator ships them first).
    """

    def __init__(
        self,
        app: WSGIApplication,
        log_path: Path,
        fsync: FsyncPolicy = FsyncPolicy.EVERYSEC,
        classifier: Classifier | None = None,
        seeder: Seeder | None = None,
        adapter: StateAdapter | None = None,
        policy: CheckpointPolicy | None = None,
        reset: Callable[[], None] | None = None,
        step: Callable[[str], None] | None = None,
        call_timeout: float = CALL_TIMEOUT,
        exclusive: bool = False,
        lazy: bool = True,
        before_fold: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.lazy = lazy
        self.pending: PendingState | None = None
        self.call_timeout = call_timeout
        self.exclusive = exclusive
        self.before_fold = before_fold
        self.seeder = seeder
        self.log_path = Path(log_path)
        self.data_dir = self.log_path.parent
        self.report_path = self.log_path.with_name(REPORT_FILE_NAME)
        self.fsync = fsync
        self.classifier = classifier
        self.adapter = adapter
        self.policy = policy if policy is not None else CheckpointPolicy()
        self.reset = reset
        self.step = step
        self.report: ReplayReport | None = None
        self.log: CallLog | None = None
        self.progress: Progress | None = None
        self.progress_interval = 2.0
        self.gate = MutationGate() if adapter is not None else None
        self.checkpointer: Checkpointer | None = None
        self.loaded: dict[str, object] | None = None
        self.last_checkpoint: CheckpointResult | None = None
        self._stop = threading.Event()
        self._trigger: threading.Thread | None = None
        self._compacted_size = 0  # without an adapter: the log's size after its last compaction
        self._folding = threading.RLock()  # one checkpoint, compaction or export at a time
        self.guard = WriteGuard(self.data_dir)  # closed while the log or a checkpoint cannot be written

    @property
    def persistence(self) -> str:
        if not self.guard.ok:
            return "error"
        return "initialized" if self.report is not None else "initializing"

    def _served(self) -> WSGIApplication:
        """The emulator, loading pending saved state before the calls that need it."""
        return self.pending.wrap(self.app, self.classifier) if self.pending is not None else self.app

    def _replayer(self, report_path: Path | None) -> Replayer:
        return Replayer(
            WSGITransport(self._served()),
            progress=self._progressed,
            progress_interval=self.progress_interval,
            seeder=self.seeder,
            report_path=report_path,
            call_timeout=self.call_timeout,
            announce=False,  # restore() says what came back, the checkpoint's calls counted in
        )

    def restore(self) -> None:
        """Load the checkpoint if there is one, replay the calls since (raising before anything
        is changed on a corrupt log or a log that does not fit the checkpoint), then open the log."""
        started = time.perf_counter()
        check_backend(self.data_dir, SourceKind.REPLAY)
        manifest = read_manifest(self.data_dir)
        start = tail_start(manifest, self.log_path)
        if manifest is not None:
            self._load_checkpoint(manifest)
        try:
            report = self._replayer(self.report_path).replay(self.log_path, start)
        except BaseException:
            self._drop_pending()  # nothing of this start may load into the emulator later
            raise
        from_checkpoint = manifest.folded if manifest is not None else 0
        logger.info("Restored %d API calls from persistent file: %s", from_checkpoint + report.restored, self.log_path)
        if manifest is not None:
            if self.loaded is not None and self.loaded.get("from") == "calls":
                how = "its calls replayed"
            elif self.pending is not None:
                how = "its snapshots; each service loads on first use"
            else:
                how = "its snapshots"
            logger.info(
                "  %d from checkpoint %s (%s), %d replayed from the log since it",
                from_checkpoint,
                manifest.checkpoint,
                how,
                report.restored,
            )
        logger.info(
            "state restored in %.2f s: %s%d calls replayed (%.0f calls/s)",
            time.perf_counter() - started,
            f"checkpoint {manifest.checkpoint} loaded, " if manifest is not None else "",
            report.total,
            report.total / report.duration if report.duration > 0 else 0.0,
        )
        self.report = report
        self.log = CallLog(
            self.log_path,
            self.fsync,
            header=manifest.checkpoint if manifest is not None else None,
            on_failure=self._log_failed,
            exclusive=self.exclusive,
        )
        start = finish_interrupted(self.log, manifest, start)
        removed = remove_stale(self.data_dir, manifest)
        if removed:
            logger.info("removed checkpoint directories left by an interrupted checkpoint: %s", ", ".join(removed))
        if self.adapter is not None and self.gate is not None:
            self.checkpointer = Checkpointer(
                self.data_dir,
                self.adapter,
                self.log,
                self.gate,
                lambda: load_key(self.data_dir / "state"),
                manifest,
                start,
                step=self.step,
                pending=self.pending.services if self.pending is not None else frozenset,
                moved=self._moved,
                before_fold=self.before_fold,
            )
            logger.info("checkpoints: %s", describe_saves(self.checkpointer.bgsave))
        self._compacted_size = self.log.size()
        if self.policy.percentage > 0:
            self._trigger = threading.Thread(target=self._watch, name="replay-compaction", daemon=True)
            self._trigger.start()

    def _load_checkpoint(self, manifest: Manifest) -> None:
        checkpoint = Checkpoint(self.data_dir, manifest.checkpoint)
        if not checkpoint.directory.is_dir():  # the calls folded into it are nowhere else: never start without them
            raise CheckpointError(
                checkpoint.directory,
                f"checkpoint {manifest.checkpoint}, named by {checkpoints_dir(self.data_dir) / MANIFEST_NAME}, "
                "is missing, and with it the history folded into it: restore that directory from a backup "
                "(nothing was changed or started)",
            )
        started = time.perf_counter()
        how = "snapshots"
        try:
            if self.adapter is None:
                raise CheckpointError(checkpoint.directory, "this emulator has no state adapter to load snapshots with")
            key = load_key(self.data_dir / "state")
            if self.lazy:
                saved = check_snapshots(self.data_dir, manifest, self.adapter, key)
                self.pending = PendingState(self.adapter, saved, key, f"checkpoint {manifest.checkpoint}")
            else:
                load_snapshots(self.data_dir, manifest, self.adapter, key)
        except Exception as exc:  # refused, another emulator version, or failed to unpickle
            self._drop_pending()
            if self.reset is not None:
                self.reset()  # some services may be loaded already: start from empty again
            how = "calls"
            if not checkpoint.base_log.is_file():
                raise CheckpointError(
                    checkpoint.directory,
                    f"checkpoint {manifest.checkpoint} cannot be loaded ({exc}) and its calls "
                    f"({checkpoint.base_log.name}) are missing: restore that directory from a backup "
                    "(nothing was changed or started)",
                ) from None
            logger.warning(
                "checkpoint %s: %s; replaying its %d calls from %s instead",
                manifest.checkpoint,
                exc,
                manifest.calls,
                checkpoint.base_log,
            )
            base = self._replayer(None).replay(checkpoint.base_log)
            if base.failures:
                logger.warning("%d calls of checkpoint %s failed on replay", base.failed, manifest.checkpoint)
        elapsed = time.perf_counter() - started
        self.loaded = {
            "checkpoint": manifest.checkpoint,
            "from": how,
            "services": len(manifest.services),
            "calls": manifest.calls,
            "folded": manifest.folded,
            "seconds": round(elapsed, 6),
        }
        logger.info(
            "Loaded checkpoint %s (%d services, %d calls of history) from its %s in %.0f ms%s",
            manifest.checkpoint,
            len(manifest.services),
            manifest.folded,
            how,
            elapsed * 1000,
            " (checked; each service is loaded when first used)" if self.pending is not None else "",
        )

    def failed_services(self) -> list[str]:
        """The checkpoint's services whose files were refused when first used (calls to them answer 500)."""
        return sorted(self.pending.failed) if self.pending is not None else []

    def _drop_pending(self) -> None:
        if self.pending is not None:
            self.pending.drop()
            self.pending = None

    def _moved(self, checkpoint: Checkpoint) -> None:
        """A new checkpoint is current: what is still pending is loaded from its files from now on."""
        if self.pending is not None:
            services = self.pending.services()
            self.pending.moved({s: checkpoint.saved(s) for s in services}, f"checkpoint {checkpoint.name}")

    def _progressed(self, progress: Progress) -> None:
        """Seen by the health endpoint while restoring; logged for the terminal on long restores."""
        self.progress = progress
        if progress.position < progress.size:
            remaining = progress.remaining
            logger.info(
                "restoring %s: %d calls replayed, %.0f%% of the log, %.0f calls/s%s",
                self.log_path,
                progress.calls,
                progress.fraction * 100,
                progress.rate,
                f", about {remaining:.0f} s left" if remaining is not None else "",
            )

    def checkpoint(self) -> CheckpointResult:
        """Fold the log into a checkpoint now.

        :raises CheckpointError: this emulator has no state adapter.
        :raises QuiesceTimeoutError: state-changing calls stayed in flight.
        """
        if self.checkpointer is None:
            raise CheckpointError(self.log_path, "checkpoints need an emulator with a state adapter (moto)")
        with self._folding:
            result = self.checkpointer.checkpoint()
        self.last_checkpoint = result
        return result

    def compact(self) -> dict[str, object]:
        """With a state adapter, a checkpoint; without, the log compacted in place (while appends go on)."""
        if self.checkpointer is not None:
            return {"kind": "checkpoint", **self.checkpoint().to_dict()}
        if self.log is None:
            raise CheckpointError(self.log_path, "the log is not open yet")
        with self._folding:
            report = compact_in_place(self.log)
            self._compacted_size = self.log.size()
        logger.info(
            "compacted %s: %d calls kept of %d, %d bytes of %d, in %.2f s",
            self.log_path,
            report.kept,
            report.read,
            report.bytes_after,
            report.bytes_before,
            report.duration,
        )
        return {"kind": "log", **report.to_dict()}

    def export(self, staging: Path) -> dict[str, Any]:
        """The calls that rebuild the current state, compacted, as ``staging/calls.json``.

        No checkpoint or compaction runs meanwhile, so the checkpoint read and the log's
        calls since fit together; calls recorded meanwhile are left for the next export.
        """
        if self.log is None:
            raise CheckpointError(self.log_path, "the log is not open yet")
        with self._folding:
            segments = history(self.log_path)
            segments[-1] = dataclasses.replace(segments[-1], end=self.log.size())
            calls = stage_calls(segments, staging)
        emulator = self.adapter.meta() if self.adapter is not None else {}
        return {"kind": "replay", "calls": calls, "emulator": emulator}

    def _due(self) -> bool:
        """Has the log grown past the trigger since the last checkpoint (or compaction)?"""
        if self.checkpointer is not None:
            return self.checkpointer.tail_bytes >= self.policy.threshold(self.checkpointer.manifest)
        assert self.log is not None
        size = self.log.size()  # without an adapter, Redis's own rule: growth since the last rewrite
        grown = size - self._compacted_size
        return size >= self.policy.min_size and grown >= self._compacted_size * self.policy.percentage // 100

    def _watch(self) -> None:
        while not self._stop.wait(self.policy.interval):
            if not self._due():
                continue
            try:
                self.compact()
            except QuiesceTimeoutError as exc:
                logger.warning("checkpoint postponed: %s", exc)
            except Exception as exc:  # a full or failing disk: refuse state changes until a checkpoint works
                self._checkpoint_failed(exc)
                self._stop.wait(30.0)

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        if self.log is None:
            raise RuntimeError("restore() must run before wrap()")
        watch = self.adapter.watch if self.adapter is not None else None
        learned = self.report.learned if self.report is not None else None
        if learned:  # ids the restore could not make again: clients keep using the ones they know
            app = LiveIdMapping(app, learned)
            logger.info(
                "%d generated ids came out differently on restore: requests naming the old ones reach the emulator "
                "with the new ones, and answers show the old ones",
                len(learned),
            )
        if self.pending is not None:
            app = self.pending.wrap(app, self.classifier)
        return RecordingMiddleware(app, self.log, self.classifier, self.seeder, self.gate, watch, self.guard)

    def _log_failed(self, cause: str) -> None:
        log = self.log
        self.guard.failed(cause, retry=log.probe if log is not None else lambda: None)

    def _checkpoint_failed(self, exc: Exception) -> None:
        """A checkpoint (or compaction) could not be written: refuse state changes until one is (Redis's MISCONF)."""
        cause = f"checkpoint failed: {' '.join(str(exc).split())}"
        self.guard.failed(cause, retry=self.compact, backoff=2.0)

    def status(self) -> dict[str, object]:
        if self.report is None:
            restoring: dict[str, object] = {"backend": "replay", "log": str(self.log_path)}
            if self.progress is not None:
                restoring["progress"] = {
                    "calls": self.progress.calls,
                    "fraction": round(self.progress.fraction, 4),
                    "rate": round(self.progress.rate, 1),
                    "seconds_left": None if self.progress.remaining is None else round(self.progress.remaining, 1),
                }
            return restoring
        status: dict[str, object] = {
            "backend": "replay",
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
            "restored": self.report.restored,
            "failed": self.report.failed,
            "diverged": self.report.diverged,
            "report": str(self.report_path),
        }
        if self.loaded is not None:
            status["loaded"] = self.loaded
            if self.pending is not None:  # as it is now: services load as they are first used
                status["loaded"] = {**self.loaded, "pending": sorted(self.pending.services())}
        if self.checkpointer is not None:
            manifest = self.checkpointer.manifest
            status["checkpoint"] = {
                "current": manifest.checkpoint if manifest is not None else None,
                "log_bytes_since": self.checkpointer.tail_bytes,
                "next_at_bytes": self.policy.threshold(manifest) if self.policy.percentage > 0 else None,
                "last": self.last_checkpoint.to_dict() if self.last_checkpoint is not None else None,
                "saves": self.checkpointer.bgsave.value,  # fork, or inline (replay.storage.bgsave)
            }
        error = self.guard.status()
        if error is not None:
            status["error"] = error
        return status

    def save(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        """With a state adapter: take a checkpoint.  Without: the log is the state, so sync it."""
        if self.checkpointer is not None:
            try:
                result = self.checkpoint()
            except Exception as exc:
                if not isinstance(exc, QuiesceTimeoutError):
                    self._checkpoint_failed(exc)
                for service in services or ["*"]:
                    yield {"service": service, "status": "error", "message": f"checkpoint failed: {exc}"}
                return
            for service in services or result.services or ["*"]:
                yield {"service": service, "status": "ok"}
            return
        if self.log is not None:
            self.log.sync()
        for service in services or ["*"]:
            yield {"service": service, "status": "ok"}

    def load(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        message = "the replay backend restores by replaying its call log at start-up (restart, or `replay restore`)"
        for service in services or ["*"]:
            yield {"service": service, "status": "error", "message": message}

    def close(self, checkpoint: bool = True) -> None:
        """Stop taking checkpoints and close the log.

        Services of the checkpoint not loaded yet (:mod:`replay.restore.lazyload`) are not loaded into the emulator
        after this: what they hold is in the checkpoint, for the next start.

        With automatic checkpoints on (and ``checkpoint``), the calls logged since the last
        checkpoint are folded into a new one first, as Redis saves on ``SHUTDOWN``: the next
        start then only loads it.  If that fails the log still holds every call.
        """
        self._stop.set()
        if self._trigger is not None:
            self._trigger.join()
        checkpointer = self.checkpointer
        if checkpoint and checkpointer is not None and self.policy.percentage > 0 and checkpointer.tail_bytes > 0:
            try:
                self.checkpoint()
            except Exception as exc:
                logger.warning("could not take a checkpoint at shutdown (the log holds every call): %s", exc)
        self.guard.stop()
        self._drop_pending()  # saved, and folded into the checkpoint above: never loaded after this backend
        if self.log is not None:
            self.log.close()
