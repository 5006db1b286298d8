"""The ``replay`` backend: record mutating calls, replay them on start."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..classify import Classifier
from ..config import REPORT_FILE_NAME, FsyncPolicy
from ..log import CallLog
from ..middleware import RecordingMiddleware
from ..replayer import Progress, Replayer, ReplayReport
from ..seeding import Seeder
from ..transport import WSGITransport

logger = logging.getLogger("replay.replayer")

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["RecordReplayBackend"]


class RecordReplayBackend:
    """Replay ``log_path`` into ``app`` in-process, then record around it.

    :param app: the emulator; replayed calls go to it directly and are not recorded again.
    :param log_path: ``<data dir>/recorded_api_calls.json``.
    :param fsync: the log's fsync policy.
    :param classifier: which calls are recorded.
    :param seeder: per-call seeding of the emulator's randomness, so replayed calls generate the same ids.
    """

    def __init__(
        self,
        app: WSGIApplication,
        log_path: Path,
        fsync: FsyncPolicy = FsyncPolicy.EVERYSEC,
        classifier: Classifier | None = None,
        seeder: Seeder | None = None,
    ) -> None:
        self.app = app
        self.seeder = seeder
        self.log_path = Path(log_path)
        self.report_path = self.log_path.with_name(REPORT_FILE_NAME)
        self.fsync = fsync
        self.classifier = classifier
        self.report: ReplayReport | None = None
        self.log: CallLog | None = None
        self.progress: Progress | None = None
        self.progress_interval = 2.0

    @property
    def persistence(self) -> str:
        return "initialized" if self.report is not None else "initializing"

    def restore(self) -> None:
        """Replay the whole log (raising on a corrupt one before anything is written), then open it."""
        replayer = Replayer(
            WSGITransport(self.app),
            progress=self._progressed,
            progress_interval=self.progress_interval,
            seeder=self.seeder,
            report_path=self.report_path,
        )
        self.report = replayer.replay(self.log_path)
        self.log = CallLog(self.log_path, self.fsync)

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

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        if self.log is None:
            raise RuntimeError("restore() must run before wrap()")
        return RecordingMiddleware(app, self.log, self.classifier, self.seeder)

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
        return {
            "backend": "replay",
            "log": str(self.log_path),
            "restored": self.report.restored,
            "failed": self.report.failed,
            "diverged": self.report.diverged,
            "report": str(self.report_path),
        }

    def save(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        """The log is the state: saving means syncing it."""
        if self.log is not None:
            self.log.sync()
        for service in services or ["*"]:
            yield {"service": service, "status": "ok"}

    def load(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        message = "the replay backend restores by replaying its call log at start-up (restart, or `replay restore`)"
        for service in services or ["*"]:
            yield {"service": service, "status": "error", "message": message}

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
