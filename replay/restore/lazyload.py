"""Saved state loaded on first use (LocalStack's ``ON_REQUEST``): a start does not wait for big services.

A checkpoint's snapshots are checked when the server starts (:func:`~replay.storage.snapshot.read_snapshot`:
length, SHA-256, signature), but not unpickled.  :class:`PendingState` keeps where each one is and
asks the adapter to run its load before anything reaches that service's state
(:meth:`~replay.adapters.StateAdapter.defer`; moto's: the first access to its ``BackendDict``), so a
call to the service, or another service's code reading it (Lambda reading an IAM role), loads it
first, and only calls that need it wait meanwhile.  An adapter that cannot defer gets everything
loaded at once.  A reset of the emulator drops what is still pending: it would otherwise come back
after the reset.

A file that no longer passes its checks when it is finally loaded (changed on disk since the
start) is refused: the call is answered 500 naming it, never from empty state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import orjson

from ..adapters import StateAdapter
from ..errors import SnapshotError
from ..locks import LockTable
from ..record.classify import Classifier, DefaultClassifier
from ..record.wsgi import request_from_environ
from ..storage.snapshot import Saved, read_snapshot

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["PendingState"]

logger = logging.getLogger("replay.lazyload")


class PendingState:
    """The saved services not loaded into the emulator yet.

    :param adapter: loads a service's state in place.
    :param saved: service -> where its checked snapshot is.
    :param key: the data dir's snapshot key (each file is checked again when it is loaded).
    :param origin: named in the log line of each load (``checkpoint 000004``).
    """

    def __init__(self, adapter: StateAdapter, saved: dict[str, Saved], key: bytes, origin: str) -> None:
        self.adapter = adapter
        self.key = key
        self.origin = origin
        self._saved = dict(saved)
        self._guard = threading.Lock()
        self._locks = LockTable(threading.RLock)
        self._loading: set[str] = set()
        self.failed: dict[str, str] = {}  # service -> why its file was refused when it was first used
        deferred = [service for service in sorted(self._saved) if adapter.defer(service, self._loader(service))]
        if len(deferred) < len(self._saved):
            self.ensure(set(self._saved) - set(deferred))

    def _loader(self, service: str) -> Callable[[], None]:
        return lambda: self.ensure((service,))

    def services(self) -> frozenset[str]:
        """The services still waiting to be loaded."""
        with self._guard:
            return frozenset(self._saved)

    def _lock(self, service: str) -> threading.RLock:
        return self._locks[service]

    def ensure(self, services: Iterable[str]) -> None:
        """Load those of ``services`` that are still pending (each once; others' calls go on meanwhile).

        :raises SnapshotError: a file no longer passes its checks (the service stays pending).
        """
        for service in sorted(set(services)):
            if service not in self._saved:  # the common case, read without a lock: a dict lookup is atomic
                continue
            with self._lock(service):
                with self._guard:
                    saved = self._saved.get(service)
                if saved is None or service in self._loading:  # loaded meanwhile, dropped, or being loaded here
                    continue
                started = time.perf_counter()
                self._loading.add(service)  # the load itself goes through the hooks that called us
                try:
                    _header, payload = read_snapshot(saved.state, self.key)
                    self.adapter.load(service, payload, saved.assets)
                except SnapshotError as exc:
                    self.failed[service] = str(exc)
                    raise
                except Exception as exc:
                    refused = SnapshotError(saved.state, "corrupt", f"could not be loaded: {exc}")
                    self.failed[service] = str(refused)
                    raise refused from exc
                finally:
                    self._loading.discard(service)
                with self._guard:
                    self._saved.pop(service, None)
                    self.failed.pop(service, None)
                self.adapter.undefer(service)
                logger.info(
                    "loaded %s from %s on first use (%d bytes) in %.0f ms",
                    service,
                    self.origin,
                    len(payload),
                    (time.perf_counter() - started) * 1000,
                )

    def ensure_all(self) -> None:
        """Load every pending service now."""
        self.ensure(self.services())

    def drop(self) -> None:
        """The emulator was reset: nothing pending may come back."""
        for service in sorted(self.services()):
            with self._lock(service), self._guard:
                self._saved.pop(service, None)
                self.failed.pop(service, None)
            self.adapter.undefer(service)

    def moved(self, saved: dict[str, Saved], origin: str) -> None:
        """A new checkpoint holds the pending services' files now (the old ones are about to go)."""
        for service in sorted(self.services()):
            with self._lock(service), self._guard:
                if service in self._saved and service in saved:
                    self._saved[service] = saved[service]
        self.origin = origin

    def wrap(self, app: WSGIApplication, classifier: Classifier | None = None) -> WSGIApplication:
        """``app``, loading what each call needs before it runs."""
        return _Loading(self, app, classifier if classifier is not None else DefaultClassifier())


class _Loading:
    """Per call: load the pending services it needs; after a reset, drop the rest."""

    def __init__(self, pending: PendingState, app: WSGIApplication, classifier: Classifier) -> None:
        self.pending = pending
        self.app = app
        self.classifier = classifier

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        pending = self.pending
        if pending._saved:
            call = self.classifier(request_from_environ(environ))
            if call.service == "moto" and call.operation == "Reset":
                pending.drop()
            else:
                service = pending.adapter.service_for(call.service)
                if service is not None:
                    try:  # here, to answer a refused file cleanly; the adapter's hooks load what else it reads
                        pending.ensure(pending.adapter.affected(service))
                    except SnapshotError as exc:  # never serve a service from empty state as if it were restored
                        logger.error("%s", exc)
                        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
                        return [orjson.dumps({"error": "saved state refused", "message": str(exc)})]
        return self.app(environ, start_response)
