"""A replica on S3: what ``replay serve --replicate s3://BUCKET/PREFIX`` writes, named so a listing plans a restore.

Layout under the prefix (Litestream's nouns: generations, snapshots, segments)::

    replica.json                                   marks the prefix as a replica (format)
    lease.json                                     who writes here now: renewed every few seconds
    generations/<id>/generation.json               when and from which data dir the generation started
    generations/<id>/snapshots/<through>-<as of ms>-<sha256>.tar.gz
                                                   an archive (:mod:`replay.share.archive`) of the state
                                                   after the call numbered <through> (replay backend: a
                                                   checkpoint's compacted calls; snapshot backend: one save)
    generations/<id>/segments/<after>-<last>-<first ms>-<last ms>-<sha256>.jsonl.gz
                                                   the log's entries numbered after <after> up to <last>,
                                                   as written, gzip-compressed; <sha256> is that of the
                                                   uncompressed lines, the times span the entries' times
    generations/<id>/bodies/<after>-<last>/<sha256>
                                                   the large request bodies those entries name

A *generation* is one unbroken history: it starts from a snapshot (or from nothing, ``after`` 0)
and every segment continues the one before it (its ``after`` is the last one's ``last``).  A new
generation starts when the history was rewritten, the data dir replaced, or the replica fell too
far behind.  A restore point is every entry of a segment and every snapshot; a restore *at* a time
takes the newest snapshot taken by then and the entries after it, stopping before the first entry
started later than that time (:func:`plan_restore`).  Retention (:func:`plan_retention`) deletes
only what no restore point inside the window needs.

Objects are only ever written whole (one ``PutObject``), so a crash leaves an object or none; a
damaged one fails its SHA-256 and is never used.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from ..errors import ConfigError, ReplicaError, TransportError
from .remote import SCHEME

__all__ = [
    "GENERATIONS",
    "LEASE_NAME",
    "MARKER_NAME",
    "Generation",
    "Lease",
    "ReplicaClient",
    "ReplicaLocation",
    "RestorePlan",
    "SegmentName",
    "SnapshotName",
    "is_replica",
    "iso_time",
    "new_generation_id",
    "parse_replica",
    "plan_restore",
    "plan_retention",
    "scan",
]

logger = logging.getLogger("replay.replica")

MARKER_NAME = "replica.json"
LEASE_NAME = "lease.json"
GENERATIONS = "generations"
GENERATION_INFO = "generation.json"
REPLICA_FORMAT = 1

_SEGMENT = re.compile(r"(\d{12})-(\d{12})-(\d{13})-(\d{13})-([0-9a-f]{64})\.jsonl\.gz")
_SNAPSHOT = re.compile(r"(\d{12})-(\d{13})-([0-9a-f]{64})\.tar\.gz")
_GENERATION = re.compile(r"\d{8}T\d{9}Z-[0-9a-f]{8}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _ms(seconds: float, up: bool = False) -> int:
    """Milliseconds, rounded down (``up``: rounded up), so a range named in them holds the exact times."""
    return max(0, math.ceil(seconds * 1000) if up else math.floor(seconds * 1000))


# --- where ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReplicaLocation:
    """``s3://bucket/prefix`` (the prefix may be empty: the bucket's root)."""

    bucket: str
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def parse_replica(url: str, name: str = "--replicate") -> ReplicaLocation:
    """Parse ``s3://bucket[/prefix]`` (a trailing ``/`` is dropped).

    :raises ConfigError: it is not of that form.
    """
    text = str(url).strip()
    if not text.startswith(SCHEME):
        raise ConfigError(name, url, hint="an S3 location such as s3://bucket/prefix")
    bucket, _, prefix = text[len(SCHEME) :].partition("/")
    prefix = prefix.strip("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or "//" in prefix:
        raise ConfigError(name, url, hint="an S3 location such as s3://bucket/prefix (a valid bucket name)")
    return ReplicaLocation(bucket, prefix)


def generation_started(name: str) -> float:
    """When the generation ``name`` started (its name says, to the millisecond)."""
    started = datetime.datetime.strptime(name[:18], "%Y%m%dT%H%M%S%f").replace(tzinfo=datetime.timezone.utc)
    return started.timestamp()


def new_generation_id(now: float | None = None, after: str = "") -> str:
    """A generation's name: its start time to the millisecond (names sort by age) and 32 random bits.

    ``after``: a generation this one follows; the new name sorts after it even if the clock did not move on.
    """
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.timezone.utc)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if _GENERATION.fullmatch(after):
        previous = datetime.datetime.fromtimestamp(generation_started(after), datetime.timezone.utc)
        moment = max(moment, previous + datetime.timedelta(milliseconds=1))
    return f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z-{secrets.token_hex(4)}"


