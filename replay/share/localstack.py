"""LocalStack's legacy record format: reading, replaying and converting ``recorded_api_calls.json``.

LocalStack community (2017-2022, ``localstack/utils/persistence.py``, removed in v1.0) appended one
JSON object per line to ``<DATA_DIR>/recorded_api_calls.json``::

    {"a": "sqs", "m": "POST", "p": "/000000000000/jobs",
     "d": "QWN0aW9uPVNlbmRNZXNzYWdl...", "h": {"Host": "localhost:4566", "Authorization": "..."},
     "rd": "PFNlbmRNZXNzYWdlUmVzcG9uc2U+..."}

``a`` is the API, ``m`` the method, ``p`` the raw path with its query string, ``d`` the request
body, ``h`` the request headers as one object, ``rd`` the response body.  Only ``PUT``, ``POST``,
``DELETE`` (later also ``PATCH``) calls answered with a success were written, minus those whose
``X-Amz-Target`` matched ``.List``, ``.Describe`` or ``.Get``; reads sent as ``POST`` with the query
protocol (SNS ``ListTopics``, SQS ``ListQueues``, ``GetQueueUrl``, ``ReceiveMessage``) were written
too.  No time, no status, no response headers were kept.

Variants this reader accepts, as the versions of ``persistence.py`` wrote them:

* **Early files (2017)**, one per API (``<api>_api_calls.json``, S3 and Elasticsearch only): no ``rd``
  at all, and ``d`` base64 only when the body was non-empty, otherwise the body as it was: ``null``
  (no body) or ``""``.
* **Later files** (``recorded_api_calls.json``, or ``api_calls_<api>.json`` with
  ``PERSISTENCE_SINGLE_FILE=false``): ``d`` and ``rd`` base64, ``""`` for an empty body, ``d`` ``null``
  when the request had none.  A body LocalStack held as a dict was JSON-encoded before base64.
* **Headers** came from ``dict()`` of the request's headers: string values, duplicates collapsed, and
  the headers LocalStack's own proxy added (``Remote-Addr``, ``X-Forwarded-For``,
  ``x-localstack-edge``, ``x-localstack-tgt-api``, ``Connection: close``), kept as they are.  Lines
  quoted in localstack issues #1202 and #4297 show them, with ``"d": ""`` for a bucket create.

Beyond what LocalStack wrote, and for files edited by hand: ``h`` missing or ``null`` (no headers)
or a list of ``[name, value]`` pairs; header values that are numbers or booleans (written as text),
lists (one header each) or ``null`` (left out); ``d``/``rd`` that are not valid base64 (taken as
the body's UTF-8 text; white space inside base64 is ignored) or a JSON object or array (its compact
JSON text); ``rd`` missing or ``null`` (an empty response body); a lower-case method; ``p`` as an
absolute URL (its path and query are used) or without its leading ``/``.

Each record becomes an :class:`~replay.record.entry.Entry`: status 200 (only successes were recorded), the
``rd`` body, no response headers, time 0.0 (LocalStack kept no time), no seed.  Its request passes
through :func:`replay.record.redact.redact`, so no signature, session token or presigned signature
survives, and is classified by :class:`~replay.record.classify.DefaultClassifier` (or the classifier given);
when that cannot name the service (an unsigned request), ``a`` does, and an S3 call gets its AWS
name.  ``rd`` is kept as the recorded response so that a replay can learn the ids it regenerates
(:mod:`replay.restore.mapping`): a receipt handle or upload id recorded before is rewritten to the new one.
Since the status is not known, a replayed call answered with another 2xx (S3 deletes answer 204)
shows as a status divergence in the replay report; it is not a failure.

:class:`LocalStackReader` streams such a file with the duck interface of
:class:`~replay.record.reader.LogReader` (a torn last line is dropped, a malformed line elsewhere raises
:class:`~replay.errors.LogCorruptError`), leaving out what the classifier calls reads and calls that
changed nothing (an SQS ``ReceiveMessage`` that returned no message): what LocalStack replayed on
every start and ``replay`` never records.  :func:`convert` writes the same calls as a version-1 log.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..errors import ReplayError
from ..files import atomic_writer
from ..record.classify import Call, Classifier, DefaultClassifier, s3_operation
from ..record.entry import Entry, Request, Response, encode_entry
from ..record.reader import LogReader, is_localstack_record
from ..record.redact import redact

__all__ = ["ConversionReport", "LocalStackReader", "convert", "decode_record", "is_localstack_record", "sniff"]

logger = logging.getLogger("replay.localstack")


READ = "read"
"""Reason a record is left out: the classifier calls it a read."""
NO_CHANGE = "no change"
"""Reason a record is left out: the classifier says it changed nothing (an empty ``ReceiveMessage``)."""

_DEFAULT_CLASSIFIER = DefaultClassifier()


def sniff(path: Path) -> bool:
    """Whether the first non-blank line of ``path`` is a legacy record (``False`` for a missing or empty file)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    with handle:
        for line in handle:
            if line.strip():
                try:
                    return is_localstack_record(orjson.loads(line))
                except orjson.JSONDecodeError:
                    return False
    return False


