"""Portable archives: a data dir's whole state as one versioned, checksummed file (``replay export`` / ``import``).

An archive is a gzip-compressed POSIX tar whose members come in this order::

    replay-archive.json          the manifest: format, kind, versions, and every other member's size and SHA-256
    calls.json                   kind "replay": the calls that rebuild the state from empty, compacted (a v1 call log)
    bodies/<sha256>              kind "replay": the large request bodies those calls name (:mod:`replay.record.bodies`)
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
  (:mod:`replay.storage.snapshot`), so the snapshot backend loads them as its own.

An import goes into a fresh data dir (missing or empty) through a staging
directory next to it, moved into place only when everything checked out: a bad
archive changes nothing on disk.

A hostile archive (a compression bomb, a manifest that lies) cannot fill the disk
or the memory: the archive is read in one streaming pass, in steps of at most
1 MiB, and

* nothing is unpacked until the manifest is read and the filesystem has room for
  every member it lists, with 1% of it (up to 64 MiB) to spare (*no space*);
* a member is unpacked only if it is a regular file (no link, device or
  directory) with a safe name (no absolute path, ``.`` or ``..``) that the
  manifest lists once, and only as many bytes as the manifest declares (*corrupt*);
* no more is decompressed than the manifest's members, 5 KiB of headers each and
  64 KiB of padding at the end (16 MiB before the manifest); anything beyond,
  a header announcing more, or data after the tar or the gzip stream, is refused
  as soon as it is met (*oversized* or *corrupt*).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import io
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from ..config import LOG_FILE_NAME
from ..errors import ArchiveError, SourceError
from ..files import FILE_MODE, atomic_writer, ensure_private_dir, fsync_dir
from ..record.bodies import BODIES_DIR
from ..record.reader import Segment
from ..storage.rewrite import compact_logs
from ..storage.snapshot import load_key, read_snapshot, write_snapshot
from ..version import __version__
from .sources import snapshot_path, snapshot_services
from .tar import HOSTILE, Inflater, TarReader

__all__ = [
    "ARCHIVE_FORMAT",
    "MANIFEST_MEMBER",
    "ArchiveManifest",
    "ImportReport",
    "file_digest",
    "import_archive",
    "make_durable",
    "parents_made_for",
    "publish",
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
_PART = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"  # a service's name: no "." or ".." (nor any other leading dot)
_MEMBER = re.compile(rf"calls\.json|bodies/[0-9a-f]{{64}}|snapshots/{_PART}\.state|assets/{_PART}/[0-9a-f]{{64}}")


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


def file_digest(path: Path) -> tuple[int, str]:
    """``(size, SHA-256 hex)`` of the file at ``path``, read in steps of 1 MiB."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _members(staging: Path) -> list[str]:
    names = [p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()]
    order = {"calls.json": 0, "bodies": 1, "snapshots": 2, "assets": 3}
    return sorted(names, key=lambda name: (order.get(name.split("/", 1)[0], 4), name))


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
    files = {name: file_digest(staging / name) for name in names}
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


# --- reading (the archive's bytes: replay.share.tar) ------------------------------------------------------

_FS_BLOCK = 4096  # what a file costs on disk is counted in blocks of this size
_MAX_RESERVE = 64 << 20  # an import leaves 1% of the filesystem free, up to this much


def _unsafe(name: str) -> bool:
    return name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in name.split("/"))


