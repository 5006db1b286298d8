"""Reissuing a recorded log, in order, through a transport.

:class:`Replayer` streams entries from a :class:`~replay.log.LogReader`, sends
each through a :class:`~replay.transport.Transport`, and returns a
:class:`ReplayReport`.  A call that fails on replay (non-2xx status, or an
exception inside an in-process app) is logged with its line number, operation
and status, counted, and the replay goes on; a transport that cannot reach its
target stops the replay with :class:`~replay.errors.TransportError`.

When done it logs, at INFO on ``replay.replayer``::

    Restored N API calls from persistent file: PATH

where N counts the calls that succeeded, followed by the number that failed
and the number that diverged: a call diverged when its replayed response
differs from the recorded one in a way that is neither one of the call's own
times nor a generated id (:mod:`replay.convergence`).  With ``report_path``
the whole :class:`ReplayReport` (failures, divergences with what differed) is
written there as JSON.

Replay never waits on purpose (:mod:`replay.rules`), and every in-process call
runs under a deadline (``call_timeout``): a call that does not finish in time
stops the replay with :class:`~replay.errors.ReplayStalledError`, naming its
log line, rather than hanging the start.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from .convergence import Judge
from .diff import Change, changes
from .entry import Entry, Request, Response
from .errors import ReplayStalledError, TransportError
from .files import atomic_write
from .log import Segment
from .mapping import IdMapping
from .rules import prepare
from .seeding import Seeder
from .timestamps import CallWindow
from .transport import Transport

__all__ = ["CALL_TIMEOUT", "Divergence", "Failure", "Progress", "ReplayReport", "Replayer"]

logger = logging.getLogger("replay.replayer")

_LOGGED_DIVERGENCES = 20  # the rest are in the report only

CALL_TIMEOUT = 60.0
"""Seconds one replayed call may take before the replay stops (``REPLAY_CALL_TIMEOUT``)."""


class _Deadline:
    """Runs calls on a worker thread of its own and gives up on one that takes longer than ``timeout``.

    The replay thread always gets control back: a call stuck inside the app
    (waiting for something that will never come) is abandoned on its daemon
    thread, and the replay stops with an error instead of hanging.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._calls: queue.SimpleQueue[Callable[[], Response] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="replay-call", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        calls, results = self._calls, self._results
        while (call := calls.get()) is not None:
            try:
                results.put((True, call()))
            except BaseException as exc:  # handed back to the replay thread
                results.put((False, exc))

    def run(self, call: Callable[[], Response]) -> Response | None:
        """``call()``'s result (its exception re-raised), or ``None`` when it did not finish in time."""
        self._calls.put(call)
        try:
            done, value = self._results.get(timeout=self.timeout)
        except queue.Empty:
            return None
        if not done:
            raise value
        result: Response = value
        return result

    def close(self) -> None:
        self._calls.put(None)


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
        """Estimated seconds left, from the share of the log consumed."""
        if self.position <= 0 or self.elapsed <= 0:
            return None
        return self.elapsed * (self.size - self.position) / self.position


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
        calls with them (:mod:`replay.mapping`); on by default.
    :param seeder: reissue each entry that kept a ``seed`` inside the random stream
        it was recorded in (in-process transports only; :mod:`replay.seeding`).
    :param report_path: where to write the report (JSON, atomically) when done.
    :param call_timeout: seconds each call may take (``None``: no deadline, the call runs on the
        replay thread itself); a call that takes longer stops the replay with
        :class:`~replay.errors.ReplayStalledError`.
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
    ) -> None:
        self.transport = transport
        self.progress = progress
        self.progress_interval = progress_interval
        self.mapping = mapping
        self.seeder = seeder
        self.report_path = report_path
        self.call_timeout = call_timeout

    def _sender(self, entry: Entry, request: Request) -> Callable[[], Response]:
        send, seeder = self.transport.send, self.seeder
        if seeder is not None and entry.seed is not None:
            seed, clock = entry.seed, entry.time

            def seeded() -> Response:
                with seeder.seeded(seed, clock):
                    return send(request)

            return seeded
        return lambda: send(request)

    def replay(self, path: Path, start: int = 0) -> ReplayReport:
        """Reissue every entry of the log at ``path`` from byte ``start``; a missing file restores nothing."""
        return self.replay_segments([Segment(Path(path), start)])

    def replay_segments(self, segments: Sequence[Segment]) -> ReplayReport:
        """Reissue the entries of ``segments`` in order, as one history (one id mapping, one report).

        The report is named after the last segment (the live log, after a checkpoint's calls).

        :raises ReplayStalledError: a call did not finish within ``call_timeout``.
        """
        deadline = _Deadline(self.call_timeout) if self.call_timeout is not None else None
        try:
            return self._replay(segments, deadline)
        finally:
            if deadline is not None:
                deadline.close()

    def _replay(self, segments: Sequence[Segment], deadline: _Deadline | None) -> ReplayReport:
        report = ReplayReport(path=segments[-1].path)
        readers = [segment.reader() for segment in segments]
        total = sum(max(0, reader.size - reader.start) for reader in readers)
        done = 0
        started = time.perf_counter()
        next_progress = started + self.progress_interval
        mapping = IdMapping() if self.mapping else None
        judge = Judge(mapping)
        reader = readers[0]
        for reader in readers:
            for line, entry in reader:
                request = prepare(entry)
                if mapping is not None:
                    request = mapping.rewrite(request)
                call = self._sender(entry, request)
                try:
                    if deadline is None:
                        response: Response | None = call()
                    elif (response := deadline.run(call)) is None:
                        raise ReplayStalledError(
                            reader.path, line, f"{entry.service}.{entry.operation}", deadline.timeout
                        )
                except (TransportError, ReplayStalledError):
                    raise
                except Exception as exc:  # an in-process app blew up: report it, go on
                    self._fail(reader.path, report, line, entry, None, repr(exc))
                    found = [Change("status", "status", entry.response.status, None)]
                    learn = False
                else:
                    assert response is not None
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
                unexplained = judge.unexplained(found, CallWindow.of(entry.time, entry.waited), learn)
                if unexplained:
                    self._diverge(reader.path, report, Divergence(line, entry.service, entry.operation, unexplained))
                if self.progress is not None and (now := time.perf_counter()) >= next_progress:
                    next_progress = now + self.progress_interval
                    position = done + reader.position - reader.start
                    self.progress(Progress(report.total, position, total, now - started))
            done += max(0, reader.position - reader.start)
        report.torn_line = reader.torn_line
        report.mapped = len(mapping) if mapping is not None else 0
        report.duration = time.perf_counter() - started
        if self.progress is not None:
            self.progress(Progress(report.total, done, total, report.duration))
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
