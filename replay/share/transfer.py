"""Moving state: ``replay export`` and ``replay import`` between data dirs, running servers and S3.

Export takes the state from, in this order of preference:

* the server given with ``server`` (``replay export --from URL``), or the one that
  holds the data dir (its ``.replay.lock`` names its URL): it builds the
  archive from its live state under its own locks (``POST /_replay/export``),
  so nothing it is doing meanwhile (recording, checkpoints, saves) can tear it;
* otherwise the data dir's files, read while holding the data dir
  (:class:`~replay.storage.datadir.DataDirLock`), so that no server starts on it meanwhile.

The archive goes to a local path (replaced atomically) or to ``s3://bucket/key``
(:mod:`replay.share.remote`).  With a key, the archive is signed; a server's
archive is unpacked, checked and packed again with the signature (the key never
travels to the server).

Import fetches an ``s3://`` archive to a temporary file first, then unpacks it into
a fresh data dir (:func:`replay.share.archive.import_archive`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from ..config import LOG_FILE_NAME
from ..errors import ArchiveError, ReplayError, SourceError, TransportError
from ..files import atomic_writer
from ..routes import EXPORT_PATH
from ..storage.checkpoint import read_manifest as read_checkpoint_manifest
from ..storage.datadir import DataDirLock, owner
from .archive import (
    ArchiveManifest,
    ImportReport,
    import_archive,
    read_manifest,
    require_fresh,
    stage_calls,
    stage_snapshot_files,
    write_archive,
)
from .remote import download, is_remote, parse_location, upload
from .sources import SourceKind, identify

__all__ = ["ExportReport", "export_state", "import_state"]

_DOWNLOAD_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What :func:`export_state` wrote where, from what."""

    destination: str
    source: str
    manifest: ArchiveManifest
    bytes: int
    duration: float

    def to_dict(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "source": self.source,
            **self.manifest.to_dict(),
            "archive_bytes": self.bytes,
            "duration": round(self.duration, 6),
        }


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="replay-transfer-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _from_server(url: str, workspace: Path, timeout: float) -> Path:
    """Ask the server at ``url`` for an archive of its live state; the file it was saved to."""
    target = f"{url.rstrip('/')}{EXPORT_PATH}"
    try:
        answer = requests.post(target, timeout=timeout, stream=True)
    except requests.RequestException as exc:
        raise TransportError(url, f"cannot reach the server at {url}: {exc}") from None
    with answer:
        if answer.status_code != 200:
            try:
                message = answer.json().get("message", answer.status_code)
            except ValueError:
                message = f"status {answer.status_code}"
            raise ReplayError(f"the server at {url} could not export its state: {message}")
        path = workspace / "server.replay"
        with open(path, "wb") as out:
            for chunk in answer.iter_content(_DOWNLOAD_CHUNK):
                out.write(chunk)
    return path


def _from_files(data_dir: Path, kind: SourceKind | None, staging: Path) -> dict[str, Any]:
    """Stage a data dir's state from its files (the caller holds the data dir)."""
    source = identify(data_dir, kind)
    if source.kind is SourceKind.SNAPSHOT:
        return {"kind": "snapshot", "services": stage_snapshot_files(data_dir, staging)}
    checkpoint = read_checkpoint_manifest(data_dir)
    emulator = dict(checkpoint.meta) if checkpoint is not None else {}
    return {"kind": "replay", "calls": stage_calls(source.segments(), staging), "emulator": emulator}


