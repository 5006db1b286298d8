"""Portable archives: a data dir's whole state as one versioned, checksummed file (``replay export`` / ``import``).

An archive is a gzip-compressed POSIX tar whose members come in this order::

    replay-archive.json          the manifest: format, kind, versions, and every other member's size and SHA-256
    calls.json                   kind "replay": the calls that rebuild the state from empty, compacted (a v1 call log)
    snapshots/<service>.state    kind "snapshot": each service's serialised state (a snapshot's payload)
    assets/<service>/<sha256>    the large data those refer to (S3 object bodies), named by their SHA-256

The manifest::

    {"format": 1, "kind": "replay", "created": 1764662400.0, "replay": "0.1.0",
     "emulator": {"moto": "5.2.5"}, "calls": 1234, "services": {},
     "files": {"calls.json": {"size": 81234, "sha256": "..."}}, "hmac": "..."}

``hmac`` (present when the exporter was given a key) is HMAC-SHA256 over the
canonical manifest without it; the manifest holds every member's SHA-256, so it
covers the whole archive.  Importing checks, before anything lands in the data
dir: the gzip stream and tar framing (a cut-short file is *torn*), the format
version (*newer* is refused), that the members are exactly those the manifest
lists, each with its size and SHA-256 (*corrupt*), and who vouches for it:

* a ``replay`` archive holds API calls, which are data: it imports anywhere (with
  a key given, its ``hmac`` must check out);
* a ``snapshot`` archive holds pickles, which run code when loaded: it imports
  only if its ``hmac`` checks out with the importer's key (``REPLAY_ARCHIVE_KEY``
  or ``--key-file``), or with ``trust=True`` (``--trust``: "I made this archive").
  Its snapshots are then signed with the new data dir's own key
  (:mod:`replay.snapshot`), so the snapshot backend loads them as its own.

An import goes into a fresh data dir (missing or empty) through a staging
directory next to it, moved into place only when everything checked out: a bad
archive changes nothing on disk.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import hmac
import io
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, cast

import orjson

from . import __version__
from .config import LOG_FILE_NAME
from .errors import ArchiveError, SourceError
from .files import FILE_MODE, atomic_writer, ensure_private_dir, fsync_dir
from .log import Segment
from .rewrite import compact_logs
from .snapshot import load_key, read_snapshot, write_snapshot
from .sources import snapshot_path, snapshot_services

__all__ = [
    "ARCHIVE_FORMAT",
    "MANIFEST_MEMBER",
    "ArchiveManifest",
    "ImportReport",
    "import_archive",
    "read_manifest",
    "require_fresh",
    "stage_calls",
    "stage_snapshot",
    "stage_snapshot_files",
    "write_archive",
]

ARCHIVE_FORMAT = 1
MANIFEST_MEMBER = "replay-archive.json"
CALLS_MEMBER = "calls.json"
KINDS = ("replay", "snapshot")
_MAX_MANIFEST = 16 << 20
_CHUNK = 1 << 20
_MEMBER = re.compile(r"calls\.json|snapshots/[A-Za-z0-9_.-]+\.state|assets/[A-Za-z0-9_.-]+/[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class ArchiveManifest:
    """What an archive's ``replay-archive.json`` says.

    :ivar kind: ``"replay"`` (calls) or ``"snapshot"`` (serialised state).
    :ivar created: when it was exported (Unix seconds).
    :ivar replay: the ``replay`` version that exported it.
    :ivar emulator: the emulator's versions (``{"moto": "5.2.5"}``), when known.
    :ivar calls: how many calls ``calls.json`` holds (``replay`` kind).
    :ivar services: service -> the versions its snapshot was taken with (``snapshot`` kind).
    :ivar files: member name -> ``(size, sha256)``.
    :ivar signed: whether it carries an ``hmac``.
    """

    kind: str
    created: float
    replay: str
    emulator: dict[str, str]
    calls: int
    services: dict[str, dict[str, str]]
    files: dict[str, tuple[int, str]]
    signed: bool
    document: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def size(self) -> int:
        """Bytes of the members, uncompressed."""
        return sum(size for size, _digest in self.files.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "format": ARCHIVE_FORMAT,
            "kind": self.kind,
            "created": self.created,
            "replay": self.replay,
            "emulator": self.emulator,
            "calls": self.calls,
            "services": sorted(self.services),
            "files": len(self.files),
            "bytes": self.size,
            "signed": self.signed,
        }


def _signature(key: bytes, document: dict[str, Any]) -> str:
    canonical = orjson.dumps({k: v for k, v in document.items() if k != "hmac"}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _parse_manifest(where: Path | str, data: bytes) -> ArchiveManifest:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(where, "malformed", f"its manifest is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ArchiveError(where, "malformed", "its manifest is not an object")
    version = document.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArchiveError(where, "malformed", "its manifest has no format version")
    if version > ARCHIVE_FORMAT:
        raise ArchiveError(
            where, "newer", f"archive format {version} is newer than this replay reads (up to {ARCHIVE_FORMAT})"
        )
    try:
        kind = str(document["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        files: dict[str, tuple[int, str]] = {}
        for name, about in dict(document["files"]).items():
            if not _MEMBER.fullmatch(name):
                raise ValueError(f"unexpected member name {name!r}")
            size, digest = int(about["size"]), str(about["sha256"])
            if size < 0 or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"bad size or digest for {name}")
            files[name] = (size, digest)
        return ArchiveManifest(
            kind=kind,
            created=float(document["created"]),
            replay=str(document.get("replay", "")),
            emulator={str(k): str(v) for k, v in dict(document.get("emulator") or {}).items()},
            calls=int(document.get("calls") or 0),
            services={
                str(service): {str(k): str(v) for k, v in dict(meta or {}).items()}
                for service, meta in dict(document.get("services") or {}).items()
            },
            files=files,
            signed="hmac" in document,
            document=document,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveError(where, "malformed", f"its manifest is not one replay wrote ({exc})") from None


# --- staging: the members of an archive, as files in a directory ------------------------------------------------


def stage_calls(segments: Sequence[Segment], staging: Path) -> int:
    """Write the calls of ``segments``, compacted, as ``staging/calls.json``; how many were kept."""
    return compact_logs(segments, Path(staging) / CALLS_MEMBER).kept


def stage_snapshot(staging: Path, service: str, payload: bytes) -> None:
    """Write ``service``'s serialised state as ``staging/snapshots/<service>.state``.

    Its assets go to ``staging/assets/<service>/`` (the state adapter writes them there when
    given that directory to dump into).
    """
    path = Path(staging) / "snapshots" / f"{service}.state"
    ensure_private_dir(path.parent)
    path.write_bytes(payload)


def _copy_assets(source: Path, destination: Path) -> None:
    if not source.is_dir():
        return
    for asset in source.iterdir():
        if asset.is_file() and re.fullmatch(r"[0-9a-f]{64}", asset.name):
            ensure_private_dir(destination)
            try:
                os.link(asset, destination / asset.name)
            except OSError:  # another filesystem, or no hard links: copy it
                shutil.copyfile(asset, destination / asset.name)


def stage_snapshot_files(data_dir: Path, staging: Path, services: Iterable[str] | None = None) -> dict[str, Any]:
    """Stage the snapshots of a ``snapshot`` data dir, each checked against the data dir's key.

    Returns the ``services`` part of the manifest (service -> the versions it was taken with).

    :raises SnapshotError: a snapshot is torn, corrupt, foreign or newer.
    """
    state = Path(data_dir) / "state"
    key = load_key(state, create=False)
    chosen = list(services) if services is not None else snapshot_services(data_dir)
    found: dict[str, Any] = {}
    for service in chosen:
        path = snapshot_path(data_dir, service)
        if not path.exists():
            continue
        header, payload = read_snapshot(path, key)
        stage_snapshot(staging, service, payload)
        _copy_assets(state / service, Path(staging) / "assets" / service)
        found[service] = dict(header.get("meta") or {})
    return found


# --- writing ---------------------------------------------------------------------------------------------------


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _members(staging: Path) -> list[str]:
    names = [p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()]
    order = {"calls.json": 0, "snapshots": 1, "assets": 2}
    return sorted(names, key=lambda name: (order.get(name.split("/", 1)[0], 3), name))


def _tarinfo(name: str, size: int, created: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(created)
    info.mode = FILE_MODE
    info.uname = info.gname = ""
    return info


def write_archive(
    staging: Path,
    destination: IO[bytes] | Path,
    kind: str,
    calls: int = 0,
    services: dict[str, Any] | None = None,
    emulator: dict[str, str] | None = None,
    key: bytes | None = None,
) -> ArchiveManifest:
    """Pack the members staged in ``staging`` into an archive written to ``destination``.

    A path is replaced atomically (temp file, fsync, rename, directory fsync); a stream is written as it is.
    """
    staging = Path(staging)
    created = time.time()
    names = _members(staging)
    for name in names:
        if not _MEMBER.fullmatch(name):
            raise ValueError(f"{staging}: {name} is not an archive member")
    files = {name: _digest(staging / name) for name in names}
    document: dict[str, Any] = {
        "format": ARCHIVE_FORMAT,
        "kind": kind,
        "created": created,
        "replay": __version__,
        "emulator": {k: v for k, v in (emulator or {}).items() if k != "python"},
        "calls": calls,
        "services": services or {},
        "files": {name: {"size": size, "sha256": digest} for name, (size, digest) in files.items()},
    }
    if key is not None:
        document["hmac"] = _signature(key, document)
    manifest_bytes = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"

    def pack(out: IO[bytes]) -> None:
        with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tarinfo(MANIFEST_MEMBER, len(manifest_bytes), created), io.BytesIO(manifest_bytes))
            for name in names:
                with open(staging / name, "rb") as member:
                    tar.addfile(_tarinfo(name, files[name][0], created), member)

    if isinstance(destination, Path):
        with atomic_writer(destination) as out:
            pack(out)
    else:
        pack(destination)
    return _parse_manifest(str(destination), manifest_bytes)


# --- reading ---------------------------------------------------------------------------------------------------


def _read_exact(stream: IO[bytes], size: int, sink: IO[bytes] | None) -> str:
    sha = hashlib.sha256()
    left = size
    while left > 0:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            raise EOFError("member cut short")
        sha.update(chunk)
        if sink is not None:
            sink.write(chunk)
        left -= len(chunk)
    return sha.hexdigest()


def _check_trust(where: Path | str, manifest: ArchiveManifest, key: bytes | None, trust: bool) -> None:
    if key is not None:
        if not manifest.signed:
            raise ArchiveError(where, "untrusted", "it is not signed, but an archive key was given to check it with")
        if not hmac.compare_digest(_signature(key, manifest.document), str(manifest.document.get("hmac"))):
            raise ArchiveError(where, "untrusted", "its signature does not match the archive key given (another key?)")
        return
    if manifest.kind == "snapshot" and not trust:
        how = "signed, but no archive key was given" if manifest.signed else "not signed"
        raise ArchiveError(
            where,
            "untrusted",
            f"it holds pickled snapshots, which run code when loaded, and is {how}: "
            "give the key it was exported with (REPLAY_ARCHIVE_KEY or --key-file), or --trust if you made it",
        )


def read_manifest(
    archive: Path, into: Path | None = None, key: bytes | None = None, trust: bool = True
) -> ArchiveManifest:
    """Check every member of ``archive`` against its manifest, writing them under ``into`` if given.

    With ``into`` left ``None`` nothing is written (``replay inspect`` of an archive).

    :raises ArchiveError: the archive is foreign, torn, corrupt, newer, malformed or untrusted.
    """
    archive = Path(archive)
    try:
        handle = open(archive, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise SourceError(archive, f"no archive at {archive}: no such file") from None
    with handle:
        if handle.read(2) != b"\x1f\x8b":
            raise ArchiveError(archive, "foreign", "not a replay archive (not gzip-compressed)")
        handle.seek(0)
        try:
            return _read_members(archive, handle, into, key, trust)
        except ArchiveError:
            raise
        except (EOFError, zlib.error) as exc:
            raise ArchiveError(archive, "torn", f"the file ends before the archive does ({exc})") from None
        except tarfile.TarError as exc:
            if "end of data" in str(exc) or "truncated" in str(exc):
                raise ArchiveError(archive, "torn", f"the file ends before the archive does ({exc})") from None
            raise ArchiveError(archive, "corrupt", f"its framing is broken ({exc})") from None
        except OSError as exc:
            if into is not None and exc.filename is not None:
                raise  # writing the staging directory failed: a disk error, not the archive's
            raise ArchiveError(archive, "corrupt", f"it cannot be decompressed ({exc})") from None


def _read_members(
    archive: Path, handle: IO[bytes], into: Path | None, key: bytes | None, trust: bool
) -> ArchiveManifest:
    stream = gzip.GzipFile(fileobj=handle, mode="rb")
    manifest = _read_tar(archive, cast(IO[bytes], stream), into, key, trust)
    while stream.read(_CHUNK):  # to the end of the gzip stream: its length and CRC-32 are checked there
        pass
    return manifest


def _read_tar(archive: Path, handle: IO[bytes], into: Path | None, key: bytes | None, trust: bool) -> ArchiveManifest:
    with tarfile.open(fileobj=handle, mode="r|") as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST_MEMBER or not first.isreg() or first.size > _MAX_MANIFEST:
            raise ArchiveError(archive, "foreign", f"a tar file, but its first member is not {MANIFEST_MEMBER}")
        stream = tar.extractfile(first)
        assert stream is not None
        manifest = _parse_manifest(archive, stream.read())
        _check_trust(archive, manifest, key, trust)
        seen: set[str] = set()
        while (member := tar.next()) is not None:
            expected = manifest.files.get(member.name)
            if expected is None or member.name in seen:
                raise ArchiveError(archive, "corrupt", f"member {member.name!r} is not listed in its manifest")
            if not member.isreg():
                raise ArchiveError(archive, "corrupt", f"member {member.name!r} is not a regular file")
            if member.size != expected[0]:
                raise ArchiveError(
                    archive, "corrupt", f"{member.name} is {member.size} bytes, its manifest says {expected[0]}"
                )
            data = tar.extractfile(member)
            assert data is not None
            if into is None:
                digest = _read_exact(data, member.size, None)
            else:
                target = into / member.name
                ensure_private_dir(target.parent)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
                with os.fdopen(fd, "wb") as sink:
                    digest = _read_exact(data, member.size, sink)
            if digest != expected[1]:
                raise ArchiveError(archive, "corrupt", f"{member.name} does not match its SHA-256")
            seen.add(member.name)
        missing = sorted(set(manifest.files) - seen)
        if missing:
            raise ArchiveError(archive, "torn", f"{len(missing)} members its manifest lists are missing ({missing[0]})")
    return manifest


# --- importing -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What an import put where.

    :ivar kind: ``"replay"`` or ``"snapshot"`` (an archive's), or ``"localstack"`` (a converted LocalStack log).
    :ivar manifest: the archive's manifest (``None`` for a LocalStack log).
    :ivar details: more about it (what a LocalStack conversion dropped ...).
    """

    archive: str
    data_dir: Path
    kind: str
    calls: int
    services: list[str]
    duration: float
    manifest: ArchiveManifest | None = None
    details: dict[str, object] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        document: dict[str, object] = self.manifest.to_dict() if self.manifest is not None else {}
        document.update(
            archive=self.archive,
            data_dir=str(self.data_dir),
            kind=self.kind,
            calls=self.calls,
            services=self.services,
            duration=round(self.duration, 6),
            **self.details,
        )
        return document