# --- names -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class SegmentName:
    """A shipped piece of the log: entries numbered in ``(after, last]``, started between two times."""

    after: int
    last: int
    first_ms: int
    last_ms: int
    sha256: str

    @property
    def name(self) -> str:
        return f"{self.after:012d}-{self.last:012d}-{self.first_ms:013d}-{self.last_ms:013d}-{self.sha256}.jsonl.gz"

    @property
    def bodies(self) -> str:
        """The folder (under the generation's ``bodies/``) of the large bodies its entries name."""
        return f"{self.after:012d}-{self.last:012d}"

    @classmethod
    def make(cls, after: int, last: int, first: float, latest: float, sha256: str) -> SegmentName:
        return cls(after, last, _ms(first), _ms(latest, up=True), sha256)

    @classmethod
    def parse(cls, name: str) -> SegmentName | None:
        found = _SEGMENT.fullmatch(name)
        if found is None:
            return None
        after, last, first_ms, last_ms = (int(found.group(i)) for i in range(1, 5))
        return cls(after, last, first_ms, last_ms, found.group(5)) if after < last else None


@dataclasses.dataclass(frozen=True, order=True)
class SnapshotName:
    """A shipped state: the history through the entry numbered ``through``, as of a time."""

    through: int
    as_of_ms: int
    sha256: str

    @property
    def name(self) -> str:
        return f"{self.through:012d}-{self.as_of_ms:013d}-{self.sha256}.tar.gz"

    @property
    def as_of(self) -> float:
        return self.as_of_ms / 1000

    @classmethod
    def make(cls, through: int, as_of: float, sha256: str) -> SnapshotName:
        return cls(through, _ms(as_of, up=True), sha256)

    @classmethod
    def parse(cls, name: str) -> SnapshotName | None:
        found = _SNAPSHOT.fullmatch(name)
        if found is None:
            return None
        return cls(int(found.group(1)), int(found.group(2)), found.group(3))


@dataclasses.dataclass
class Generation:
    """What a listing shows of one generation."""

    id: str
    snapshots: list[SnapshotName] = dataclasses.field(default_factory=list)
    segments: list[SegmentName] = dataclasses.field(default_factory=list)
    bodies: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # segment folder -> names
    has_info: bool = False
    size: int = 0
    last_upload: float = 0.0

    def key(self, *parts: str) -> str:
        return "/".join((GENERATIONS, self.id, *parts))

    def snapshot_key(self, snapshot: SnapshotName) -> str:
        return self.key("snapshots", snapshot.name)

    def segment_key(self, segment: SegmentName) -> str:
        return self.key("segments", segment.name)

    def body_key(self, segment: SegmentName, digest: str) -> str:
        return self.key("bodies", segment.bodies, digest)

    @property
    def last_entry(self) -> float | None:
        """The time the newest shipped entry (or snapshot) stands for."""
        times = [segment.last_ms / 1000 for segment in self.segments] + [s.as_of for s in self.snapshots]
        return max(times) if times else None

    def chain(self, start: int | None = None) -> tuple[list[SegmentName], int]:
        """The segments that continue each other from ``start``, and the last call number they reach.

        ``start`` defaults to the generation's first point (its oldest snapshot, or its first
        segment's ``after``).  A segment that overlaps what came before is used for the entries past
        it; a gap ends the chain.
        """
        if start is None:
            firsts = [snapshot.through for snapshot in self.snapshots] + [s.after for s in self.segments[:1]]
            start = min(firsts, default=0)
        reached, used = start, []
        for segment in sorted(self.segments, key=lambda s: (s.after, s.last)):
            if segment.last <= reached:
                continue
            if segment.after > reached:
                break
            used.append(segment)
            reached = segment.last
        return used, reached

    def gap_after(self, start: int | None = None) -> int | None:
        """The call number after which the chain from ``start`` breaks although later segments exist."""
        _, reached = self.chain(start)
        return reached if any(segment.last > reached for segment in self.segments) else None

    def to_dict(self) -> dict[str, object]:
        _used, reached = self.chain()
        window = restore_window(self)
        return {
            "generation": self.id,
            "snapshots": len(self.snapshots),
            "segments": len(self.segments),
            "last_seq": reached,
            "first_restore_point": window[0] if window else None,
            "last_restore_point": window[1] if window else None,
            "size": self.size,
            "last_upload": self.last_upload or None,
            "gap_after": self.gap_after(),
        }


