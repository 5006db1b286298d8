"""``replay serve``: an emulator with persistence on werkzeug's threaded server.

Start-up order: bind the socket; serve (requests other than the health check
wait); restore; open the gate.  Requests reach the emulator through
:class:`~replay.record.longpoll.LongPolls` (long polls wait outside it), then the
backend's wrapper.  Stop order (SIGTERM, Ctrl-C or :meth:`Server.stop`): end the
long polls, stop accepting, let requests in flight finish (up to
``drain_timeout``), close the backend (which syncs the log), close the socket.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from ..backends import Backend, create_backend
from ..config import BackendKind, Config
from ..record.bodies import BODIES_DIR, INCOMING_DIR
from ..record.classify import Classifier
from ..record.longpoll import LongPolls
from ..storage.datadir import DataDirLock
from ..version import __version__
from .crosssite import ControlAccess
from .emulators import Emulator
from .endpoints import ControlEndpoints

__all__ = ["Server"]

logger = logging.getLogger("replay.server")

_POLL_INTERVAL = 0.05  # how soon a stop is noticed (the socket loop's and the main thread's); 0.5 s was the default
_IDLE_TIMEOUT = 120.0  # seconds a connection may stay silent (mid-request or between requests) before it is closed


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, stricter about framing: requests it cannot frame without guessing are refused.

    Refused with 400 before anything reaches the emulator: an HTTP/0.9 request line (no version: the
    standard library would wait for headers that never come), several ``Content-Length`` headers that
    disagree, ``Content-Length`` together with ``Transfer-Encoding`` (the way request smuggling works),
    and a ``Transfer-Encoding`` other than ``chunked``.  A connection silent for two minutes is closed,
    so a client that never sends the body it announced cannot hold a thread for ever.
    """

    timeout = _IDLE_TIMEOUT

    def parse_request(self) -> bool:
        words = self.raw_requestline.split()
        if len(words) == 2:  # "GET /": HTTP/0.9
            self.close_connection = True
            self.send_error(400, "HTTP/0.9 is not served: send an HTTP/1.x request line")
            return False
        if not super().parse_request():
            return False
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        problem = None
        if len(lengths) > 1:
            problem = "Content-Length headers that disagree"
        elif encoding and lengths:
            problem = "both Content-Length and Transfer-Encoding"
        elif encoding and encoding != "chunked":
            problem = f"Transfer-Encoding {encoding!r} (only chunked is served)"
        if problem is not None:
            self.close_connection = True
            self.send_error(400, f"Bad request framing: {problem}")
            return False
        return True


def spool_dir(config: Config) -> Path | None:
    """Where a large body waits while its request is handled: beside the bodies it may join, when recorded."""
    if config.persistence and config.backend is BackendKind.REPLAY:
        return config.data_dir / BODIES_DIR / INCOMING_DIR
    return None


class Server:
    """Serve ``emulator`` as ``config`` says, persisting its state.

    The socket is bound when the object is made, so :attr:`port` is known
    (also with ``port=0``) before :meth:`serve` runs.
    """

    def __init__(
        self,
        config: Config,
        emulator: Emulator,
        classifier: Classifier | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.emulator = emulator
        self.drain_timeout = drain_timeout
        self.classifier = classifier if classifier is not None else emulator.classifier
        self.long_polls: LongPolls | None = None
        # one server per data dir: a second one would fold the log into checkpoints of its own state
        self._owner = DataDirLock(config.data_dir, command="replay serve") if config.persistence else None
        try:
            self.backend: Backend = create_backend(
                config,
                emulator.app,
                self.classifier,
                emulator.seeder,
                emulator.adapter,
                emulator.reset,
                exclusive=self._owner is not None,
            )
            adapter = emulator.adapter
            self.endpoints = ControlEndpoints(
                self.backend,
                emulator.services,
                __version__,
                known=(lambda name: adapter.service_for(name) is not None) if adapter is not None else None,
                reset_path=emulator.reset_path,
                access=ControlAccess(config.host, config.allowed_hosts, config.extra_origins, config.cors_checks),
                max_body=config.max_body_size,
                spool_dir=spool_dir(config),
            )
            self._http = make_server(
                config.host, config.port, self.endpoints, threaded=True, request_handler=_RequestHandler
            )
        except BaseException:
            if self._owner is not None:
                self._owner.release()
            raise
        self.port: int = self._http.server_port
        if self._owner is not None:
            self._owner.update(url=self.url)
        self._stop = threading.Event()
        os.environ.setdefault("MOTO_PORT", str(self.port))

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "localhost"
        return f"http://{host}:{self.port}"

    def serve(self) -> None:
        """Restore, serve until :meth:`stop` (or an exception such as ``KeyboardInterrupt``), shut down."""
        thread = threading.Thread(
            target=self._http.serve_forever, args=(_POLL_INTERVAL,), name="replay-http", daemon=True
        )
        thread.start()
        try:
            logger.info("listening on %s; restoring state before serving", self.url)
            self.backend.restore()
            self.long_polls = LongPolls(self.backend.wrap(self.emulator.app), self.classifier)
            self.endpoints.open(self.long_polls)
            logger.info("ready on %s (persistence %s)", self.url, self.backend.persistence)
            while not self._stop.wait(_POLL_INTERVAL):
                pass
        finally:
            self._shutdown(thread)

    def stop(self) -> None:
        """Ask :meth:`serve` to return (thread-safe)."""
        self._stop.set()

    def _shutdown(self, thread: threading.Thread) -> None:
        if self.long_polls is not None:
            self.long_polls.stop()  # a client in a long poll gets its (empty) answer now
        self._http.shutdown()
        thread.join()
        if not self.endpoints.wait_idle(self.drain_timeout):
            logger.warning("requests still in flight after %.0f s; closing anyway", self.drain_timeout)
        self.backend.close()
        self._http.server_close()
        if self._owner is not None:
            self._owner.release()
        logger.info("stopped; state is on disk")