def require_fresh(data_dir: Path) -> None:
    """Refuse a ``data_dir`` that is a file or not empty: an import only fills a fresh one.

    :raises SourceError: it is.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise SourceError(data_dir, f"{data_dir} is a file, not a data dir")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise SourceError(
            data_dir,
            f"{data_dir} is not empty: import into a fresh data dir (a new path, or remove this one first)",
        )


def _lay_out(raw: Path, layout: Path, manifest: ArchiveManifest) -> None:
    """Arrange verified members as a data dir of the archive's kind."""
    ensure_private_dir(layout)
    if manifest.kind == "replay":
        source = raw / CALLS_MEMBER
        if source.exists():
            os.replace(source, layout / LOG_FILE_NAME)
        else:
            (layout / LOG_FILE_NAME).touch(mode=FILE_MODE)
        return
    state = layout / "state"
    key = load_key(state)  # the new data dir's own key: its snapshots are signed with it
    for name in manifest.files:
        if name.startswith("snapshots/"):
            service = name[len("snapshots/") : -len(".state")]
            payload = (raw / name).read_bytes()
            meta = manifest.services.get(service, {})
            write_snapshot(snapshot_path(layout, service), service, payload, key, meta)
    assets = raw / "assets"
    if assets.is_dir():
        for service_dir in assets.iterdir():
            os.replace(service_dir, state / service_dir.name)


