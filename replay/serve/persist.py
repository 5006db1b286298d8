"""``replay.persist``: one call keeps an in-process WSGI app's state across restarts (the library's entry point)."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import TYPE_CHECKING

from ..adapters import StateAdapter
from ..backends.record_replay import CheckpointPolicy, RecordReplayBackend
from ..config import Config, FsyncPolicy
from ..record.classify import Classifier, DefaultClassifier
from ..record.longpoll import LongPolls
from ..record.seeding import Seeder, generic_seeder
from ..storage.datadir import DataDirLock

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["persist"]


def persist(
    app: WSGIApplication,
    data_dir: str | Path = "volume",
    fsync: FsyncPolicy | str = FsyncPolicy.EVERYSEC,
    classifier: Classifier | None = None,
    seeder: Seeder | None = None,
    adapter: StateAdapter | None = None,
    checkpoints: CheckpointPolicy | None = None,
    seed: bool = True,
) -> WSGIApplication:
    """Restore ``app`` from ``data_dir`` and return it wrapped so that new calls are recorded.

    The wrapping is :class:`RecordingMiddleware` behind :class:`LongPolls` (SQS long polls wait
    outside the app, as instant attempts).

    Each recorded call runs with its own clock and random stream, so that its replay makes the same ids,
    times and tokens: ``seeder`` chooses how (:func:`moto_seeder` for moto); without one, the standard
    library's sources are seeded (:func:`replay.record.seeding.generic_seeder`; ``seed=False``: none at all).
    Calls that are not AWS calls are named after the app's ``service_for(environ)``, if it has one, else
    after their path (moto's app excepted).
    Pass ``adapter`` (e.g. ``replay.adapters.moto.MotoAdapter()``) to fold the log into checkpoints
    as ``checkpoints`` says (by default as ``replay serve`` does), so that a start replays only the
    calls since the last one.

    The log is synced and closed at interpreter exit.  With ``adapter``, this process owns the data
    dir until then (checkpoints fold the log into this process's state).

    :raises LogCorruptError: the log has a malformed line before its end.
    :raises DataDirInUseError: with ``adapter``, another process owns the data dir.
    """
    policy = fsync if isinstance(fsync, FsyncPolicy) else Config.load({"fsync": fsync}).fsync
    if seeder is None and seed:
        seeder = generic_seeder()
    if classifier is None and not type(app).__module__.startswith("moto."):
        classifier = DefaultClassifier(service_for=getattr(app, "service_for", None), name_by_path=True)
    owner = DataDirLock(Path(data_dir), command="replay.persist") if adapter is not None else None
    backend = RecordReplayBackend(
        app,
        Path(data_dir) / "recorded_api_calls.json",
        policy,
        classifier,
        seeder,
        adapter,
        checkpoints,
        exclusive=owner is not None,
    )
    try:
        backend.restore()
    except BaseException:
        if owner is not None:
            owner.release()
        raise
    if owner is not None:
        atexit.register(owner.release)  # registered first, so it runs after the log is closed
    atexit.register(backend.close)
    return LongPolls(backend.wrap(app), classifier)
