"""The ``replay`` backend: record mutating calls, replay them on start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..classify import Classifier
from ..config import REPORT_FILE_NAME, FsyncPolicy
from ..log import CallLog
from ..middleware import RecordingMiddleware
from ..replayer import Replayer, ReplayReport
from ..seeding import Seeder
from ..transport import WSGITransport

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

    @property
    def persistence(self) -> str:
        return "initialized" if self.report is not None else "initializing"

    def restore(self) -> None:
        """Replay the whole log (raising on a corrupt one before anything is written), then open it."""
        replayer = Replayer(WSGITransport(self.app), seeder=self.seeder, report_path=self.report_path)
        self.report = replayer.replay(self.log_path)
        self.log = CallLog(self.log_path, self.fsync)

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        if self.log is None:
            raise RuntimeError("restore() must run before wrap()")
        return RecordingMiddleware(app, self.log, self.classifier, self.seeder)

    def status(self) -> dict[str, object]:
        if self.report is None:
            return {"backend": "replay", "log": str(self.log_path)}
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
