"""Reissuing a recorded log, in order, through a transport.

:class:`Replayer` streams entries from a :class:`~replay.record.log.LogReader`, sends
each through a :class:`~replay.restore.transport.Transport`, and returns a
:class:`ReplayReport`.  A call that fails on replay (non-2xx status, or an
exception inside an in-process app) is logged with its line number, operation
and status, counted, and the replay goes on; a transport that cannot reach its
target stops the replay with :class:`~replay.errors.TransportError`.

When done it logs, at INFO on ``replay.restore.replayer``::

    Restored N API calls from persistent file: PATH

where N counts the calls that succeeded, followed by the number that failed
and the number that diverged: a call diverged when its replayed response
differs from the recorded one in a way that is neither one of the call's own
times nor a generated id (:mod:`replay.restore.convergence`).  With ``report_path``
the whole :class:`ReplayReport` (failures, divergences with what differed) is
written there as JSON.

Replay never waits on purpose (:mod:`replay.restore.rules`), and every call runs under
a deadline (``call_timeout``): the replay runs on a thread of its own, watched
by the calling thread, and a call that does not finish in time stops the
replay with :class:`~replay.errors.ReplayStalledError`, naming its log line,
rather than hanging the start.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import orjson

from ..errors import ReplayStalledError, TransportError
from ..files import atomic_write
from ..record.entry import Entry
from ..record.reader import Segment
from ..record.seeding import Seeder
from .convergence import Judge
from .diff import Change, changes
from .mapping import IdMapping
from .rules import prepare
from .timestamps import CallWindow
from .transport import Transport

__all__ = ["CALL_TIMEOUT", "Divergence", "Failure", "Progress", "ReplayReport", "Replayer"]

logger = logging.getLogger("replay.replayer")

_LOGGED_DIVERGENCES = 20  # the rest are in the report only
_WATCH_INTERVAL = 0.25  # seconds between looks at a replay running on its own thread

CALL_TIMEOUT = 60.0
"""Seconds one replayed call may take before the replay stops (``REPLAY_CALL_TIMEOUT``)."""


class _Watch:
    """What the replay thread is doing, for the thread that waits for it: the call in hand and since when."""

    __slots__ = ("call", "cancelled", "line", "path", "started")

    def __init__(self) -> None:
        self.started: float | None = None  # time.monotonic() when the call in hand began; None between calls
        self.path = Path()
        self.line = 0
        self.call = ""
        self.cancelled = False  # the waiting thread gave up: stop before the next call

    def begin(self, path: Path, line: int, call: str) -> None:
        if self.cancelled:
            raise ReplayStalledError(path, line, call, 0.0)
        self.path, self.line, self.call = path, line, call
        self.started = time.monotonic()

    def end(self) -> None:
        self.started = None


@dataclasses.dataclass(frozen=True)
class Failure:
    """One call that did not succeed on replay."""

    line: int
    service: str
    operation: str
    status: int | None
    recorded_status: int
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A replayed call whose outcome differs from its recording in ways nothing explains."""

    line: int
    service: str
    operation: str
    changes: list[Change]

    def to_dict(self) -> dict[str, object]:
        return {
            "line": self.line,
            "service": self.service,
            "operation": self.operation,
            "changes": [change.to_dict() for change in self.changes],
        }

    def describe(self, limit: int = 3) -> str:
        shown = "; ".join(f"{c.where}: {c.recorded!r} -> {c.replayed!r}" for c in self.changes[:limit])
        more = len(self.changes) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a running replay is: calls done, bytes of the log consumed, seconds spent."""

    ETA_MIN_CALLS: ClassVar[int] = 3
    """Calls a replay must have done before :attr:`remaining` estimates the time left."""
    ETA_MIN_SECONDS: ClassVar[float] = 0.5
    """Seconds a replay must have run before :attr:`remaining` estimates the time left."""

    calls: int
    position: int
    size: int
    elapsed: float

    @property
    def fraction(self) -> float:
        return self.position / self.size if self.size else 1.0

    @property
    def rate(self) -> float:
        """Calls per second so far."""
        return self.calls / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def remaining(self) -> float | None:
        """Estimated seconds left, from the share of the log consumed, in whole seconds rounded up.

        ``0.0`` once the whole log is consumed, and at least 1 while some of it is left, so that
        ``f"{remaining:.0f} s left"`` never says 0 with work still to do.  ``None`` (no estimate
        rather than a wrong one) while there is too little to go by: no call done yet (a rate of 0),
        fewer than :attr:`ETA_MIN_CALLS` calls, or less than :attr:`ETA_MIN_SECONDS` elapsed.
        """
        if self.position >= self.size:
            return 0.0
        if self.calls < self.ETA_MIN_CALLS or self.elapsed < self.ETA_MIN_SECONDS or self.position <= 0:
            return None
        estimate = self.elapsed * (self.size - self.position) / self.position
        return float(max(1, math.ceil(estimate)))


@dataclasses.dataclass
class ReplayReport:
    """What a replay did."""

    path: Path
    restored: int = 0
    failures: list[Failure] = dataclasses.field(default_factory=list)
    torn_line: int | None = None
    duration: float = 0.0
    mapped: int = 0
    divergences: list[Divergence] = dataclasses.field(default_factory=list)
    learned: IdMapping | None = dataclasses.field(default=None, repr=False, compare=False)
    """The ids that came out differently (``old -> new``), when the replay mapped ids."""

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def diverged(self) -> int:
        return len(self.divergences)

    @property
    def total(self) -> int:
        return self.restored + self.failed

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "restored": self.restored,
            "failed": self.failed,
            "total": self.total,
            "torn_line": self.torn_line,
            "mapped": self.mapped,
            "diverged": self.diverged,
            "duration": round(self.duration, 6),
            "failures": [dataclasses.asdict(failure) for failure in self.failures],
            "divergences": [divergence.to_dict() for divergence in self.divergences],
        }


class Replayer:
    """Replay logs through ``transport``.

    :param transport: where calls are reissued.
    :param progress: called with a :class:`Progress` about every ``progress_interval`` seconds.
    :param mapping: learn generated values that differ on replay and rewrite later
        calls with them (:mod:`replay.restore.mapping`); on by default.
    :param seeder: reissue each entry that kept a ``seed`` inside the random stream
        it was recorded in (in-process transports only; :mod:`replay.record.seeding`).
    :param report_path: where to write the report (JSON, atomically) when done.
    :param announce: log ``Restored N API calls from persistent file: PATH`` when done (a backend that also
        loaded a checkpoint logs its own line, counting both).
    :param call_timeout: seconds each call may take (``None``: no deadline); a call that takes longer
        stops the replay with :class:`~replay.errors.ReplayStalledError`.  With a deadline the replay
        runs on a thread of its own while the calling thread watches it, so that the caller gets
        control back even from a call that never returns (which is left behind on its daemon thread).
    """

    def __init__(
        self,
        transport: Transport,
        progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 1.0,
        mapping: bool = True,
        seeder: Seeder | None = None,
        report_path: Path | None = None,
        call_timeout: float | None = CALL_TIMEOUT,
        announce: bool = True,
    ) -> None:
        self.announce = announce  # log the "Restored N API calls" line (a caller that restored more says its own)
        self.transport = transport
        self.progress = progress
        self.progress_interval = progress_interval
        self.mapping = mapping
        self.seeder = seeder
        self.report_path = report_path
        self.call_timeout = call_timeout

    def replay(self, path: Path, start: int = 0) -> ReplayReport:
        """Reissue every entry of the log at ``path`` from byte ``start``; a missing file restores nothing."""
        return self.replay_segments([Segment(Path(path), start)])

    def replay_segments(self, segments: Sequence[Segment]) -> ReplayReport:
        """Reissue the entries of ``segments`` in order, as one history (one id mapping, one report).

        The report is named after the last segment (the live log, after a checkpoint's calls).

        :raises ReplayStalledError: a call did not finish within ``call_timeout``.
        """
        if self.call_timeout is None:
            return self._replay(segments, None)
        watch = _Watch()
        outcome: list[ReplayReport | BaseException] = []

        def work() -> None:
            try:
                outcome.append(self._replay(segments, watch))
            except BaseException as exc:  # handed to the waiting thread
                outcome.append(exc)

        worker = threading.Thread(target=work, name="replay", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(_WATCH_INTERVAL)
                started = watch.started
                if started is not None and time.monotonic() - started > self.call_timeout:
                    raise ReplayStalledError(watch.path, watch.line, watch.call, self.call_timeout)
        finally:
            watch.cancelled = True  # a replay left behind stops before its next call
        [result] = outcome
        if isinstance(result, BaseException):
            raise result
        return result

    def _replay(self, segments: Sequence[Segment], watch: _Watch | None) -> ReplayReport:
        report = ReplayReport(path=segments[-1].path)
        readers = [segment.reader() for segment in segments]
        total = sum(max(0, reader.size - reader.start) for reader in readers)
        done = 0
        started = time.perf_counter()
        next_progress = started + self.progress_interval
        mapping = IdMapping() if self.mapping else None
        judge = Judge(mapping)
        send, seeder = self.transport.send, self.seeder
        reader = readers[0]
        last_seq = 0
        for reader in readers:
            reader.last_seq = last_seq  # one history: numbers go on rising from one segment to the next
            for line, entry in reader:
                request = prepare(entry)
                if mapping is not None:
                    request = mapping.rewrite(request)
                if watch is not None:
                    watch.begin(reader.path, line, f"{entry.service}.{entry.operation}")
                try:
                    if seeder is not None and entry.seed is not None:
                        with seeder.seeded(entry.seed, entry.time):
                            response = send(request)
                    else:
                        response = send(request)
                except TransportError:
                    raise
                except Exception as exc:  # an in-process app blew up: report it, go on
                    self._fail(reader.path, report, line, entry, None, repr(exc))
                    found = [Change("status", "status", entry.response.status, None)]
                    learn = False
                else:
                    if response.ok:
                        report.restored += 1
                    else:
                        self._fail(
                            reader.path,
                            report,
                            line,
                            entry,
                            response.status,
                            response.body[:200].decode("utf-8", "replace"),
                        )
                    found = changes(entry.response, response)
                    learn = response.ok and entry.response.ok
                if watch is not None:
                    watch.end()
                unexplained = judge.unexplained(found, CallWindow.of(entry.time, entry.waited), learn)
                if unexplained:
                    self._diverge(reader.path, report, Divergence(line, entry.service, entry.operation, unexplained))
                if self.progress is not None and (now := time.perf_counter()) >= next_progress:
                    next_progress = now + self.progress_interval
                    position = done + reader.position - reader.start
                    if position < total:  # the whole log read: the report after the last call says so, once
                        self.progress(Progress(report.total, position, total, now - started))
            done += max(0, reader.position - reader.start)
            last_seq = reader.last_seq
        report.torn_line = reader.torn_line
        report.mapped = len(mapping) if mapping is not None else 0
        report.learned = mapping
        report.duration = time.perf_counter() - started
        if self.progress is not None:
            self.progress(Progress(report.total, done, total, report.duration))
        if self.announce:
            logger.info("Restored %d API calls from persistent file: %s", report.restored, report.path)
        if report.failures:
            logger.warning("%d recorded API calls failed on replay (listed above)", report.failed)
        else:
            logger.info("0 recorded API calls failed on replay")
        if report.mapped:
            logger.info("%d generated ids differed on replay; later calls were rewritten to match", report.mapped)
        where = f" (details in {self.report_path})" if self.report_path is not None else ""
        if report.divergences:
            logger.warning("%d replayed API calls diverged from their recording%s", report.diverged, where)
        else:
            logger.info("0 replayed API calls diverged from their recording")
        if self.report_path is not None:
            atomic_write(self.report_path, orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
        return report

    @staticmethod
    def _diverge(path: Path, report: ReplayReport, divergence: Divergence) -> None:
        report.divergences.append(divergence)
        if report.diverged <= _LOGGED_DIVERGENCES:
            logger.warning(
                "%s:%d: %s.%s diverged on replay: %s",
                path,
                divergence.line,
                divergence.service,
                divergence.operation,
                divergence.describe(),
            )

    @staticmethod
    def _fail(path: Path, report: ReplayReport, line: int, entry: Entry, status: int | None, message: str) -> None:
        failure = Failure(line, entry.service, entry.operation, status, entry.response.status, message)
        report.failures.append(failure)
        logger.warning(
            "%s:%d: %s.%s failed on replay with status %s (recorded %d): %s",
            path,
            line,
            entry.service,
            entry.operation,
            status if status is not None else "error",
            entry.response.status,
            message.strip().replace("\n", " ")[:200],
        )