def restore_window(generation: Generation) -> tuple[float, float] | None:
    """The earliest and latest times a restore from ``generation`` can stand for (``None``: none)."""
    used, _ = generation.chain()
    starts = [snapshot.as_of for snapshot in generation.snapshots]
    if used and used[0].after == 0:
        starts.append(used[0].first_ms / 1000)
    if not starts:
        return None
    ends = [snapshot.as_of for snapshot in generation.snapshots] + [segment.last_ms / 1000 for segment in used]
    return min(starts), max(ends)


def scan(listing: Iterable[tuple[str, int, float]], location: ReplicaLocation) -> list[Generation]:
    """The generations in a listing of ``(key, size, last modified)`` (:meth:`ReplicaClient.objects`), oldest first."""
    base = location.key(GENERATIONS) + "/"
    found: dict[str, Generation] = {}
    for key, size, modified in listing:
        if not key.startswith(base):
            continue
        parts = key[len(base) :].split("/")
        if not _GENERATION.fullmatch(parts[0]):
            continue
        generation = found.setdefault(parts[0], Generation(parts[0]))
        generation.size += size
        generation.last_upload = max(generation.last_upload, modified)
        kind, rest = (parts[1], parts[2:]) if len(parts) > 1 else ("", [])
        if kind == GENERATION_INFO and not rest:
            generation.has_info = True
        elif kind == "snapshots" and len(rest) == 1 and (snapshot := SnapshotName.parse(rest[0])) is not None:
            generation.snapshots.append(snapshot)
        elif kind == "segments" and len(rest) == 1 and (segment := SegmentName.parse(rest[0])) is not None:
            generation.segments.append(segment)
        elif kind == "bodies" and len(rest) == 2 and _DIGEST.fullmatch(rest[1]):
            generation.bodies.setdefault(rest[0], []).append(generation.key(kind, *rest))
        else:
            logger.debug("not a replica object: %s", key)
    for generation in found.values():
        generation.snapshots.sort()
        generation.segments.sort()
    return [found[name] for name in sorted(found)]


# --- plans -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RestorePlan:
    """What a restore reads: a generation, maybe a snapshot, then segments, up to a time.

    :ivar at: the time asked for (``None``: the newest state).
    :ivar start: the number of the last call the snapshot holds (0 without one).
    """

    generation: Generation
    snapshot: SnapshotName | None
    segments: tuple[SegmentName, ...]
    at: float | None
    start: int


def plan_restore(generations: Sequence[Generation], at: float | None, where: str) -> RestorePlan:
    """The newest state (``at`` ``None``), or the state as of ``at``.

    The generation is the newest one that was live by ``at`` (started by then, with a restore point
    by then): a generation that starts from a history older than itself (a new generation of an
    existing data dir) answers for that past only where no generation was live then.  In it, the
    newest snapshot taken by ``at`` and the segments from there on (the entries past ``at`` are
    left out by the reader, :func:`replay.share.recovery`).

    :raises ReplicaError: the replica holds no restore point (by ``at``).
    """
    usable = [(generation, window) for generation in generations if (window := restore_window(generation))]
    if not usable:
        raise ReplicaError(where, "holds no restore point (no generation with a snapshot or a first segment)")
    if at is None:
        chosen = max(usable, key=lambda pair: pair[0].id)[0]
        snapshot = max(chosen.snapshots, key=lambda s: (s.through, s.as_of_ms), default=None)
    else:
        earlier = [(generation, window) for generation, window in usable if window[0] <= at]
        if not earlier:
            first = min(window[0] for _, window in usable)
            raise ReplicaError(
                where, f"holds nothing as old as {iso_time(at)}: its first restore point is {iso_time(first)}"
            )
        live = [generation for generation, _ in earlier if generation_started(generation.id) <= at]
        chosen = max(live, key=lambda g: g.id) if live else min((g for g, _ in earlier), key=lambda g: g.id)
        taken = [s for s in chosen.snapshots if s.as_of <= at]
        snapshot = max(taken, key=lambda s: (s.through, s.as_of_ms), default=None)
    start = snapshot.through if snapshot is not None else 0
    used, _ = chosen.chain(start)
    if snapshot is None and (not used or used[0].after != 0):
        raise ReplicaError(where, f"generation {chosen.id} has no snapshot to start from")
    return RestorePlan(chosen, snapshot, tuple(used), at, start)


