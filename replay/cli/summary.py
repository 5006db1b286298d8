"""What a log holds, for people and machines: ``replay inspect``.

:func:`summarise` reads the calls that rebuild a data dir (a checkpoint's
compacted calls, then the log's calls since: :func:`replay.storage.checkpoint.history`)
or one log file, as a stream, and counts them by service and operation, with
their time range and size; the last restore's report
(``replay_report.json``), when there is one, adds its counts and failures.
:func:`calls` yields one :class:`CallLine` a call, filtered.
:func:`describe_snapshots` says what a ``snapshot`` data dir holds (its
services, their files' sizes and times, whether its key is there).  Nothing
here writes to the data dir.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from ..config import REPORT_FILE_NAME
from ..record.entry import Entry
from ..record.reader import Segment
from ..share.sources import snapshot_path, snapshot_services

__all__ = ["CallLine", "Summary", "calls", "describe_snapshots", "resource_of", "summarise"]


def resource_of(entry: Entry) -> str:
    """A short name for what a call acts on: a queue, bucket/key, table, topic, or the request path."""
    request = entry.request
    if entry.service == "s3":
        return unquote(request.path.lstrip("/")) or "-"
    document: dict[str, Any] = {}
    body = request.body if request.file is None else request.head(1 << 16)  # a large body: its start says enough
    if request.header("X-Amz-Target") is not None:
        try:
            parsed = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            parsed = {}
        document = parsed if isinstance(parsed, dict) else {}
    elif b"=" in body[:200] or request.query:
        document = dict(parse_qsl(body.decode("utf-8", "replace") + "&" + request.query))
    for field in ("QueueUrl", "TopicArn", "TableName", "QueueName", "Name", "FunctionName", "UserName", "KeyId"):
        value = document.get(field)
        if isinstance(value, str) and value:
            return value.rsplit("/", 1)[-1] if field == "QueueUrl" else value
    return request.path


@dataclasses.dataclass(frozen=True)
class CallLine:
    """One call, as ``replay inspect --calls`` lists it."""

    time: float
    service: str
    operation: str
    resource: str
    status: int
    file: str
    line: int

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        stamp = datetime.datetime.fromtimestamp(self.time, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{stamp[:23]}Z  {self.service:<16} {self.operation:<32} {self.status}  {self.resource}"


def calls(
    segments: Sequence[Segment],
    service: str | None = None,
    operation: str | None = None,
    since: float | None = None,
) -> Iterator[CallLine]:
    """Every call of ``segments`` that matches the filters, in order."""
    for segment in segments:
        for number, entry in segment.reader():
            if service is not None and entry.service != service:
                continue
            if operation is not None and entry.operation != operation:
                continue
            if since is not None and entry.time < since:
                continue
            yield CallLine(
                entry.time,
                entry.service,
                entry.operation,
                resource_of(entry),
                entry.response.status,
                str(segment.path),
                number,
            )


@dataclasses.dataclass
class Summary:
    """Counts of a history, and the last restore's report."""

    files: list[str]
    backend: str = "replay"
    calls: int = 0
    bytes: int = 0
    first: float | None = None
    last: float | None = None
    by_operation: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    checkpoint: dict[str, object] | None = None
    last_restore: dict[str, Any] | None = None
    torn_line: int | None = None

    def to_dict(self) -> dict[str, object]:
        services: dict[str, dict[str, int]] = {}
        for (service, operation), count in sorted(self.by_operation.items()):
            services.setdefault(service, {})[operation] = count
        return {
            "backend": self.backend,
            "files": self.files,
            "calls": self.calls,
            "bytes": self.bytes,
            "first": self.first,
            "last": self.last,
            "services": services,
            "checkpoint": self.checkpoint,
            "last_restore": self.last_restore,
            "torn_line": self.torn_line,
        }


def _report(directory: Path) -> dict[str, Any] | None:
    path = directory / REPORT_FILE_NAME
    try:
        document = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    keys = ("restored", "failed", "diverged", "mapped", "duration", "failures", "divergences")
    summary = {key: document.get(key) for key in keys}
    summary["report"] = str(path)
    summary["written"] = path.stat().st_mtime
    return summary


def summarise(segments: Sequence[Segment], checkpoint: dict[str, object] | None = None) -> Summary:
    """Count the calls of ``segments`` (streamed), and read the last restore's report next to the last one."""
    summary = Summary(files=[str(segment.path) for segment in segments], checkpoint=checkpoint)
    for segment in segments:
        reader = segment.reader()
        for _number, entry in reader:
            summary.calls += 1
            summary.by_operation[(entry.service, entry.operation)] += 1
            if summary.first is None or entry.time < summary.first:
                summary.first = entry.time
            if summary.last is None or entry.time > summary.last:
                summary.last = entry.time
        summary.bytes += reader.position - segment.start
        summary.torn_line = reader.torn_line
    summary.last_restore = _report(segments[-1].path.parent)
    return summary


def describe_snapshots(data_dir: Path) -> dict[str, Any]:
    """What a ``snapshot`` data dir holds: per service, its snapshot file's size and time; the key's presence."""
    services = {}
    for service in snapshot_services(data_dir):
        status = snapshot_path(data_dir, service).stat()
        services[service] = {"bytes": status.st_size, "saved": status.st_mtime}
    return {
        "backend": "snapshot",
        "data_dir": str(data_dir),
        "services": services,
        "key": (Path(data_dir) / "state" / "snapshot.key").is_file(),
        "last_restore": _report(Path(data_dir)),
    }