def _body(value: object, field: str) -> bytes:
    """The bytes a ``d`` or ``rd`` value stands for (see the module docstring)."""
    if value is None:
        return b""
    if isinstance(value, str):
        if not value:
            return b""
        compact = "".join(value.split())
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            logger.debug("%r is not base64; taken as the body's text", field)
            return value.encode("utf-8")
    if isinstance(value, (dict, list)):
        return orjson.dumps(value)
    raise ValueError(f"{field!r} must be a base64 string, not {type(value).__name__}")


def _header_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"header values must be strings, not {type(value).__name__}")


def _headers(raw: object) -> list[tuple[str, str]]:
    """The ``h`` value as ordered ``(name, value)`` pairs."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        items: list[tuple[object, object]] = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(pair, list) and len(pair) == 2 for pair in raw):
        items = [(pair[0], pair[1]) for pair in raw]
    else:
        raise ValueError("'h' must be an object of request headers")
    headers: list[tuple[str, str]] = []
    for name, value in items:
        if not isinstance(name, str) or not name:
            raise ValueError("header names must be non-empty strings")
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                headers.append((name, _header_value(item)))
    return headers


def _target(raw: object) -> tuple[str, str]:
    """``p`` as ``(raw path, query)``, percent-encoding kept."""
    if not isinstance(raw, str):
        raise ValueError("'p' must be a string")
    if "://" in raw.split("?", 1)[0]:  # absolute-form request target
        raw = "/" + raw.split("://", 1)[1].partition("/")[2]
    path, _, query = raw.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    return path, query


def _decode(line: bytes, classifier: Classifier) -> tuple[Entry, Call, bool, bool]:
    """``(entry, call, whether secrets were removed, whether the record kept a response body)``."""
    document = orjson.loads(line)
    if not is_localstack_record(document):
        if isinstance(document, dict) and "v" in document:
            raise ValueError("a replay log entry (it has 'v'), not a LocalStack record")
        raise ValueError("not a LocalStack record (an object with 'a', 'm' and 'p')")
    data: dict[str, Any] = document
    api, method = data["a"], data["m"]
    if not isinstance(api, str) or not isinstance(method, str) or not method.strip():
        raise ValueError("'a' and 'm' must be strings")
    path, query = _target(data["p"])
    request = Request(method.strip().upper(), path, query, _headers(data.get("h")), _body(data.get("d"), "d"))
    safe = redact(request)
    call = classifier(safe)
    if call.service == "unknown":  # unsigned: LocalStack's API name says which service it was
        operation, mutating = call.operation, call.mutating
        if api == "s3" and operation == f"{safe.method} {safe.path}":
            operation = s3_operation(safe)
            mutating = mutating and operation != "SelectObjectContent"
        call = Call(api, operation, mutating)
    has_response = data.get("rd") is not None
    response = Response(200, [], _body(data.get("rd"), "rd"))
    return Entry(0.0, call.service, call.operation, safe, response), call, safe is not request, has_response


def decode_record(line: bytes, classifier: Classifier | None = None) -> Entry:
    """One legacy line as an :class:`~replay.record.entry.Entry` (redacted and classified; see the module docstring).

    :raises ValueError: the line is not a legacy record (orjson's ``JSONDecodeError`` is one too).
    """
    return _decode(line, classifier if classifier is not None else _DEFAULT_CLASSIFIER)[0]


class LocalStackReader(LogReader):
    """Stream ``(line number, entry)`` pairs from a legacy file: a :class:`~replay.record.reader.LogReader` of another
    format.

    Reads and calls that changed nothing are left out and counted in :attr:`dropped` (reason ->
    count); :attr:`redacted` counts the entries given out that had secrets removed.  Everything
    else is the log reader's: a missing file reads as empty, :attr:`position` and :attr:`size` show
    progress, a torn last line is dropped with a warning (:attr:`torn_line`), a malformed line before
    it is a :class:`~replay.errors.LogCorruptError`; :attr:`checkpoint` is always ``None``.

    :param start: byte offset of the first line to read (a line boundary).
    :param end: byte offset where reading stops (a line boundary); ``None``: the end of the file.
    :param classifier: names each call and says whether it is a read (:class:`DefaultClassifier`).
    """

    def __init__(
        self, path: Path, start: int = 0, end: int | None = None, *, classifier: Classifier | None = None
    ) -> None:
        super().__init__(path, start, end)
        self.classifier: Classifier = classifier if classifier is not None else _DEFAULT_CLASSIFIER
        recordable = getattr(self.classifier, "recordable", None)
        self._recordable: Callable[[Call, int, bytes], bool] | None = recordable if callable(recordable) else None
        self.read = 0
        self.dropped: dict[str, int] = {}
        self.redacted = 0

    def _decode(self, line: bytes, number: int) -> Entry | None:
        """The legacy record as our entry, or ``None`` for one left out (counted)."""
        entry, call, redacted, has_response = _decode(line, self.classifier)
        self.read += 1
        reason = None
        if not call.mutating:
            reason = READ
        elif has_response and self._recordable is not None and not self._recordable(call, 200, entry.response.body):
            reason = NO_CHANGE
        if reason is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            return None
        self.redacted += redacted
        return entry


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert` did.

    ``read`` counts the records decoded (a torn last line aside), ``written`` the entries written,
    ``dropped`` the records left out by reason (``"read"``, ``"no change"``), ``redacted`` the
    entries written that had secrets removed.
    """

    source: Path
    destination: Path
    read: int
    written: int
    dropped: dict[str, int]
    redacted: int
    torn_line: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "source": str(self.source),
            "destination": str(self.destination),
            "read": self.read,
            "written": self.written,
            "dropped": dict(self.dropped),
            "redacted": self.redacted,
            "torn_line": self.torn_line,
        }