def plan_retention(generations: Sequence[Generation], cutoff: float, current: str | None) -> list[str]:
    """The names (under the replica's prefix, as :meth:`ReplicaClient.delete` takes them) no restore at or after
    ``cutoff`` needs.

    A restore at ``T`` uses the newest generation live by ``T`` (:func:`plan_restore`): a generation
    is deleted whole when a newer one was live by ``cutoff`` (or, having no restore point, when any
    newer one exists), unless it is ``current``.  In each
    one kept, the newest snapshot taken by ``cutoff`` stays with everything after it; older
    snapshots, and segments (with their bodies) wholly before it, go.
    """
    doomed: list[str] = []
    windows = {generation.id: restore_window(generation) for generation in generations}
    for generation in generations:
        newer = [other for other in generations if other.id > generation.id]
        window = windows[generation.id]
        covered = any(
            (w := windows[other.id]) is not None and w[0] <= cutoff and generation_started(other.id) <= cutoff
            for other in newer
        )
        if generation.id != current and (covered or (window is None and newer)):
            doomed.extend(_all_keys(generation))
            continue
        taken = [s for s in generation.snapshots if s.as_of <= cutoff]
        if not taken:
            continue
        base = max(taken, key=lambda s: (s.through, s.as_of_ms))
        doomed.extend(
            generation.snapshot_key(s)
            for s in generation.snapshots
            if (s.through, s.as_of_ms) < (base.through, base.as_of_ms)
        )
        for segment in generation.segments:
            if segment.last <= base.through:
                doomed.append(generation.segment_key(segment))
                doomed.extend(generation.bodies.get(segment.bodies, []))
    return doomed


def _all_keys(generation: Generation) -> list[str]:
    keys = [generation.key(GENERATION_INFO)] if generation.has_info else []
    keys += [generation.snapshot_key(s) for s in generation.snapshots]
    keys += [generation.segment_key(s) for s in generation.segments]
    keys += [key for folder in generation.bodies.values() for key in folder]
    return keys


def iso_time(moment: float) -> str:
    """``moment`` (Unix seconds) as ISO 8601 in UTC, to the millisecond: how times are named to users."""
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat(timespec="milliseconds")


