"""The ``snapshot`` backend: each service's state saved to a signed file and loaded back directly.

Layout under the data dir::

    state/snapshot.key                       this data dir's signing key (0600)
    state/api_states/<service>/backend.state one service's snapshot (replay.storage.snapshot)
    state/<service>/<sha256>                 its large data, e.g. S3 object bodies (assets)

Saving and loading follow the configured strategies
(:class:`~replay.config.SaveStrategy`, :class:`~replay.config.LoadStrategy`).
A request to a service holds that service's lock for reading; a load holds it
for writing, and so does a save, but only while it forks (:mod:`replay.storage.bgsave`):
the child writes the image while the service and every other one keep serving.
A state-changing call marks its service dirty, and the services the emulator
changes on its behalf (SNS delivering to SQS ...); a scheduled save writes the
dirty services only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..adapters import StateAdapter
from ..config import LoadStrategy, SaveStrategy
from ..errors import ReplayError, SnapshotError
from ..locks import LockTable, ReadWriteLock
from ..record.classify import Call, Classifier, DefaultClassifier
from ..record.writeguard import WriteGuard, refusal
from ..record.wsgi import closing_body, request_from_environ
from ..share.archive import stage_snapshot, stage_snapshot_files
from ..share.sources import SourceKind, check_backend, snapshot_path, snapshot_services
from ..storage.bgsave import describe as describe_saves
from ..storage.bgsave import mode as bgsave_mode
from ..storage.bgsave import run_save
from ..storage.snapshot import load_key, read_snapshot, write_snapshot

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SnapshotBackend"]

logger = logging.getLogger("replay.snapshot")


class SnapshotBackend:
    """Persist ``adapter``'s services as snapshot files under ``data_dir/state``.

    :param adapter: reaches the emulator's state.
    :param data_dir: the data dir.
    :param save: when to save; :param load: when to load; :param interval: seconds between scheduled saves.
    :param classifier: tells which service a request is for and whether it changes state.
    """

    def __init__(
        self,
        adapter: StateAdapter,
        data_dir: Path,
        save: SaveStrategy = SaveStrategy.SCHEDULED,
        load: LoadStrategy = LoadStrategy.ON_REQUEST,
        interval: float = 15.0,
        classifier: Classifier | None = None,
    ) -> None:
        self.adapter = adapter
        self.state_dir = Path(data_dir) / "state"
        self.save_strategy = save
        self.load_strategy = load
        self.interval = interval
        self.classifier: Classifier = classifier if classifier is not None else DefaultClassifier()
        self.recordable: Callable[[Call, int, bytes], bool] = getattr(
            self.classifier, "recordable", lambda call, status, body: True
        )
        self.key: bytes | None = None
        self.loaded: set[str] = set()
        self.dirty: set[str] = set()
        self.failed: dict[str, str] = {}  # service -> why its snapshot was refused when it was loaded
        self._locks = LockTable(ReadWriteLock)
        self._saving = LockTable(threading.Lock)
        self.bgsave = bgsave_mode()  # fork: saves hold a service only for the fork (replay.storage.bgsave)
        self.last_saves: dict[str, dict[str, object]] = {}
        self._deferred: set[str] = set()  # saved services whose load the adapter runs on their first use
        self._here = threading.local()  # .loading: the services this thread is loading now
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self.guard = WriteGuard(Path(data_dir))  # closed while a snapshot cannot be written

    # the Backend contract

    @property
    def persistence(self) -> str:
        if not self.guard.ok:
            return "error"
        return "initialized" if self.key is not None else "initializing"

    def restore(self) -> None:
        check_backend(self.state_dir.parent, SourceKind.SNAPSHOT)
        self.key = load_key(self.state_dir)
        logger.info("%s", describe_saves(self.bgsave))
        saved = self.saved_services()
        if self.load_strategy is LoadStrategy.ON_STARTUP:
            for service in saved:
                self.load_service(service)  # a refused file stops the start (SnapshotError names it)
        elif self.load_strategy is LoadStrategy.ON_REQUEST:
            for service in saved:  # loaded before anything reaches it, another service's code too
                if self.adapter.defer(service, functools.partial(self._load_deferred, service)):
                    self._deferred.add(service)
        how = {
            LoadStrategy.ON_STARTUP: "loaded",
            LoadStrategy.ON_REQUEST: "each is checked and loaded on first use; one refused then answers 500",
        }.get(self.load_strategy, "not loaded: SNAPSHOT_LOAD_STRATEGY=MANUAL, POST /_localstack/state/load loads them")
        logger.info("Restored state of %d services from %s (%s)", len(saved), self.state_dir, how)
        if self.save_strategy is SaveStrategy.SCHEDULED:
            self._scheduler = threading.Thread(target=self._save_periodically, name="replay-snapshot", daemon=True)
            self._scheduler.start()

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        return _Persisting(self, app)

    def status(self) -> dict[str, object]:
        status: dict[str, object] = {
            "backend": "snapshot",
            "data_dir": str(self.state_dir.parent),
            "save_strategy": self.save_strategy.value,
            "load_strategy": self.load_strategy.value,
            "loaded": sorted(self.loaded),
            "dirty": sorted(self.dirty),
            "saves": self.bgsave.value,
        }
        error = self.guard.status()
        if error is not None:
            status["error"] = error
        return status

    def failed_services(self) -> list[str]:
        return sorted(self.failed)

    def close(self) -> None:
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join()
        self.guard.stop()
        if self.key is not None and self.save_strategy in (SaveStrategy.ON_SHUTDOWN, SaveStrategy.SCHEDULED):
            for _result in self.save(sorted(self.dirty)):
                pass  # a failure was logged, in one line
        self._undefer(self._deferred)  # nothing of this data dir loads into the process's emulator later

    def _undefer(self, services: Iterable[str]) -> None:
        for service in sorted(services):
            self.adapter.undefer(service)
            self._deferred.discard(service)

    def _load_deferred(self, service: str) -> None:
        """The adapter's hook: something is about to reach ``service``'s state; load it first (once)."""
        loading: set[str] = getattr(self._here, "loading", set())
        if service in self.loaded or service in loading:  # loaded, or its own load reaching its state
            return
        self.load_service(service)

    def reset_done(self) -> None:
        """The emulator was emptied: nothing saved may load into it now, and every saved service is saved empty."""
        self.loaded.update(self.saved_services())
        self._undefer(self._deferred)
        self.dirty.update(self.loaded)

    # saving and loading

    def path(self, service: str) -> Path:
        return snapshot_path(self.state_dir.parent, service)

    def assets(self, service: str) -> Path:
        """Where ``service``'s large data (S3 object bodies) lives, outside its snapshot."""
        return self.state_dir / service

    def lock(self, service: str) -> ReadWriteLock:
        return self._locks[service]

    def _key(self) -> bytes:
        if self.key is None:
            self.key = load_key(self.state_dir)
        return self.key

    def save_service(self, service: str) -> float:
        """Write ``service``'s snapshot now; the seconds requests to it waited (only for the fork, see
        :mod:`replay.storage.bgsave`; inline, for its serialisation).  Returns once the snapshot is durable.

        :raises ReplayError: it could not be written, in one line (the service stays dirty).
        """
        failed = self.save_services([service])
        if failed:
            raise ReplayError(failed[service])
        return float(self.last_saves[service]["held"])  # type: ignore[arg-type]

    def save_services(self, services: Iterable[str]) -> dict[str, str]:
        """Write the snapshots of ``services`` from one image (one fork for all); the ones that failed, with why.

        Requests to these services wait while the image is taken; each snapshot is durable when this returns.
        A service that fails stays dirty, the others are saved.

        :raises BackgroundSaveError: the save's child failed as a whole (every service stays dirty).
        """
        chosen = sorted(set(services))
        if self.load_strategy is LoadStrategy.ON_REQUEST:  # a saved service not loaded yet: its file is its state
            kept = set(self.saved_services())  # those the adapter persists: it refuses the others in one line
            unloaded = {s for s in chosen if s in kept and s not in self.loaded}
            self.dirty.difference_update(unloaded)
            chosen = [s for s in chosen if s not in unloaded]
        if not chosen:
            return {}
        key, meta, adapter = self._key(), self.adapter.meta(), self.adapter
        where = {service: (self.assets(service), self.path(service)) for service in chosen}

        def capture() -> dict[str, bytes | str]:
            images: dict[str, bytes | str] = {}
            for service in chosen:
                try:
                    images[service] = adapter.dump(service, where[service][0])
                except Exception as exc:  # this service fails; the others are saved
                    images[service] = _one_line(exc)
            return images

        def write(images: dict[str, bytes | str]) -> dict[str, Any]:
            written: dict[str, Any] = {}
            for service, image in images.items():
                if isinstance(image, str):
                    written[service] = image
                    continue
                assets, path = where[service]
                try:
                    write_snapshot(path, service, image, key, meta)
                    adapter.prune_assets(assets)  # the old snapshot is gone only now
                except Exception as exc:
                    written[service] = _one_line(exc)
                else:
                    written[service] = len(image)
            return written

        with contextlib.ExitStack() as saving:
            for service in chosen:  # one save of a service at a time: a later image must not lose the race
                saving.enter_context(self._saving_lock(service))
            try:
                outcome = run_save(capture, write, self._capturing(chosen), self.bgsave)
            except BaseException:
                self.dirty.update(chosen)
                raise
        failed: dict[str, str] = {}
        for service in chosen:
            result = outcome.result.get(service)
            if isinstance(result, int):
                self.last_saves[service] = {"held": outcome.held, "bytes": result, "forked": outcome.forked}
                self.loaded.add(service)  # its file is its live state now: later saves write it again
            else:
                self.dirty.add(service)
                failed[service] = str(result)
        return failed

    @contextlib.contextmanager
    def _capturing(self, services: list[str]) -> Iterator[None]:
        """Requests to ``services`` wait while their image is taken; a change after that makes one dirty again."""
        with contextlib.ExitStack() as held:
            for service in services:  # sorted: two saves never wait for each other's locks crosswise
                held.enter_context(self.lock(service).write())
            self.dirty.difference_update(services)
            yield

    def _saving_lock(self, service: str) -> threading.Lock:
        return self._saving[service]

    def load_service(self, service: str) -> bool:
        """Replace ``service``'s live state with its snapshot; ``False`` when it has none."""
        with self._saving_lock(service), self.lock(service).write():  # never under a save of it still running
            path = self.path(service)
            if not path.exists():
                self.loaded.add(service)
                self._undefer([service] if service in self._deferred else [])
                return False
            loading: set[str] = self._here.__dict__.setdefault("loading", set())
            loading.add(service)
            try:
                _header, payload = read_snapshot(path, self._key())  # refuses what we did not write, unpickling nothing
                self.adapter.load(service, payload, self.assets(service))
            except SnapshotError as exc:
                self.failed[service] = str(exc)
                raise
            except Exception as exc:  # e.g. an asset file that does not match its digest
                refused = SnapshotError(path, "corrupt", f"could not be loaded: {exc}")
                self.failed[service] = str(refused)
                raise refused from exc
            finally:
                loading.discard(service)
            self.loaded.add(service)
            self.dirty.discard(service)
            self.failed.pop(service, None)
            self._undefer([service] if service in self._deferred else [])
            return True

    def saved_services(self) -> list[str]:
        """The services with a snapshot that the adapter has (a service no longer selected is left out)."""
        kept = set(self.adapter.services())
        return [name for name in snapshot_services(self.state_dir.parent) if name in kept]

    def _each(self, services: Iterable[str], action: str) -> Iterator[dict[str, str]]:
        if action == "save":
            yield from self._save_each(list(services))
            return
        for service in services:
            try:
                self.load_service(service)
            except Exception as exc:
                message = f"could not load {service}: {_one_line(exc)}"
                logger.error("%s", message)
                yield {"service": service, "status": "error", "message": message}
            else:
                yield {"service": service, "status": "ok"}

    def _save_each(self, services: list[str]) -> Iterator[dict[str, str]]:
        """Save ``services`` from one image; one result per service, in the order given."""
        try:
            failed = self.save_services(services)
        except Exception as exc:
            failed = {service: _one_line(exc) for service in services}
        for service in services:
            if service in failed:
                message = f"could not save {service}: {failed[service]}"
                logger.error("%s", message)
                self.guard.failed(message, retry=self.save_dirty)
                yield {"service": service, "status": "error", "message": message}
            else:
                yield {"service": service, "status": "ok"}

    def _names(self, services: Iterable[str]) -> list[str]:
        """The adapter's names for ``services`` (``lambda`` -> ``awslambda`` ...)."""
        return [self.adapter.service_for(name) or name for name in services]

    def save(self, services: Iterable[str] | None = None) -> Iterator[dict[str, str]]:
        """Save ``services`` (default: every service with state), one result per service."""
        chosen = self._names(services) if services is not None else sorted(self.loaded | self.dirty)
        return self._each(chosen, "save")

    def load(self, services: Iterable[str] | None = None) -> Iterator[dict[str, str]]:
        """Load ``services`` (default: every saved one), one result per service."""
        return self._each(self._names(services) if services is not None else self.saved_services(), "load")

    def compact(self) -> dict[str, object]:
        """Snapshots hold state, not history: there is nothing to fold; save every service with state now."""
        results = list(self.save())
        failed = [result for result in results if result["status"] != "ok"]
        if failed:
            raise ReplayError("; ".join(result.get("message", result["service"]) for result in failed))
        return {"kind": "snapshot", "saved": [result["service"] for result in results]}

    def export(self, staging: Path) -> dict[str, Any]:
        """Every service's state as archive members in ``staging``: live state for the services this
        process has loaded or changed (dumped under their write locks), the saved file for the rest."""
        found: dict[str, Any] = {}
        meta = self.adapter.meta()
        for service in sorted(set(self.saved_services()) | self.loaded | self.dirty):
            if service in self.loaded or service in self.dirty:
                with self.lock(service).write():
                    payload = self.adapter.dump(service, Path(staging) / "assets" / service)
                stage_snapshot(staging, service, payload)
                found[service] = meta
            else:
                found.update(stage_snapshot_files(self.state_dir.parent, staging, [service]))
        return {"kind": "snapshot", "services": found, "emulator": meta}

    def _save_periodically(self) -> None:
        while not self._stop.wait(self.interval):
            for _result in self.save(sorted(self.dirty)):
                pass  # a failure closed the guard and was logged

    def save_dirty(self) -> None:
        """Save every service changed since its last save, from one image.

        :raises Exception: one of them could not be saved (the rest may have been).
        """
        failed = self.save_services(sorted(self.dirty))
        if failed:
            service, why = sorted(failed.items())[0]
            raise ReplayError(f"{service}: {why}")

    def save_dirty_of(self, services: Iterable[str]) -> None:
        """Save those of ``services`` that are dirty, from one image.

        :raises ReplayError: one could not be saved.
        """
        failed = self.save_services(set(services) & self.dirty)
        if failed:
            service, why = sorted(failed.items())[0]
            raise ReplayError(f"{service}: {why}")

    def touched(self, service: str) -> None:
        """A state-changing call to ``service`` succeeded.

        :raises Exception: under ``ON_REQUEST``, its snapshot could not be written (the guard is closed).
        """
        affected = self.adapter.affected(service)
        self.dirty.update(affected)
        if self.save_strategy is SaveStrategy.ON_REQUEST:
            try:
                self.save_dirty_of(affected)
            except Exception as exc:
                self.guard.failed(f"could not save {service}: {' '.join(str(exc).split())}", retry=self.save_dirty)
                raise


