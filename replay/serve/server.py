"""``replay serve``: an emulator with persistence on werkzeug's threaded server.

Start-up order: bind the sockets (one per address of ``GATEWAY_LISTEN``, or ``--host``/``--port``); run
the ``boot.d`` and ``start.d`` init scripts (:mod:`replay.serve.hooks`); serve (requests other than the
health check wait); restore; open the gate; run the ``ready.d`` scripts; tell the caller it is ready
(``replay serve`` prints ``Ready.``).  Requests reach the emulator through
:class:`~replay.record.longpoll.LongPolls` (long polls wait outside it), then the backend's wrapper.
Stop order (SIGTERM, Ctrl-C, ``POST /_localstack/health {"action": "kill"}`` or :meth:`Server.stop`): end
the long polls, stop accepting, let requests in flight finish (up to ``drain_timeout``), run the
``shutdown.d`` scripts, close the backend (which syncs the log), close the sockets.  A restart
(``{"action": "restart"}``) holds new requests, waits for those in flight, closes the backend, empties
the emulator and restores it again from the data dir, in-process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..backends import Backend, DisabledBackend, create_backend
from ..config import BackendKind, Config
from ..errors import ConfigError
from ..record.bodies import BODIES_DIR, INCOMING_DIR
from ..record.classify import Classifier
from ..record.longpoll import LongPolls
from ..share.replicator import ReplicaSource, Replicator
from ..storage.datadir import DataDirLock
from ..version import __version__
from .crosssite import ControlAccess
from .emulators import Emulator
from .endpoints import ControlEndpoints
from .hooks import InitHooks, Stage

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


class _Restarting(DisabledBackend):
    """What the health endpoint reports while a restart closes the state and restores it again."""

    persistence = "initializing"

    def status(self) -> dict[str, object]:
        return {"restarting": True}


def spool_dir(config: Config) -> Path | None:
    """Where a large body waits while its request is handled: beside the bodies it may join, when recorded."""
    if config.persistence and config.backend is BackendKind.REPLAY:
        return config.data_dir / BODIES_DIR / INCOMING_DIR
    return None


class Server:
    """Serve ``emulator`` as ``config`` says, persisting its state.

    The sockets are bound when the object is made, so :attr:`port` is known
    (also with ``port=0``) before :meth:`serve` runs.

    :param on_ready: called once the restored state is served and the ``ready.d`` scripts have run.
    """

    def __init__(
        self,
        config: Config,
        emulator: Emulator,
        classifier: Classifier | None = None,
        drain_timeout: float = 10.0,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.emulator = emulator
        self.drain_timeout = drain_timeout
        self.on_ready = on_ready
        self.classifier = classifier if classifier is not None else emulator.classifier
        self.long_polls: LongPolls | None = None
        self.failure: str | None = None  # why the server stopped on its own (a restart that failed), if it did
        self._restarting = threading.Lock()
        # one server per data dir: a second one would fold the log into checkpoints of its own state
        self._owner = DataDirLock(config.data_dir, command="replay serve") if config.persistence else None
        self._http: list[BaseWSGIServer] = []
        self.replicator: Replicator | None = None
        try:
            if config.persistence and config.replicate_url:
                self.replicator = Replicator(
                    config.data_dir,
                    config.replicate_url,
                    ReplicaSource(config.backend.value),
                    config.endpoint_url,
                    config.replicate_interval,
                    config.replicate_retention,
                    config.replicate_backlog,
                    config.archive_key,
                )
            self.backend: Backend = self._backend()
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
                running=adapter.active if adapter is not None else tuple,
                act=self._act,
                about=self._about,
                replication=self.replicator.status if self.replicator is not None else None,
            )
            for host, port in config.addresses:
                self._http.append(
                    make_server(host, port, self.endpoints, threaded=True, request_handler=_RequestHandler)
                )
            if self.replicator is not None:
                _refuse_replicating_into_itself(config, [http.server_port for http in self._http])
                self.replicator.prepare()  # a prefix another server writes into is refused here
        except BaseException:
            for http in self._http:
                http.server_close()
            if self._owner is not None:
                self._owner.release()
            raise
        self.host: str = config.addresses[0][0]
        self.port: int = self._http[0].server_port
        self.hooks = InitHooks(
            config.init_dir,
            {
                "AWS_ENDPOINT_URL": self.url,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            },
        )
        self.endpoints.hooks = self.hooks
        if self._owner is not None:
            self._owner.update(url=self.url)
        self._stop = threading.Event()
        os.environ.setdefault("MOTO_PORT", str(self.port))

    def _backend(self) -> Backend:
        return create_backend(
            self.config,
            self.emulator.app,
            self.classifier,
            self.emulator.seeder,
            self.emulator.adapter,
            self.emulator.reset,
            exclusive=self._owner is not None,
            before_fold=self.replicator.before_fold if self.replicator is not None else None,
        )

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "localhost"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """Every address served (``GATEWAY_LISTEN`` may name several)."""
        return [f"http://{http.host}:{http.server_port}" for http in self._http]

    def _run_stage(self, stage: Stage) -> None:
        """Run ``stage``'s init scripts (with none, it is only marked completed); a line when there were some."""
        if self.hooks.run(stage):
            logger.info("%s", self.hooks.summary(stage))

    def serve(self) -> None:
        """Restore, serve until :meth:`stop` (or an exception such as ``KeyboardInterrupt``), shut down."""
        threads = [
            threading.Thread(target=http.serve_forever, args=(_POLL_INTERVAL,), name="replay-http", daemon=True)
            for http in self._http
        ]
        try:
            self._run_stage(Stage.BOOT)
            self._run_stage(Stage.START)
            for thread in threads:
                thread.start()
            logger.info("listening on %s; restoring state before serving", ", ".join(self.urls))
            self.backend.restore()
            self.long_polls = LongPolls(self.backend.wrap(self.emulator.app), self.classifier)
            self.endpoints.open(self.long_polls)
            if self.replicator is not None:
                self.replicator.start()
            self._run_stage(Stage.READY)  # they see the restored state
            logger.info("ready on %s (persistence %s)", self.url, self.backend.persistence)
            if self.on_ready is not None:
                self.on_ready()
            while not self._stop.wait(_POLL_INTERVAL):
                pass
        finally:
            self._shutdown(threads)

    def stop(self) -> None:
        """Ask :meth:`serve` to return (thread-safe)."""
        self._stop.set()

    def _act(self, action: str) -> None:
        """What ``POST /_localstack/health`` asked for, once its answer has left."""
        if action == "kill":
            self.stop()
        elif action == "restart":
            self.restart()

    def restart(self) -> None:
        """Empty the emulator and restore it again from the data dir, in-process (requests wait meanwhile).

        A restart that fails (the data dir cannot be read) stops the server: it never serves empty state
        as if it were restored.
        """
        with self._restarting:
            started = time.perf_counter()
            logger.info("restarting: holding requests, closing the state, restoring it again")
            self.endpoints.close()
            if not self.endpoints.wait_idle(self.drain_timeout):
                logger.warning("requests still in flight after %.0f s; restarting anyway", self.drain_timeout)
            if self.long_polls is not None:
                self.long_polls.stop()
            closing, self.endpoints.backend = self.backend, _Restarting()  # health: 503, restoring
            try:
                closing.close()
                if self.emulator.reset is not None:
                    self.emulator.reset()  # the raw app: not recorded
                self.backend = self._backend()
                self.endpoints.backend = self.backend
                self.backend.restore()
                self.long_polls = LongPolls(self.backend.wrap(self.emulator.app), self.classifier)
            except Exception as exc:
                logger.exception("the restart failed; stopping (the data dir holds the state)")
                self.failure = f"the restart failed: {' '.join(str(exc).split())}"
                self.backend = self.endpoints.backend  # the closed one is not closed twice at the stop
                self.stop()
                return
            self.endpoints.open(self.long_polls)
            logger.info("restarted in %.2f s (persistence %s)", time.perf_counter() - started, self.backend.persistence)

    def _about(self) -> dict[str, object]:
        """Facts for ``GET /_replay/info`` that only the server knows."""
        return {
            "listening": self.urls,
            "data_dir": str(self.config.data_dir) if self.config.persistence else None,
            "init_dir": str(self.config.init_dir) if self.config.init_dir is not None else None,
            "replication": self.replicator.status() if self.replicator is not None else None,
        }

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        if self.long_polls is not None:
            self.long_polls.stop()  # a client in a long poll gets its (empty) answer now
        for http, thread in zip(self._http, threads, strict=True):
            if thread.is_alive():
                http.shutdown()
                thread.join()
        if not self.endpoints.wait_idle(self.drain_timeout):
            logger.warning("requests still in flight after %.0f s; closing anyway", self.drain_timeout)
        if self.endpoints.ready:
            self._run_stage(Stage.SHUTDOWN)
        with self._restarting:
            self.backend.close()
        if self.replicator is not None:
            self.replicator.stop()  # after the backend's last checkpoint: it ships that too
        for http in self._http:
            http.server_close()
        if self._owner is not None:
            self._owner.release()
        logger.info("stopped; state is on disk")


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}


def _refuse_replicating_into_itself(config: Config, ports: list[int]) -> None:
    """A replica on this very server would record its own uploads, and ship those again, without end.

    :raises ConfigError: the replica's endpoint is one of this server's addresses.
    """
    name, endpoint = "--endpoint-url", config.endpoint_url
    for variable in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):  # boto3's own order, after the flag
        if not endpoint and os.environ.get(variable):
            name, endpoint = variable, os.environ[variable]
    if not endpoint:
        return
    parsed = urllib.parse.urlsplit(endpoint)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(name, endpoint, hint="an http(s)://host:port URL") from None
    hosts = _LOCAL_HOSTS | {config.host, *(host for host, _ in config.addresses)}
    if (parsed.hostname or "") in hosts and port in ports:
        raise ConfigError(
            name,
            endpoint,
            hint="the replica must live on another server: replicating into this one would record its own uploads",
        )