def import_archive(archive: Path, data_dir: Path, key: bytes | None = None, trust: bool = False) -> ImportReport:
    """Unpack ``archive`` into the fresh (missing or empty) ``data_dir``, after checking all of it.

    :raises ArchiveError: the archive is foreign, torn, corrupt, newer, malformed or untrusted.
    :raises SourceError: ``data_dir`` is not empty, or the archive is missing.
    """
    started = time.perf_counter()
    archive, data_dir = Path(archive), Path(data_dir).absolute()
    require_fresh(data_dir)
    created: list[Path] = []
    parent = data_dir.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    ensure_private_dir(data_dir.parent)
    staging = data_dir.parent / f".{data_dir.name}.import-{os.getpid()}.tmp"
    try:
        manifest = read_manifest(archive, staging / "raw", key, trust)
        _lay_out(staging / "raw", staging / "data", manifest)
        require_fresh(data_dir)  # still fresh: nobody started on it meanwhile
        if data_dir.exists():
            for child in (staging / "data").iterdir():
                os.replace(child, data_dir / child.name)
            fsync_dir(data_dir)
        else:
            os.replace(staging / "data", data_dir)
        fsync_dir(data_dir.parent)
    except BaseException:
        for directory in created:  # leave no trace of an import that did not happen
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    duration = time.perf_counter() - started
    return ImportReport(
        str(archive), data_dir, manifest.kind, manifest.calls, sorted(manifest.services), duration, manifest
    )