# --- the lease -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Lease:
    """Who writes into a replica: a data dir on a host, in one process (``session``)."""

    data_dir_id: str
    host: str
    data_dir: str
    session: str
    pid: int
    generation: str
    renewed: float

    def same_owner(self, other: Lease) -> bool:
        """The same data dir, where it was: only one process can hold it (its lock), so it is this one's past."""
        return (self.data_dir_id, self.host, self.data_dir) == (other.data_dir_id, other.host, other.data_dir)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> Lease | None:
        try:
            document = orjson.loads(data)
            return cls(
                data_dir_id=str(document["data_dir_id"]),
                host=str(document["host"]),
                data_dir=str(document["data_dir"]),
                session=str(document["session"]),
                pid=int(document["pid"]),
                generation=str(document["generation"]),
                renewed=float(document["renewed"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def about(self) -> dict[str, object]:
        return {"host": self.host, "data_dir": self.data_dir, "pid": self.pid, "generation": self.generation}


# --- the S3 client ---------------------------------------------------------------------------------------------


class ReplicaClient:
    """The few S3 calls a replica needs, each tried once (the replicator retries with backoff).

    :param endpoint_url: an S3-compatible endpoint (``None``: boto3's own resolution, then AWS).
    :param timeout: seconds to connect, and to wait for an answer.
    """

    def __init__(self, location: ReplicaLocation, endpoint_url: str | None = None, timeout: float = 10.0) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        self.location = location
        self.endpoint_url = endpoint_url
        session = boto3.session.Session()
        self._s3 = session.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=session.region_name or "us-east-1",
            config=BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},  # one attempt: the replicator backs off
                connect_timeout=min(timeout, 5.0),
                read_timeout=timeout,
                s3={"addressing_style": "path"},
                max_pool_connections=4,
            ),
        )

    @property
    def where(self) -> str:
        return f"{self.location} (endpoint {self.endpoint_url or 'AWS'})"

    def _fail(self, exc: Exception, what: str) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            return ConfigError(
                "AWS credentials",
                "missing",
                hint=f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to reach {self.where}",
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in ("NoSuchBucket",):
                return ReplicaError(
                    str(self.location), f"no bucket {self.location.bucket!r} at {self.endpoint_url or 'AWS'}"
                )
            return TransportError(self.endpoint_url or "s3", f"{self.where}: {what}: {code or exc}")
        if isinstance(exc, BotoCoreError):
            return TransportError(self.endpoint_url or "s3", f"{self.where}: {what}: {' '.join(str(exc).split())}")
        return exc

    def put(self, name: str, data: bytes | Path) -> None:
        """Write one object whole (a file is read in full: objects here are at most a few MiB, or an archive)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if isinstance(data, Path):
                size = data.stat().st_size
                if size > 64 << 20:
                    self._s3.upload_file(str(data), self.location.bucket, self.location.key(name))
                    return
                with open(data, "rb") as handle:
                    self._s3.put_object(Bucket=self.location.bucket, Key=self.location.key(name), Body=handle)
            else:
                self._s3.put_object(Bucket=self.location.bucket, Key=self.location.key(name), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, f"cannot write {name}") from None

    def get(self, name: str) -> bytes | None:
        """An object's bytes; ``None`` when there is no such key."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._s3.get_object(Bucket=self.location.bucket, Key=self.location.key(name))
            return bytes(answer["Body"].read())
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, f"cannot read {name}") from None
        except BotoCoreError as exc:
            raise self._fail(exc, f"cannot read {name}") from None

    def download(self, name: str, path: Path) -> None:
        """An object, written to ``path``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3.download_file(self.location.bucket, self.location.key(name), str(path))
        except (BotoCoreError, ClientError) as exc:
            Path(path).unlink(missing_ok=True)
            raise self._fail(exc, f"cannot read {name}") from None

    def objects(self) -> list[tuple[str, int, float]]:
        """Every object under the prefix: ``(key, size, last modified)``, keys as S3 gives them."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self.location.key("")
        found: list[tuple[str, int, float]] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found.append((str(item["Key"]), int(item["Size"]), item["LastModified"].timestamp()))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, "cannot list the replica") from None
        return found

    def generations(self) -> list[Generation]:
        return scan(self.objects(), self.location)

    def delete(self, names: Sequence[str]) -> None:
        """Delete objects named under the prefix (as :meth:`put` names them), a thousand per call."""
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(names), 1000):
            batch = [{"Key": self.location.key(name)} for name in names[start : start + 1000]]
            try:
                self._s3.delete_objects(Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise self._fail(exc, "cannot delete old objects") from None

    def lease(self) -> Lease | None:
        data = self.get(LEASE_NAME)
        return Lease.from_json(data) if data is not None else None

    def is_replica(self) -> bool:
        return self.get(MARKER_NAME) is not None

    def mark(self) -> None:
        if not self.is_replica():
            self.put(MARKER_NAME, orjson.dumps({"format": REPLICA_FORMAT, "created": time.time()}))


def is_replica(url: str, endpoint_url: str | None = None) -> bool:
    """Whether ``url`` names a replica (a prefix with a ``replica.json``) rather than an archive object.

    :raises TransportError: the endpoint cannot be reached.
    """
    try:
        location = parse_replica(url)
    except ConfigError:
        return False
    return ReplicaClient(location, endpoint_url).is_replica()


def host_name() -> str:
    return os.uname().nodename