def export_state(
    destination: str,
    data_dir: Path | None = None,
    server: str | None = None,
    kind: SourceKind | None = None,
    key: bytes | None = None,
    endpoint_url: str | None = None,
    timeout: float = 600.0,
) -> ExportReport:
    """Write an archive of ``data_dir``'s state (or ``server``'s) to ``destination`` (a path or ``s3://``).

    :raises SourceError: the data dir holds no state, or the destination is a directory.
    :raises TransportError: the server or the S3 endpoint could not be reached.
    """
    started = time.perf_counter()
    remote = is_remote(destination)
    if remote:
        parse_location(destination)  # a bad location fails before any work
    elif Path(destination).is_dir():
        raise SourceError(destination, f"{destination} is a directory; name the archive file to write")
    source = None
    if server is None:
        if data_dir is None:
            raise SourceError("", "name a data dir or a server to export from")
        holder = owner(data_dir) if data_dir.is_dir() else None  # a running server knows more than its files
        if holder is not None:
            server = holder.get("url")
            if not server:
                raise ReplayError(f"{data_dir} is in use by process {holder.get('pid')}, which has no URL to ask")
        else:
            source = identify(data_dir, kind)  # a missing or foreign path fails here, before any lock is made
            if source.kind is SourceKind.ARCHIVE:
                raise SourceError(source.path, f"{source.path} is an archive already")
    with _workspace() as workspace:
        staging = workspace / "members"
        if server is not None:
            received = _from_server(server, workspace, timeout)
            manifest = read_manifest(received, staging if key is not None else None)
            origin = server
            if key is not None:  # sign it here: the key does not travel
                facts: dict[str, Any] = {
                    "kind": manifest.kind,
                    "calls": manifest.calls,
                    "services": manifest.services,
                    "emulator": manifest.emulator,
                }
                received = workspace / "signed.replay"
                manifest = write_archive(staging, received, key=key, **facts)
        else:
            assert source is not None
            origin = str(source.path)
            if source.data_dir is not None:
                with DataDirLock(source.data_dir, command="replay export"):
                    facts = _from_files(source.data_dir, source.kind, staging)
            else:  # a log file of its own (ours or LocalStack's): its calls
                facts = {"kind": "replay", "calls": stage_calls(source.segments(), staging)}
            received = workspace / "files.replay"
            manifest = write_archive(staging, received, key=key, **facts)
        size = received.stat().st_size
        if remote:
            upload(received, destination, endpoint_url)
        else:
            _place(received, Path(destination))
    return ExportReport(destination, origin, manifest, size, time.perf_counter() - started)


def _place(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` atomically (temp file, fsync, rename, directory fsync)."""
    with open(source, "rb") as data, atomic_writer(destination) as out:
        shutil.copyfileobj(data, out, _DOWNLOAD_CHUNK)


def import_state(
    archive: str,
    data_dir: Path,
    key: bytes | None = None,
    trust: bool = False,
    endpoint_url: str | None = None,
) -> ImportReport:
    """Unpack ``archive`` (a path or ``s3://``) into the fresh ``data_dir``.

    :raises ArchiveError: the archive is foreign, torn, corrupt, oversized, newer or untrusted, or there is no
        space for it (an ``s3://`` archive is named as such, not as the temporary file it was fetched to).
    :raises SourceError: the archive is missing, or ``data_dir`` is not empty.
    """
    if not is_remote(archive):
        if identify(archive).kind is SourceKind.LOCALSTACK:
            return _import_localstack(Path(archive), data_dir)
        return import_archive(Path(archive), data_dir, key, trust)
    parse_location(archive)
    require_fresh(data_dir)  # said before anything is downloaded
    with _workspace() as workspace:
        local = workspace / "download.replay"
        download(archive, local, endpoint_url)
        try:
            report = import_archive(local, data_dir, key, trust)
        except ArchiveError as exc:  # name the archive as it was given, not the temporary download
            prefix = f"{exc.path}: not imported ({exc.reason}): "
            detail = str(exc).removeprefix(prefix)
            raise ArchiveError(archive, exc.reason, detail) from None
    return dataclasses.replace(report, archive=archive)


def _import_localstack(log: Path, data_dir: Path) -> ImportReport:
    """A LocalStack log, converted into a fresh data dir's call log (:func:`replay.share.localstack.convert`)."""
    from .localstack import convert

    started = time.perf_counter()
    require_fresh(data_dir)
    existed = data_dir.exists()
    try:
        converted = convert(log, data_dir / LOG_FILE_NAME)
    except BaseException:
        if not existed:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    details = {"read": converted.read, "dropped": converted.dropped, "redacted": converted.redacted}
    duration = time.perf_counter() - started
    return ImportReport(str(log), data_dir, "localstack", converted.written, [], duration, details=details)
