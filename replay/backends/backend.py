"""Persistence backends: one contract, chosen once from the configuration.

A :class:`Backend` restores state before the server takes requests, wraps the
emulator so that new state is kept, reports its status to the health endpoint,
and closes cleanly.  The server talks to this contract only; which backend it
has is decided in :func:`create_backend` and nowhere else.

==================  ==========================================================
``replay``          :class:`~replay.backends.record_replay.RecordReplayBackend`
``snapshot``        :class:`~replay.backends.snapshot.SnapshotBackend`
persistence off     :class:`DisabledBackend`
==================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..adapters import StateAdapter
from ..config import BackendKind, Config, LoadStrategy
from ..errors import ConfigError, ReplayError
from ..record.classify import Classifier
from ..record.seeding import Seeder
from .record_replay import CheckpointPolicy, RecordReplayBackend
from .selective import narrow
from .snapshot import SnapshotBackend

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["Backend", "DisabledBackend", "create_backend"]


class Backend(Protocol):
    """What the server needs from a persistence strategy."""

    @property
    def persistence(self) -> str:
        """``"initialized"`` once restored, ``"disabled"`` when not persisting."""
        ...

    def restore(self) -> None:
        """Bring the emulator back to its persisted state (before the first request)."""
        ...

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        """``app`` with whatever keeps new state persistent (called after :meth:`restore`)."""
        ...

    def status(self) -> dict[str, object]:
        """Extra facts for the health endpoint (JSON-serialisable)."""
        ...

    def failed_services(self) -> list[str]:
        """The emulator's services whose saved state could not be loaded (calls to them answer 500)."""
        ...

    def save(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        """Make the state of ``services`` (default: all) durable now; one result per service."""
        ...

    def load(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        """Bring the persisted state of ``services`` (default: all) back now; one result per service."""
        ...

    def compact(self) -> dict[str, object]:
        """Make the next start cheaper now (a checkpoint, or a compacted log); what was done.

        :raises ReplayError: there is nothing this backend can compact.
        """
        ...

    def export(self, staging: Path) -> dict[str, Any]:
        """Write the members of an archive of the current state into ``staging`` (:mod:`replay.share.archive`).

        Returns what the archive's manifest says besides its files: ``kind`` and, as they apply,
        ``calls``, ``services`` and ``emulator``.

        :raises ReplayError: this backend keeps no state to export.
        """
        ...

    def close(self) -> None:
        """Make everything durable and release files (idempotent)."""
        ...


class DisabledBackend:
    """Persistence off: nothing restored, nothing kept."""

    persistence = "disabled"

    def restore(self) -> None:
        return None

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        return app

    def status(self) -> dict[str, object]:
        return {}

    def failed_services(self) -> list[str]:
        return []

    def save(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        yield {"service": ",".join(services or ["*"]), "status": "error", "message": "persistence is disabled"}

    def load(self, services: list[str] | None = None) -> Iterator[dict[str, str]]:
        return self.save(services)

    def compact(self) -> dict[str, object]:
        raise ReplayError("persistence is disabled: there is nothing to compact")

    def export(self, staging: Path) -> dict[str, Any]:
        raise ReplayError("persistence is disabled: there is no state to export")

    def close(self) -> None:
        return None


def create_backend(
    config: Config,
    app: WSGIApplication,
    classifier: Classifier | None = None,
    seeder: Seeder | None = None,
    adapter: StateAdapter | None = None,
    reset: Callable[[], None] | None = None,
    *,
    exclusive: bool = False,
    before_fold: Callable[[], None] | None = None,
) -> Backend:
    """The backend ``config`` asks for, restoring into and recording around ``app``.

    ``config.services`` and ``config.scope`` narrow ``classifier`` and ``adapter``
    (:func:`replay.scope.narrow`): what is not kept is neither recorded nor saved.

    ``exclusive``: the caller holds the data dir's lock (the ``replay`` backend's log then has one writer).
    ``before_fold``: called before a checkpoint folds calls out of the log (the ``replay`` backend).

    :raises ConfigError: ``snapshot`` was asked for an emulator without a state adapter, or
        ``config.services`` names a service the emulator does not have.
    """
    if not config.persistence:
        return DisabledBackend()
    classifier, adapter = narrow(config.services, config.scope, classifier, adapter)
    if config.backend is BackendKind.REPLAY:
        policy = CheckpointPolicy(config.checkpoint_percentage, config.checkpoint_min_size)
        return RecordReplayBackend(
            app,
            config.log_path,
            config.fsync,
            classifier,
            seeder,
            adapter,
            policy,
            reset,
            call_timeout=config.call_timeout,
            exclusive=exclusive,
            lazy=config.load_strategy is not LoadStrategy.ON_STARTUP,
            before_fold=before_fold,
        )
    if config.backend is BackendKind.SNAPSHOT:
        if adapter is None:
            raise ConfigError("PERSISTENCE_BACKEND", "snapshot", hint="this emulator has no state adapter; use replay")
        return SnapshotBackend(
            adapter, config.data_dir, config.save_strategy, config.load_strategy, config.flush_interval, classifier
        )
    raise AssertionError(f"unhandled backend {config.backend!r}")  # pragma: no cover - enum is closed
