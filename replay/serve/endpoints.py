"""Control endpoints under ``/_localstack/`` and ``/_replay/``, and the start-up gate.

LocalStack's, as its REST API documents them:

* ``GET|HEAD /_localstack/health``: services, edition, version and features (:mod:`replay.serve.health`);
  503 while the state is being restored.  ``POST`` takes ``{"action": "kill"}`` (the server stops as on
  SIGTERM) or ``{"action": "restart"}`` (the emulator is emptied and restored again from its persisted
  state, in-process); any other body is a 400 with a JSON error, other methods 405.
* ``GET /_localstack/info``: LocalStack's ``SessionInfo``, its keys and no others.
* ``GET /_localstack/init`` and ``/_localstack/init/<stage>``: the init scripts and their states
  (:mod:`replay.serve.hooks`); 404 for an unknown stage.
* ``POST /_localstack/state/save`` and ``/load`` (all services), ``POST /_localstack/state/<service>/save``,
  ``/load`` and ``/reset`` (one; an unknown service is a 404) stream one JSON line per service as it is
  done, ``{"service": "sqs", "status": "ok"}`` or ``{"service": ..., "status": "error", "message": ...}``
  (reset answers one JSON object).  ``POST /_localstack/state/reset`` empties the emulator.  Both resets go
  through the persisted app, so they are recorded and a restart agrees.  Any other method on a
  ``/_localstack/state`` path is a 405.

replay's own: ``POST /_replay/compact`` makes the next start cheaper now (a checkpoint, or a compacted
log: the backend's :meth:`~replay.backends.Backend.compact`); ``POST /_replay/export`` answers with an
archive of the current state (:mod:`replay.share.archive`, ``application/gzip``); ``GET /_replay/info``
says what this server persists and how (backend, data dir, checkpoint, last restore).

:class:`ControlEndpoints` answers the health check itself and hands every other request to the app it
wraps, but only once :meth:`~ControlEndpoints.open` has been called: until the restore has finished,
requests wait (they are held, not refused).  Control calls other than the health check are refused
(403) from other sites and foreign ``Host`` names (:mod:`replay.serve.crosssite`).
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from werkzeug.wsgi import ClosingIterator

from ..backends import Backend
from ..errors import ReplayError, RequestError
from ..record.bodies import BodyFile
from ..record.entry import Request, Response
from ..record.writeguard import unavailable
from ..record.wsgi import DEFAULT_MAX_BODY, MAX_BODY_KEY, SPOOL_DIR_KEY, content_length, request_from_environ
from ..restore.transport import WSGITransport
from ..routes import (
    COMPACT_PATH,
    CONTROL_ROOTS,
    EXPORT_PATH,
    HEALTH_PATH,
    INFO_PATH,
    INIT_PATH,
    REPLAY_INFO_PATH,
    STATE_PATH,
    STATE_PREFIX,
)
from ..share.archive import write_archive
from .crosssite import ControlAccess
from .health import EDITION, SessionFacts, service_states
from .hooks import InitHooks, Stage

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["COMPACT_PATH", "EXPORT_PATH", "HEALTH_PATH", "STATE_PREFIX", "ControlEndpoints"]

_EXPORT_CHUNK = 1 << 20
_RESERVED = CONTROL_ROOTS
_RESERVED_PREFIXES = tuple(f"{root}/" for root in CONTROL_ROOTS)

logger = logging.getLogger("replay.endpoints")


class ControlEndpoints:
    """The control endpoints and the start-up gate around the persisted app.

    :param backend: whose state the health endpoint reports (replaced by a restart: :attr:`backend`).
    :param services: returns the emulator's service names (its adapter's), for ``"services"``.
    :param version: reported as ``"version"``.
    :param known: whether a service name in a state path is one the emulator has (else 404).
    :param reset_path: the emulator's own reset, sent through the persisted app by ``/_localstack/state/reset``.
    :param access: refuses control requests from other sites and foreign hosts (403); none: no check.
    :param max_body: the largest request body taken (``REPLAY_MAX_BODY_SIZE``); a larger one is answered 413.
    :param spool_dir: where bodies too large for memory are held while a request is handled
        (:mod:`replay.record.bodies`; the system's temporary folder when ``None``).
    :param running: the services that hold state or have had traffic (``running`` in the health answer).
    :param hooks: the init scripts, for ``/_localstack/init``.
    :param act: does what ``POST /_localstack/health`` asks (``"kill"``, ``"restart"``), once the answer is sent.
    :param about: more facts for ``GET /_replay/info`` (where it listens, the init dir ...).
    :param replication: the replicator's state for the health document (``None``: not replicating).
    """

    def __init__(
        self,
        backend: Backend,
        services: Callable[[], Iterable[str]] = tuple,
        version: str = "",
        known: Callable[[str], bool] | None = None,
        reset_path: str | None = None,
        access: ControlAccess | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        spool_dir: Path | None = None,
        running: Callable[[], Iterable[str]] = tuple,
        hooks: InitHooks | None = None,
        act: Callable[[str], None] | None = None,
        about: Callable[[], dict[str, object]] | None = None,
        replication: Callable[[], dict[str, object] | None] | None = None,
    ) -> None:
        self.access = access
        self.spool_dir = spool_dir
        self.max_body = max_body
        self.backend = backend
        self.services = services
        self.version = version
        self.known: Callable[[str], bool] = known if known is not None else (lambda name: name in set(services()))
        self.reset_path = reset_path
        self.running = running
        self.hooks = hooks if hooks is not None else InitHooks(None)
        self.act = act
        self.about = about
        self.replication = replication
        self.session = SessionFacts(version)
        self.app: WSGIApplication | None = None
        self._ready = threading.Event()
        self._active = 0
        self._idle = threading.Condition()

    def open(self, app: WSGIApplication) -> None:
        """Start handing requests to ``app`` (the restore is done)."""
        self.app = app
        self._ready.set()

    def close(self) -> None:
        """Hold requests again (a restart is under way) until :meth:`open`."""
        self._ready.clear()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def _health(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        ready = self.ready
        backend = self.backend
        persistence = backend.persistence
        document = {
            "services": service_states(self.services(), self.running(), backend.failed_services()),
            "edition": EDITION,
            "version": self.version,
            "features": {
                "persistence": persistence,
                "initScripts": "initialized" if self.hooks.completed(Stage.READY) else "initializing",
            },
            "status": "running" if ready else "restoring",
            "persistence": backend.status(),
            "replication": self.replication() if self.replication is not None else None,
        }
        body = orjson.dumps(document)
        start_response(
            "200 OK" if ready else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _health_action(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """``POST /_localstack/health``: ``{"action": "kill"}`` or ``{"action": "restart"}``."""
        usage = 'POST a JSON object {"action": "kill"} or {"action": "restart"}'
        try:
            document = orjson.loads(request_from_environ(environ).body)
        except (orjson.JSONDecodeError, RequestError) as exc:
            return _json(start_response, "400 Bad Request", {"error": "bad request", "message": f"{usage}: {exc}"})
        action = document.get("action") if isinstance(document, dict) else None
        if action not in ("kill", "restart"):
            message = f"{usage}; got {orjson.dumps(document).decode()[:200]}"
            return _json(start_response, "400 Bad Request", {"error": "bad request", "message": message})
        if self.act is None:
            return _json(start_response, "501 Not Implemented", {"error": f"this server cannot {action}"})
        act = self.act
        logger.info("%s asked by POST %s", action, HEALTH_PATH)
        body = orjson.dumps({"status": "ok", "action": action})
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        # done once the answer has left: the client learns it was taken before the server goes away
        return ClosingIterator([body], lambda: threading.Thread(target=act, args=(action,), daemon=True).start())

    def _init(self, path: str, start_response: StartResponse) -> Iterable[bytes]:
        stage = path[len(INIT_PATH) :].strip("/")
        if not stage:
            return _json(start_response, "200 OK", self.hooks.document())
        document = self.hooks.stage_document(stage)
        if document is None:
            stages = ", ".join(member.name.lower() for member in Stage)
            message = f"no such stage {stage!r}: one of {stages}"
            return _json(start_response, "404 Not Found", {"error": "not found", "message": message})
        return _json(start_response, "200 OK", document)

    def _replay_info(self, start_response: StartResponse) -> Iterable[bytes]:
        document: dict[str, object] = {
            "version": self.version,
            "ready": self.ready,
            "persistence": self.backend.persistence,
            "backend": self.backend.status(),
            "session_id": self.session.session_id,
            **(self.about() if self.about is not None else {}),
        }
        return _json(start_response, "200 OK", document)

    def _state(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        parts = environ["PATH_INFO"][len(STATE_PREFIX) :].strip("/").split("/")
        if environ.get("REQUEST_METHOD") != "POST":
            message = "state endpoints take POST: /_localstack/state[/<service>]/save|load|reset"
            return _json(start_response, "405 Method Not Allowed", {"error": "use POST", "message": message})
        if parts == ["reset"]:
            return self._reset(start_response)
        if len(parts) == 1 and parts[0] in ("save", "load"):
            action, services = parts[0], None
        elif len(parts) == 2 and parts[1] in ("save", "load", "reset"):
            action, services = parts[1], [parts[0]]
            if not self.known(parts[0]):
                message = f"unknown service {parts[0]!r}: not one this emulator persists"
                return _json(start_response, "404 Not Found", {"error": "unknown service", "message": message})
            if action == "reset":
                return self._reset_service(parts[0], start_response)
        else:
            message = "use /_localstack/state[/<service>]/save|load|reset or /_localstack/state/reset"
            return _json(start_response, "404 Not Found", {"error": "not found", "message": message})
        results = self.backend.save(services) if action == "save" else self.backend.load(services)
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        return (orjson.dumps(result) + b"\n" for result in results)  # one line per service, as each is done

    def _compact(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "use POST"})
        try:
            result = self.backend.compact()
        except ReplayError as exc:
            return _json(start_response, "409 Conflict", {"status": "error", "message": str(exc)})
        except Exception as exc:
            logger.exception("compaction failed")
            return _json(start_response, "500 Internal Server Error", {"status": "error", "message": str(exc)})
        return _json(start_response, "200 OK", {"status": "ok", **result})

    def _export(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "use POST"})
        workspace = Path(tempfile.mkdtemp(prefix="replay-export-"))
        try:
            facts = self.backend.export(workspace / "members")
            archive = workspace / "state.replay"
            manifest = write_archive(workspace / "members", archive, **facts)
        except ReplayError as exc:
            shutil.rmtree(workspace, ignore_errors=True)
            return _json(start_response, "409 Conflict", {"status": "error", "message": str(exc)})
        except Exception as exc:
            shutil.rmtree(workspace, ignore_errors=True)
            logger.exception("export failed")
            return _json(start_response, "500 Internal Server Error", {"status": "error", "message": str(exc)})
        logger.info("exported %s state: %d files, %d bytes", manifest.kind, len(manifest.files), manifest.size)
        start_response(
            "200 OK",
            [("Content-Type", "application/gzip"), ("Content-Length", str(archive.stat().st_size))],
        )
        return _FileChunks(workspace, archive)

    def _through_app(self, request: Request) -> Response:
        """``request`` sent through the persisted app (so that it is recorded, as a client's call is)."""
        assert self.app is not None
        return WSGITransport(self.app).send(request)

    def _reset(self, start_response: StartResponse) -> Iterable[bytes]:
        if self.reset_path is None or self.app is None:
            return _json(start_response, "501 Not Implemented", {"error": "this emulator has no reset"})
        answer = self._through_app(Request("POST", self.reset_path, "", [], b""))
        status = "200 OK" if answer.ok else "500 Internal Server Error"
        return _json(start_response, status, {"status": "ok" if status == "200 OK" else "error"})

    def _reset_service(self, service: str, start_response: StartResponse) -> Iterable[bytes]:
        """One service emptied, through the persisted app: recorded (or saved) like any state change."""
        answer = self._through_app(Request("POST", f"{STATE_PREFIX}{service}/reset", "", [], b""))
        if answer.status == 404:
            return _json(start_response, "501 Not Implemented", {"error": "this emulator cannot reset one service"})
        if not answer.ok:
            message = answer.body.decode("utf-8", "replace")[:300]
            return _json(start_response, f"{answer.status} Error", {"status": "error", "message": message})
        logger.info("%s reset (POST %s%s/reset)", service, STATE_PREFIX, service)
        return _json(start_response, "200 OK", {"service": service, "status": "ok"})

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        try:
            length = content_length(environ)
        except RequestError as exc:
            return _json(start_response, exc.status, {"error": "bad request", "message": str(exc)})
        if length is not None and length > self.max_body:
            message = f"the request body ({length:,} bytes) is larger than {self.max_body:,} (REPLAY_MAX_BODY_SIZE)"
            return _json(start_response, "413 Content Too Large", {"error": "too large", "message": message})
        environ[MAX_BODY_KEY] = self.max_body
        if self.spool_dir is not None:
            environ[SPOOL_DIR_KEY] = self.spool_dir
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return self._health(environ, start_response)
        if self.access is not None:
            reason = self.access.refusal(path, environ.get("HTTP_HOST"), environ.get("HTTP_ORIGIN"))
            if reason is not None:
                logger.warning("refused %s %s: %s", method, path, reason)
                return _json(start_response, "403 Forbidden", {"error": "forbidden", "message": reason})
        if path == HEALTH_PATH:
            if method == "POST":
                return self._health_action(environ, start_response)
            return _json(start_response, "405 Method Not Allowed", {"error": "use GET, HEAD or POST"})
        reading = method in ("GET", "HEAD")
        if path == INFO_PATH:
            if not reading:
                return _json(start_response, "405 Method Not Allowed", {"error": "use GET"})
            return _json(start_response, "200 OK", self.session.info())
        if path == INIT_PATH or path.startswith(INIT_PATH + "/"):
            if not reading:
                return _json(start_response, "405 Method Not Allowed", {"error": "use GET"})
            return self._init(path, start_response)
        if path == REPLAY_INFO_PATH:
            if not reading:
                return _json(start_response, "405 Method Not Allowed", {"error": "use GET"})
            return self._replay_info(start_response)
        if (path == STATE_PATH or path.startswith(STATE_PREFIX)) and method != "POST":
            message = "state endpoints take POST: /_localstack/state[/<service>]/save|load|reset"
            return _json(start_response, "405 Method Not Allowed", {"error": "use POST", "message": message})
        self._ready.wait()
        if path.startswith(STATE_PREFIX):
            return self._state(environ, start_response)
        if path == COMPACT_PATH:
            return self._compact(environ, start_response)
        if path == EXPORT_PATH:
            return self._export(environ, start_response)
        if path in _RESERVED or path.startswith(_RESERVED_PREFIXES):  # ours: never an emulator's bucket or path
            message = f"no control endpoint at {path}"
            return _json(start_response, "404 Not Found", {"error": "not found", "message": message})
        assert self.app is not None
        try:
            request = request_from_environ(environ)  # the whole body first: a request still arriving is not in flight
        except RequestError as exc:  # the body could not be read as framed: nothing reached the emulator
            if exc.status.startswith("503"):  # no room to hold it: an AWS-style answer that SDKs retry
                logger.warning("refused %s %s: %s", method, path, exc)
                json_protocol = "HTTP_X_AMZ_TARGET" in environ
                status, headers, body = unavailable(str(exc), "other" if json_protocol else "s3", json_protocol)
                start_response(status, headers)
                return [body]
            return _json(start_response, exc.status, {"error": "bad request", "message": str(exc)})
        with self._idle:
            self._active += 1
        done = self._done if request.file is None else functools.partial(self._done, request.file)
        try:
            iterable = self.app(environ, start_response)
        except BaseException:
            done()
            raise
        return _Tracked(iterable, done)

    def _done(self, spooled: BodyFile | None = None) -> None:
        if spooled is not None:
            spooled.discard()  # the request is over: its spooled body goes (a recorded one is kept by its link)
        with self._idle:
            self._active -= 1
            self._idle.notify_all()


def _json(start_response: StartResponse, status: str, document: object) -> list[bytes]:
    body = orjson.dumps(document)
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _FileChunks:
    """Streams ``path`` and removes ``workspace`` (which holds it) when closed."""

    def __init__(self, workspace: Path, path: Path) -> None:
        self.workspace = workspace
        self.handle = open(path, "rb")  # noqa: SIM115 - closed in close()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.handle.read(_EXPORT_CHUNK):
            yield chunk

    def close(self) -> None:
        self.handle.close()
        shutil.rmtree(self.workspace, ignore_errors=True)


class _Tracked:
    """Passes ``iterable`` through and calls ``done`` once when it is closed."""

    __slots__ = ("done", "iterable")

    def __init__(self, iterable: Iterable[bytes], done: Callable[[], None]) -> None:
        self.iterable = iterable
        self.done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.iterable)

    def close(self) -> None:
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                close()
        finally:
            if self.done is not None:
                done, self.done = self.done, None
                done()
