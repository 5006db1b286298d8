"""Control endpoints under ``/_localstack/`` and the start-up gate.

:class:`ControlEndpoints` answers ``GET|HEAD /_localstack/health`` itself and
hands every other request to the app it wraps, but only once :meth:`open` has
been called: until the restore has finished, requests wait (they are held, not
refused) and the health endpoint answers 503 with ``"persistence":
"initializing"``.  After that it answers 200::

    {"status": "running", "version": "0.1.0",
     "features": {"persistence": "initialized"},
     "persistence": {"backend": "replay", "log": "...", "restored": 12, "failed": 0},
     "services": {"sqs": "available", ...}}
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import orjson

from .backends import Backend

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["HEALTH_PATH", "ControlEndpoints"]

HEALTH_PATH = "/_localstack/health"


class ControlEndpoints:
    """Health endpoint and start-up gate around the persisted app.

    :param backend: whose state the health endpoint reports.
    :param services: returns the emulator's service names, for ``"services"``.
    :param version: reported as ``"version"``.
    """

    def __init__(self, backend: Backend, services: Callable[[], Iterable[str]] = tuple, version: str = "") -> None:
        self.backend = backend
        self.services = services
        self.version = version
        self.app: WSGIApplication | None = None
        self._ready = threading.Event()
        self._active = 0
        self._idle = threading.Condition()

    def open(self, app: WSGIApplication) -> None:
        """Start handing requests to ``app`` (the restore is done)."""
        self.app = app
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def _health(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        ready = self.ready
        document = {
            "status": "running" if ready else "restoring",
            "version": self.version,
            "features": {"persistence": self.backend.persistence},
            "persistence": self.backend.status(),
            "services": {name: "available" for name in self.services()},
        }
        body = orjson.dumps(document)
        start_response(
            "200 OK" if ready else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self._health(environ, start_response)
        self._ready.wait()
        assert self.app is not None
        with self._idle:
            self._active += 1
        try:
            iterable = self.app(environ, start_response)
        except BaseException:
            self._done()
            raise
        return _Tracked(iterable, self._done)

    def _done(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()


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