class _Persisting:
    """Per request: load the service lazily, hold its lock for reading, mark it dirty on success."""

    def __init__(self, backend: SnapshotBackend, app: WSGIApplication) -> None:
        self.backend = backend
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return closing_body(environ, self._handle(environ, start_response))

    def _handle(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        backend = self.backend
        request = request_from_environ(environ)
        call = backend.classifier(request)
        if call.mutating and not backend.guard.ok and backend.adapter.service_for(call.service) is not None:
            status, headers, refused = refusal(backend.guard, call, "x-amz-target" in request.index)
            start_response(status, headers)
            return [refused]
        if call.service == "moto" and call.operation == "Reset":  # everything becomes empty: save that too
            backend.reset_done()
        service = backend.adapter.service_for(call.service)
        if service is None:
            return self.app(environ, start_response)
        if backend.load_strategy is LoadStrategy.ON_REQUEST and service not in backend.loaded:
            try:
                backend.load_service(service)
            except SnapshotError as exc:  # never serve a service from empty state as if it were restored
                logger.error("%s", exc)
                refused_load = orjson.dumps({"error": "snapshot refused", "message": str(exc)})
                start_response("500 Internal Server Error", [("Content-Type", "application/json")])
                return [refused_load]
        statuses: list[int] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> object:
            statuses.append(int(status[:3]))
            return start_response(status, headers, exc_info)

        with backend.lock(service).read():
            changed = backend.adapter.watch(call.service, call.operation, request) if call.mutating else None
            iterable = self.app(environ, capture)  # type: ignore[arg-type]
            try:
                body = list(iterable)  # the call's effect is complete inside the lock
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
            if call.mutating and statuses and 200 <= statuses[-1] < 300:
                # an SQS receive that returned nothing and moved nothing changed nothing: no save for it
                kept = backend.recordable(call, statuses[-1], b"".join(body)) or (changed is not None and changed())
            else:
                kept = False
        if kept:
            try:
                backend.touched(service)  # under ON_REQUEST the save happens here, before the answer leaves
            except Exception:  # not saved: the client is told so, never that it succeeded
                status, headers, refused = refusal(backend.guard, call, "x-amz-target" in request.index)
                start_response(status, headers, sys.exc_info())
                return [refused]
        return body


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
