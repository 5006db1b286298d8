"""The recording middleware: one line wraps any WSGI app.

::

    app = RecordingMiddleware(app, CallLog(Path("volume/recorded_api_calls.json")))

Each request is classified (:mod:`replay.record.classify`).  Reads pass straight
through, untouched.  For a state-mutating call the response still streams to
the client unchanged, but the last chunk is held back until the call's entry
has been appended to the log: a client that saw a complete 2xx response has a
call on record (on disk, under ``REPLAY_FSYNC=always``).  An app that returns a
``list`` has its whole body in hand already: its entry is written before the
list is handed back, and the list is passed on as it is.  Failed (non-2xx) calls
are not recorded, nor are calls whose app raised while answering.  If the client
goes away before the end, the rest of the response is still drained and the
call recorded, because its effect happened.

With a :class:`~replay.record.writeguard.WriteGuard`, an entry that cannot be written
closes the guard and the call is answered 503 ``ServiceUnavailable`` (when no
byte of its answer has left yet; otherwise the response is broken off), and
while the guard is closed every state-changing call is answered so before it
reaches the app.  Without one, the :class:`~replay.errors.LogWriteError` is
raised to the server.

A successful call the classifier would not keep (``recordable``: an SQS receive
that returned nothing) is still recorded when ``watch`` says it changed state
(a message moved to a dead-letter queue): what decides is the effect, not the
answer (:meth:`replay.adapters.StateAdapter.watch`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import LogWriteError
from ..locks import MutationGate
from .bodies import BodyFile
from .classify import Call, Classifier, DefaultClassifier
from .entry import Request, encode_call
from .redact import redact, redact_answer
from .seeding import Seeder, waited
from .writeguard import WriteGuard, refusal
from .wsgi import SPOOL_DIR_KEY, closing_body, request_from_environ

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["EntrySink", "RecordingMiddleware"]

logger = logging.getLogger("replay.middleware")

_PROBE_LIMIT = 16 << 20  # the most a retry writes to show that room came back
_SEEDS = random.Random()  # seeds for recorded calls; seeded from the OS at import, never hooked


class EntrySink(Protocol):
    """Where encoded entries go: :class:`~replay.record.log.CallLog` is one.

    A sink that also has ``keep_body(body) -> BodyFile`` and ``spool_dir`` (as ``CallLog`` has) keeps
    large request bodies as files beside it (:mod:`replay.record.bodies`); for other sinks they are inlined.
    """

    def append(self, line: bytes) -> None: ...


class RecordingMiddleware:
    """Record every successful state-mutating call that ``app`` answers.

    :param app: the WSGI app to wrap.
    :param log: where entries are appended.
    :param classifier: decides which calls mutate state; :class:`DefaultClassifier` by default.
        If it has a ``recordable(call, status, body)`` method, a successful call is
        recorded only when that returns true.
    :param seeder: if given, each mutating call runs in a random stream seeded with a
        fresh seed that its entry keeps, so that its replay generates the same ids
        (:mod:`replay.record.seeding`).
    :param gate: if given, each mutating call holds it from before the app sees the
        call until its entry is written (or it failed), so that a checkpoint can
        wait for a moment when the app's state and the log agree
        (:class:`~replay.locks.MutationGate`).
    :param watch: if given, asked before each mutating call for a check that tells,
        after it, whether the call changed state (``StateAdapter.watch``); a call the
        classifier would not record is recorded when it did.
    :param guard: refuses state-changing calls while the log cannot be written (see the module docstring).
    """

    def __init__(
        self,
        app: WSGIApplication,
        log: EntrySink,
        classifier: Classifier | None = None,
        seeder: Seeder | None = None,
        gate: MutationGate | None = None,
        watch: Callable[[str, str, Request], Callable[[], bool] | None] | None = None,
        guard: WriteGuard | None = None,
    ) -> None:
        self.app = app
        self.log = log
        self.classifier: Classifier = classifier if classifier is not None else DefaultClassifier()
        self.seeder = seeder
        self.gate = gate
        self.watch = watch
        self.guard = guard
        self.recordable: Callable[[Call, int, bytes], bool] = getattr(self.classifier, "recordable", _always_recordable)
        self.spool_dir: Path | None = getattr(log, "spool_dir", None)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return closing_body(environ, self._handle(environ, start_response))

    def _handle(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.spool_dir is not None and SPOOL_DIR_KEY not in environ:
            environ[SPOOL_DIR_KEY] = self.spool_dir
        request = request_from_environ(environ)
        call = self.classifier(request)
        if not call.mutating:
            return self.app(environ, start_response)
        guard = self.guard
        if guard is not None and not guard.ok:
            status, headers, body = refusal(guard, call, "x-amz-target" in request.index)
            start_response(status, headers)
            return [body]
        recording = _Recording(self.log, request, call, start_response, self.recordable, guard)
        if self.gate is not None:
            self.gate.enter()
            recording.gate = self.gate
        try:
            if self.watch is not None:
                recording.changed = self.watch(call.service, call.operation, request)
            if self.seeder is None:
                iterable = self.app(environ, recording.start_response)
            else:
                recording.seed = seed = _SEEDS.getrandbits(63)
                with self.seeder.seeded(seed, recording.started):
                    iterable = self.app(environ, recording.start_response)
                    recording.waited = waited()
        except BaseException:
            recording.release()
            raise
        if type(iterable) is list and recording.status:
            # a complete body in hand: record now, before any byte of it can leave
            recording.body.extend(iterable)
            try:
                recording.finish()
            except LogWriteError:
                if guard is None:
                    raise
                return [recording.refuse()]
            recording.begin()
            return iterable
        recording.iterable = iterable
        return recording


def _always_recordable(call: Call, status: int, body: bytes) -> bool:
    return True


class _Recording:
    """The response iterable of one mutating call; appends its entry before the last chunk."""

    __slots__ = (
        "body",
        "call",
        "changed",
        "done",
        "gate",
        "guard",
        "headers",
        "iterable",
        "iterator",
        "log",
        "pending",
        "recordable",
        "request",
        "seed",
        "started",
        "status",
        "upstream",
        "waited",
        "write_upstream",
    )

    def __init__(
        self,
        log: EntrySink,
        request: Request,
        call: Call,
        upstream: StartResponse,
        recordable: Callable[[Call, int, bytes], bool],
        guard: WriteGuard | None = None,
    ) -> None:
        self.log = log
        self.guard = guard
        self.recordable = recordable
        self.request = request
        self.call = call
        self.upstream = upstream
        self.started = time.time()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.iterable: Iterable[bytes] = ()
        self.iterator: Iterator[bytes] | None = None
        self.write_upstream: Callable[[bytes], object] | None = None
        self.pending: tuple[str, list[tuple[str, str]]] | None = None  # status and headers not passed on yet
        self.seed: int | None = None
        self.waited = 0.0
        self.done = False
        self.gate: MutationGate | None = None
        self.changed: Callable[[], bool] | None = None

    def release(self) -> None:
        """Leave the gate (once): the call's entry is written, or it will not be."""
        gate = self.gate
        if gate is not None:
            self.gate = None
            gate.leave()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        """Kept until the first byte of the answer leaves (:meth:`begin`), so that a call whose entry
        cannot be written can still be answered 503 instead; an app's error answer goes through at once."""
        self.status = int(status[:3])
        self.headers = headers
        if exc_info is not None:
            self.pending = None
            self.write_upstream = self.upstream(status, headers, exc_info)
        else:
            self.pending = (status, headers)
        return self.write

    def begin(self) -> None:
        """Pass the kept status and headers on (once): the answer starts leaving."""
        pending = self.pending
        if pending is not None:
            self.pending = None
            self.write_upstream = self.upstream(*pending)

    def write(self, data: bytes) -> object:
        """The legacy ``write()`` callable: passed through, and kept for the entry."""
        self.body.append(data)
        self.begin()
        assert self.write_upstream is not None
        return self.write_upstream(data)

    def __iter__(self) -> Iterator[bytes]:
        self.iterator = iterator = iter(self.iterable)
        body = self.body
        held: bytes | None = None
        sent = False
        try:
            for chunk in iterator:
                if not chunk:
                    continue
                body.append(chunk)
                if held is not None:
                    sent = True
                    self.begin()
                    yield held
                held = chunk
        except Exception:
            self.done = True  # the app failed mid-response: the client is not told it succeeded
            self.release()
            raise
        try:
            self.finish()
        except LogWriteError:
            if self.guard is None or sent:  # part of the answer has left: only breaking it off is honest
                raise
            yield self.refuse()
            return
        self.begin()
        if held is not None:
            yield held

    def refuse(self) -> bytes:
        """Answer 503 as the guard says instead of the app's answer (none of it has left); the body."""
        assert self.guard is not None
        status, headers, body = refusal(self.guard, self.call, "x-amz-target" in self.request.index)
        self.pending = None
        self.upstream(status, headers)
        return body

    def finish(self) -> None:
        """Append the entry (once) if the call succeeded."""
        if self.done:
            return
        self.done = True
        try:
            self._append()
        finally:
            self.release()

    def _append(self) -> None:
        if not 200 <= self.status < 300:
            return
        call = self.call
        body = b"".join(self.body)
        if not self.recordable(call, self.status, body) and not (self.changed is not None and self.changed()):
            return
        request = redact(self.request)
        spooled = request.file
        if spooled is not None:
            keep_body: Callable[[BodyFile], BodyFile] | None = getattr(self.log, "keep_body", None)
            if keep_body is not None:
                try:
                    request = request.replace(body=keep_body(spooled))
                except LogWriteError as exc:
                    self._failed(exc, min(spooled.size, _PROBE_LIMIT))
                    raise
        line = encode_call(
            self.started,
            call.service,
            call.operation,
            request,
            self.status,
            self.headers,
            redact_answer(body),
            self.seed,
            self.waited,
        )
        try:
            self.log.append(line)
        except LogWriteError as exc:
            self._failed(exc, len(line))
            raise

    def _failed(self, exc: LogWriteError, size: int) -> None:
        """The entry (or its body, ``size`` bytes) could not be written: say so, close the guard."""
        call = self.call
        if self.guard is None:
            logger.error("could not record %s.%s; the call is not acknowledged: %s", call.service, call.operation, exc)
        else:
            probe = getattr(self.log, "probe", None)
            self.guard.failed(str(exc), retry=(lambda: probe(size)) if probe is not None else (lambda: None))

    def close(self) -> None:
        try:
            if not self.done and 200 <= self.status < 300:
                # the client left early: the call still took effect, so record it
                if self.iterator is None:
                    self.iterator = iter(self.iterable)
                for chunk in self.iterator:
                    self.body.append(chunk)
                self.finish()
        finally:
            self.release()
            close = getattr(self.iterable, "close", None)
            if close is not None:
                close()