def _refuse_destination(destination: Path) -> None:
    if destination.is_dir():
        raise ReplayError(f"{destination}: is a directory; give the path of the log file to write")
    try:
        size = destination.stat().st_size
    except FileNotFoundError:
        return
    if size > 0:
        raise ReplayError(f"{destination}: already exists and is not empty; remove it or choose another destination")


def _refuse_source(source: Path) -> None:
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise ReplayError(f"{source}: no such file") from None
    if source.is_dir():
        raise ReplayError(f"{source}: is a directory, not a LocalStack recorded_api_calls.json")
    if size == 0:
        raise ReplayError(f"{source}: is empty; there is nothing to convert")
    if not sniff(source):
        raise ReplayError(f"{source}: is not a LocalStack recorded_api_calls.json (its first line is no legacy record)")


def convert(source: Path, destination: Path, classifier: Classifier | None = None) -> ConversionReport:
    """Write the calls of the legacy file ``source`` to ``destination`` as a version-1 log.

    Streams both files; ``destination`` is written atomically (0600: temporary file, fsync, rename,
    directory fsync), so a failure leaves it as it was.  Reads and calls that changed nothing are
    left out and counted.

    :raises ReplayError: ``destination`` exists and is not empty, or ``source`` is missing, empty or
        not a legacy file; nothing was changed.
    :raises LogCorruptError: a line other than the last is not a legacy record; nothing was changed.
    """
    source, destination = Path(source), Path(destination)
    _refuse_destination(destination)
    _refuse_source(source)
    reader = LocalStackReader(source, classifier=classifier)
    written = 0
    with atomic_writer(destination) as out:
        for _number, _line, entry in reader.records():
            out.write(encode_entry(entry))
            written += 1
    report = ConversionReport(
        source, destination, reader.read, written, dict(reader.dropped), reader.redacted, reader.torn_line
    )
    dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(report.dropped.items())) or "none"
    logger.info(
        "converted %s to %s: %d of %d LocalStack records written (dropped: %s; %d had secrets removed)",
        source,
        destination,
        written,
        report.read,
        dropped,
        report.redacted,
    )
    return report