def _room_needed(manifest: ArchiveManifest) -> int:
    """What unpacking ``manifest``'s members may take on disk, at most.

    Each member in whole filesystem blocks plus one for its metadata; a snapshot twice, since it is written
    again with the new data dir's signature while its unpacked copy still exists; a few blocks for directories.
    """
    need = 4 * _FS_BLOCK
    for name, (size, _digest) in manifest.files.items():
        blocks = -(-size // _FS_BLOCK) + 1
        need += blocks * _FS_BLOCK * (2 if name.startswith("snapshots/") else 1)
    return need


def _check_space(archive: Path, manifest: ArchiveManifest, places: Sequence[Path]) -> None:
    """Refuse an archive whose members do not fit on the filesystem of each of ``places`` (the data dir, and the
    staging directory next to it: a data dir that is a mount point is on another one), leaving 1% of it (up
    to 64 MiB) free.

    :raises ArchiveError: ``"no space"``, naming the place and the sizes.
    """
    need = _room_needed(manifest)
    checked: set[int] = set()
    for place in places:
        probe = place
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        device = probe.stat().st_dev
        if device in checked:
            continue
        checked.add(device)
        usage = shutil.disk_usage(probe)
        reserve = min(_MAX_RESERVE, usage.total // 100)
        if need + reserve > usage.free:
            raise ArchiveError(
                archive,
                "no space",
                f"it unpacks to {manifest.size:,} bytes ({need:,} on disk), but the filesystem holding {place} "
                f"has {usage.free:,} bytes free, of which {reserve:,} stay free: "
                "free some space, or import into a data dir on another filesystem",
            )


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
    archive: Path,
    into: Path | None = None,
    key: bytes | None = None,
    trust: bool = True,
    destination: Path | None = None,
) -> ArchiveManifest:
    """Check every member of ``archive`` against its manifest, writing them under ``into`` if given.

    With ``into`` left ``None`` nothing is written (``replay inspect`` of an archive).  Guarantees, whatever
    the file holds:

    * nothing is written before the manifest is read, checked and trusted, and ``into``'s filesystem was
      found to have room for every member it lists, leaving 1% of it (up to 64 MiB) free (named as
      ``destination`` in the error, ``into`` by default);
    * a member is written only if it is a regular file with a safe name (no absolute path, ``.`` or ``..``)
      that the manifest lists once, of the size it lists; at most that many bytes are written;
    * no more than the manifest's members, 5 KiB of headers each and 64 KiB at the end are decompressed
      (16 MiB before the manifest), in steps of at most 1 MiB: a compression bomb is refused after at most
      that much reading, with bounded memory.

    On refusal, what was written under ``into`` stays there for the caller to remove.

    :raises ArchiveError: the archive is foreign, torn, corrupt, oversized, newer, malformed or untrusted, or
        there is no space for it.
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
            return _read_members(archive, Inflater(archive, handle), into, key, trust, destination)
        except EOFError as exc:
            raise ArchiveError(archive, "torn", f"the file ends before the archive does ({exc})") from None
        except zlib.error as exc:
            raise ArchiveError(archive, "corrupt", f"it cannot be decompressed ({exc})") from None


def _read_members(
    archive: Path,
    source: Inflater,
    into: Path | None,
    key: bytes | None,
    trust: bool,
    destination: Path | None,
) -> ArchiveManifest:
    tar = TarReader(archive, source, _MAX_MANIFEST)
    first = tar.header()
    if first is None or first.name != MANIFEST_MEMBER or not first.regular:
        raise ArchiveError(archive, "foreign", f"a tar file, but its first member is not {MANIFEST_MEMBER}")
    if first.size > _MAX_MANIFEST:
        raise ArchiveError(
            archive,
            "oversized",
            f"its manifest is {first.size:,} bytes, replay reads at most {_MAX_MANIFEST:,} ({HOSTILE})",
        )
    manifest = _parse_manifest(archive, tar.content(first))
    _check_trust(archive, manifest, key, trust)
    tar.bound([size for size, _digest in manifest.files.values()])
    if into is not None:
        _check_space(archive, manifest, [destination or into, into])
    seen: set[str] = set()
    while (member := tar.header()) is not None:
        name = member.name
        if not member.regular:
            what = f"member {name!r} is {member.describe()}, not a regular file"
            raise ArchiveError(archive, "corrupt", f"{what} ({HOSTILE})")
        if _unsafe(name):
            what = f"member {name!r} has an unsafe path, absolute or with . or .."
            raise ArchiveError(archive, "corrupt", f"{what} ({HOSTILE})")
        expected = manifest.files.get(name)
        if expected is None:
            raise ArchiveError(archive, "corrupt", f"member {name!r} is not listed in its manifest")
        if name in seen:
            raise ArchiveError(archive, "corrupt", f"member {name!r} appears twice")
        if member.size != expected[0]:
            raise ArchiveError(archive, "corrupt", f"{name} is {member.size} bytes, its manifest says {expected[0]}")
        if into is None:
            digest = tar.copy(member, None)
        else:
            target = into / name
            ensure_private_dir(target.parent)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                with os.fdopen(fd, "wb") as sink:
                    digest = tar.copy(member, sink)
            except OSError as exc:  # writing failed (the disk filled up meanwhile ...): say where
                if exc.filename is None:
                    raise OSError(exc.errno, exc.strerror, str(target)) from exc
                raise
        if digest != expected[1]:
            raise ArchiveError(archive, "corrupt", f"{name} does not match its SHA-256")
        seen.add(name)
    tar.finish()
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
        if (raw / BODIES_DIR).is_dir():
            os.replace(raw / BODIES_DIR, layout / BODIES_DIR)
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


def make_durable(root: Path) -> None:
    """fsync every file under ``root``, then every directory, deepest first (``root`` included)."""
    directories = [root]
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            directories.append(path)
        elif path.is_file():
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for directory in sorted(directories, key=lambda path: len(path.parts), reverse=True):
        fsync_dir(directory)


def publish(staged: Path, data_dir: Path) -> None:
    """Make the data dir laid out in ``staged`` durable, then move it into place as ``data_dir`` (still fresh).

    Every file and entry is on disk before the rename that publishes them.

    :raises SourceError: ``data_dir`` was filled meanwhile (nothing of ``staged`` is moved then).
    """
    make_durable(staged)
    require_fresh(data_dir)  # still fresh: nobody started on it meanwhile
    if data_dir.exists():
        for child in staged.iterdir():
            os.replace(child, data_dir / child.name)
        fsync_dir(data_dir)
        staged.rmdir()
    else:
        os.replace(staged, data_dir)
    fsync_dir(data_dir.parent)


@contextlib.contextmanager
def parents_made_for(data_dir: Path) -> Iterator[None]:
    """Make ``data_dir``'s missing parents for the block; if it fails, remove them again (and the staging in them).

    An import or a restore that did not happen leaves no trace.
    """
    created: list[Path] = []
    parent = data_dir.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    ensure_private_dir(data_dir.parent)
    try:
        yield
    except BaseException:
        for directory in created:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def import_archive(archive: Path, data_dir: Path, key: bytes | None = None, trust: bool = False) -> ImportReport:
    """Unpack ``archive`` into the fresh (missing or empty) ``data_dir``, after checking all of it.

    The members are unpacked into a staging directory next to ``data_dir`` (see :func:`read_manifest` for
    what is checked before and while they are); on any failure it is removed, with the parents of
    ``data_dir`` this call created, and ``data_dir`` is left as it was.

    :raises ArchiveError: the archive is foreign, torn, corrupt, oversized, newer, malformed or untrusted, or
        its members do not fit on ``data_dir``'s filesystem (``"no space"``).
    :raises SourceError: ``data_dir`` is not empty, or the archive is missing.
    """
    started = time.perf_counter()
    archive, data_dir = Path(archive), Path(data_dir).absolute()
    require_fresh(data_dir)
    staging = data_dir.parent / f".{data_dir.name}.import-{os.getpid()}.tmp"
    with parents_made_for(data_dir):
        try:
            manifest = read_manifest(archive, staging / "raw", key, trust, destination=data_dir)
            _lay_out(staging / "raw", staging / "data", manifest)
            publish(staging / "data", data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    duration = time.perf_counter() - started
    return ImportReport(
        str(archive), data_dir, manifest.kind, manifest.calls, sorted(manifest.services), duration, manifest
    )
