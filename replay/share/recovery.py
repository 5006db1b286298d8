"""Restoring from a replica: ``replay import s3://BUCKET/PREFIX [--at TIME]`` and ``replay inspect s3://...``.

A restore reads the plan :func:`~replay.share.replica.plan_restore` makes from one listing: the
snapshot (an archive, imported with the archive rules: a pickled one only if signed with the key
or ``trust``), then the segments after it, each checked against its SHA-256 before any of its
lines is used.  Entries are taken in call-number order and the restore stops before the first one
started after ``at``: the result is always a prefix of the history, the state the data dir had
at that moment.  Everything lands in a staging directory first and is moved into place whole,
so a failed restore (a damaged segment, a gap, S3 gone) leaves the data dir as it was.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import orjson

from ..config import LOG_FILE_NAME
from ..errors import ArchiveError, ReplicaError
from ..files import FILE_MODE, ensure_private_dir
from ..record.bodies import BODIES_DIR
from .archive import file_digest, import_archive, parents_made_for, publish, require_fresh
from .replica import (
    Generation,
    ReplicaClient,
    RestorePlan,
    SegmentName,
    iso_time,
    parse_replica,
    plan_restore,
    restore_window,
)

__all__ = ["RecoveryReport", "describe_replica", "restore_replica"]


@dataclasses.dataclass(frozen=True)
class RecoveryReport:
    """What a restore from a replica put where.

    :ivar restored_to: the time the restored state stands for (the last call's, or the snapshot's).
    :ivar calls: the calls the data dir's log holds (the snapshot's and the segments').
    """

    replica: str
    data_dir: Path
    generation: str
    kind: str
    at: float | None
    restored_to: float | None
    last_seq: int
    snapshot: str | None
    segments: int
    calls: int
    services: list[str]
    duration: float

    def to_dict(self) -> dict[str, object]:
        return {
            "replica": self.replica,
            "data_dir": str(self.data_dir),
            "generation": self.generation,
            "kind": self.kind,
            "at": self.at,
            "restored_to": self.restored_to,
            "restored_to_iso": iso_time(self.restored_to) if self.restored_to is not None else None,
            "last_seq": self.last_seq,
            "snapshot": self.snapshot,
            "segments": self.segments,
            "calls": self.calls,
            "services": self.services,
            "duration": round(self.duration, 6),
        }


def _segment_lines(client: ReplicaClient, plan: RestorePlan, segment: SegmentName, where: str) -> list[bytes]:
    data = client.get(plan.generation.segment_key(segment))
    if data is None:
        raise ReplicaError(where, f"segment {segment.name} of generation {plan.generation.id} is gone")
    try:
        content = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ReplicaError(where, f"segment {segment.name} is damaged ({exc}); {_before(segment)}") from None
    if hashlib.sha256(content).hexdigest() != segment.sha256:
        raise ReplicaError(where, f"segment {segment.name} fails its SHA-256; {_before(segment)}")
    return content.splitlines(keepends=True)


def _before(segment: SegmentName) -> str:
    return f"restore with --at before {iso_time(segment.first_ms / 1000)} to stop ahead of it"


def _entry(line: bytes, where: str, segment: SegmentName) -> tuple[int, float, dict[str, object]]:
    try:
        document = orjson.loads(line)
        seq, started = document["seq"], document["time"]
        if isinstance(seq, int) and isinstance(started, (int, float)) and segment.after < seq <= segment.last:
            return seq, float(started), document
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    raise ReplicaError(where, f"segment {segment.name} holds a line that is not one of its entries")


def restore_replica(
    url: str,
    data_dir: Path,
    at: float | None = None,
    key: bytes | None = None,
    trust: bool = False,
    endpoint_url: str | None = None,
) -> RecoveryReport:
    """Fill the fresh ``data_dir`` with the replica's newest state, or its state as of ``at``.

    :raises ReplicaError: the replica holds no restore point (by ``at``), or one it needs is damaged or gone.
    :raises ArchiveError: its snapshot is refused (unsigned pickles without ``trust``, a wrong key, damage).
    :raises SourceError: ``data_dir`` is not empty.
    """
    started = time.perf_counter()
    location = parse_replica(url, "ARCHIVE")
    where = str(location)
    data_dir = Path(data_dir).absolute()
    require_fresh(data_dir)
    client = ReplicaClient(location, endpoint_url, timeout=60.0)
    plan = plan_restore(client.generations(), at, where)
    gap = plan.generation.gap_after(plan.start)
    staging = data_dir.parent / f".{data_dir.name}.recover-{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with parents_made_for(data_dir):
        try:
            kind, services, calls = "replay", [], 0
            restored_to = plan.snapshot.as_of if plan.snapshot is not None else None
            if plan.snapshot is not None:
                with tempfile.TemporaryDirectory(dir=data_dir.parent, prefix=f".{data_dir.name}.fetch-") as fetch:
                    archive = Path(fetch) / plan.snapshot.name
                    client.download(plan.generation.snapshot_key(plan.snapshot), archive)
                    if file_digest(archive)[1] != plan.snapshot.sha256:
                        raise ReplicaError(where, f"snapshot {plan.snapshot.name} fails its SHA-256")
                    try:
                        report = import_archive(archive, staging, key, trust)
                    except ArchiveError as exc:
                        raise ArchiveError(
                            f"{where} snapshot {plan.snapshot.name}", exc.reason, str(exc).split(": ", 2)[-1]
                        ) from None
                kind, services, calls = report.kind, report.services, report.calls
            else:
                ensure_private_dir(staging)
            last, used, ended = plan.start, 0, False
            if kind == "replay":
                last, latest, added, used, ended = _append_segments(client, plan, staging, where)
                restored_to = latest if latest is not None else restored_to
                calls += added
            if gap is not None and not ended:
                raise ReplicaError(
                    where,
                    f"generation {plan.generation.id} has a gap after call #{gap} (a segment is missing), so its "
                    f"state {'now' if at is None else 'as of ' + iso_time(at)} cannot be restored; restore with "
                    f"--at {iso_time(restored_to) if restored_to is not None else 'an earlier time'} or earlier",
                )
            publish(staging, data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return RecoveryReport(
        where,
        data_dir,
        plan.generation.id,
        kind,
        at,
        restored_to,
        last,
        plan.snapshot.name if plan.snapshot is not None else None,
        used,
        calls,
        services,
        time.perf_counter() - started,
    )


def _append_segments(
    client: ReplicaClient, plan: RestorePlan, staging: Path, where: str
) -> tuple[int, float | None, int, int, bool]:
    """Append the plan's entries to the staged log, in call-number order, up to ``plan.at``.

    Returns the last call number written, its start time (``None``: none written), how many were written,
    from how many segments, and whether ``plan.at`` ended it (rather than the segments running out).
    """
    at, last, latest, added, used = plan.at, plan.start, None, 0, 0
    with open(staging / LOG_FILE_NAME, "ab") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        try:
            for segment in plan.segments:
                if at is not None and segment.first_ms / 1000 > at:  # every entry in it started later
                    return last, latest, added, used, True
                took = False
                for line in _segment_lines(client, plan, segment, where):
                    seq, when, document = _entry(line, where, segment)
                    if seq <= last:
                        continue
                    if at is not None and when > at:
                        return last, latest, added, used + took, True
                    _fetch_bodies(client, plan.generation, segment, document, staging, where)
                    out.write(line)
                    last, latest, took = seq, when, True
                    added += 1
                used += took
            return last, latest, added, used, False
        finally:
            out.flush()
            os.fsync(out.fileno())


def _fetch_bodies(
    client: ReplicaClient,
    generation: Generation,
    segment: SegmentName,
    document: dict[str, object],
    staging: Path,
    where: str,
) -> None:
    request = document.get("request")
    if not isinstance(request, dict) or request.get("encoding") != "file":
        return
    digest = str(request.get("body"))
    target = staging / BODIES_DIR / digest
    if target.exists():
        return
    ensure_private_dir(target.parent)
    client.download(generation.body_key(segment, digest), target)
    if file_digest(target)[1] != digest:
        target.unlink()
        raise ReplicaError(where, f"body {digest} of segment {segment.name} fails its SHA-256; {_before(segment)}")


def describe_replica(url: str, endpoint_url: str | None = None) -> dict[str, object]:
    """What ``replay inspect s3://...`` shows: generations, the restore window, size, the last upload's age."""
    location = parse_replica(url, "PATH")
    client = ReplicaClient(location, endpoint_url, timeout=30.0)
    if not client.is_replica():
        raise ReplicaError(str(location), "is not a replica (no replica.json under it)")
    generations = client.generations()
    lease = client.lease()
    now = time.time()
    windows = [window for generation in generations if (window := restore_window(generation)) is not None]
    last_upload = max((generation.last_upload for generation in generations), default=0.0) or None
    return {
        "replica": str(location),
        "generations": [generation.to_dict() for generation in generations],
        "restore_window": [min(w[0] for w in windows), max(w[1] for w in windows)] if windows else None,
        "size": sum(generation.size for generation in generations),
        "last_upload": last_upload,
        "last_upload_age": round(now - last_upload, 3) if last_upload is not None else None,
        "writer": {**lease.about(), "renewed": lease.renewed} if lease is not None else None,
    }
