"""The record model: one recorded API call and its versioned JSON-lines form.

One entry is one line of ``recorded_api_calls.json``, an orjson-encoded object::

    {"v": 1, "time": 1732441234.123, "service": "sqs", "operation": "CreateQueue",
     "request": {"method": "POST", "path": "/", "query": "",
                 "headers": [["Host", "localhost:4566"], ["X-Amz-Target", "AmazonSQS.CreateQueue"]],
                 "body": "{\\"QueueName\\": \\"jobs\\"}", "encoding": "utf-8"},
     "response": {"status": 200, "headers": [["Content-Type", "application/x-amz-json-1.0"]],
                  "body": "{\\"QueueUrl\\": \\"http://localhost:4566/123456789012/jobs\\"}",
                  "encoding": "utf-8"}}

``path`` is the raw, still percent-encoded path; ``query`` the raw query string
without ``?``.  ``seq``, written by the log (:meth:`replay.record.log.CallLog.append`),
numbers the entries of a data dir in the order they were appended, so that a
duplicated or reordered entry is refused rather than replayed twice; logs
written before it read as before.  ``seed``, present when the emulator's randomness is seeded per
call (:mod:`replay.record.seeding`), is the seed the call ran with; ``waited``, present
when such a call spent time waiting (sleeps, condition waits), is how many
seconds its clock moved on while it waited.  A body is stored
as text when it is valid UTF-8 (``"encoding": "utf-8"``) and as base64
otherwise (``"encoding": "base64"``); a large request body kept as a file of
the data dir is named by its SHA-256 (``"body": "<sha256>", "encoding": "file",
"size": N``, :mod:`replay.record.bodies`).  Readers ignore fields they do not know;
a ``v`` above :data:`FORMAT_VERSION` is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import EntryVersionError
from .bodies import BODIES_DIR, BodyFile, is_digest

__all__ = [
    "FORMAT_VERSION",
    "Entry",
    "Request",
    "Response",
    "decode_entry",
    "encode_call",
    "encode_entry",
    "numbered",
]

FORMAT_VERSION = 1

Headers = tuple[tuple[str, str], ...]


_LOWER: dict[str, str] = {}


def _lower(name: str) -> str:
    """``name.lower()``, memoised for the few header names a process sees."""
    lower = _LOWER.get(name)
    if lower is None:
        lower = name.lower()
        if len(_LOWER) < 4096:
            _LOWER[name] = lower
    return lower


def _encode_body(body: bytes) -> tuple[str, str]:
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def _decode_body(text: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    raise ValueError(f"unknown body encoding {encoding!r}")


def _headers(raw: Any) -> Headers:
    if not isinstance(raw, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair) for pair in raw
    ):
        raise ValueError("headers must be a list of [name, value] string pairs")
    return tuple((name, value) for name, value in raw)


class Request:
    """An HTTP request as the emulator saw it (after redaction, once recorded).

    Its body is ``bytes``, or a :class:`~replay.record.bodies.BodyFile` when it was too large to hold in
    memory: :attr:`file` is then set, and :attr:`body` reads the file whole each time it is asked
    for (readers on the hot path use :attr:`size`, :meth:`head` and :attr:`payload` instead).
    """

    __slots__ = ("_body", "_index", "file", "headers", "method", "path", "query", "safe_headers")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | BodyFile,
        index: dict[str, str] | None = None,
        safe_headers: bool = False,
    ) -> None:
        """``index``, if given, must map each lower-cased header name to its first value;
        ``safe_headers`` says the headers were already redacted (:mod:`replay.record.redact`)."""
        self.method = method
        self.path = path
        self.query = query
        self.headers: Headers = tuple(headers)
        if isinstance(body, BodyFile):
            self.file: BodyFile | None = body
            self._body: bytes | None = None
        else:
            self.file = None
            self._body = body
        self._index = index
        self.safe_headers = safe_headers

    @property
    def body(self) -> bytes:
        """The whole body (read from its file, if it has one)."""
        body = self._body
        if body is None:
            assert self.file is not None
            return self.file.read()
        return body

    @property
    def payload(self) -> bytes | BodyFile:
        """The body as held: ``bytes``, or the file it is in."""
        return self.file if self.file is not None else self.body

    @property
    def size(self) -> int:
        """The body's length in bytes."""
        return self.file.size if self.file is not None else len(self.body)

    def head(self, size: int) -> bytes:
        """The body's first ``size`` bytes (without reading the rest of a file)."""
        return self.file.head(size) if self.file is not None else self.body[:size]

    def replace(
        self,
        *,
        query: str | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
        body: bytes | BodyFile | None = None,
    ) -> Request:
        """A copy with the given parts changed (headers kept as they were redacted, or not)."""
        return Request(
            self.method,
            self.path,
            self.query if query is None else query,
            self.headers if headers is None else headers,
            self.payload if body is None else body,
            self._index if headers is None else None,
            safe_headers=self.safe_headers,
        )

    @property
    def index(self) -> dict[str, str]:
        """Lower-cased header name -> first value (built once)."""
        index = self._index
        if index is None:
            index = {}
            for key, value in reversed(self.headers):
                index[_lower(key)] = value
            self._index = index
        return index

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        return self.index.get(name.lower(), default)

    @property
    def target(self) -> str:
        """Raw path plus ``?query`` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def to_dict(self) -> dict[str, Any]:
        file = self.file
        if file is not None and file.stored:
            return {
                "method": self.method,
                "path": self.path,
                "query": self.query,
                "headers": self.headers,
                "body": file.digest,
                "encoding": "file",
                "size": file.size,
            }
        body, encoding = _encode_body(self.body)
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": body,
            "encoding": encoding,
        }

    @classmethod
    def from_dict(cls, data: Any, bodies: Path | None = None) -> Request:
        """The request ``data`` describes; a body stored as a file is looked for in ``bodies``."""
        if not isinstance(data, dict):
            raise ValueError("request must be an object")
        encoding = _str(data, "encoding", "utf-8")
        body: bytes | BodyFile
        if encoding == "file":
            digest = _str(data, "body")
            size = data.get("size")
            if not is_digest(digest):
                raise ValueError("a body stored as a file must be named by its SHA-256 (64 hex digits)")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError("a body stored as a file needs its size")
            body = BodyFile((bodies if bodies is not None else Path(BODIES_DIR)) / digest, size, digest, stored=True)
        else:
            body = _decode_body(_str(data, "body", ""), encoding)
        return cls(
            method=_str(data, "method"),
            path=_str(data, "path"),
            query=_str(data, "query", ""),
            headers=_headers(data.get("headers", [])),
            body=body,
        )

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


class Response:
    """What the emulator answered."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers: Headers = tuple(headers)
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return _response_document(self.status, self.headers, self.body)

    @classmethod
    def from_dict(cls, data: Any) -> Response:
        if not isinstance(data, dict):
            raise ValueError("response must be an object")
        status = data.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError("response status must be an integer")
        return cls(
            status=status,
            headers=_headers(data.get("headers", [])),
            body=_decode_body(_str(data, "body", ""), _str(data, "encoding", "utf-8")),
        )

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class Entry:
    """One recorded, successful, state-mutating API call."""

    __slots__ = ("operation", "request", "response", "seed", "seq", "service", "time", "waited")

    def __init__(
        self,
        time: float,
        service: str,
        operation: str,
        request: Request,
        response: Response,
        seed: int | None = None,
        waited: float = 0.0,
        seq: int | None = None,
    ) -> None:
        self.time = time
        self.seq = seq
        self.service = service
        self.operation = operation
        self.request = request
        self.response = response
        self.seed = seed
        self.waited = waited

    def to_dict(self) -> dict[str, Any]:
        document = _document(
            self.time, self.service, self.operation, self.request, self.response.to_dict(), self.seed, self.waited
        )
        if self.seq is not None:
            document = {"v": document.pop("v"), "seq": self.seq, **document}
        return document

    @classmethod
    def from_dict(cls, data: Any, bodies: Path | None = None) -> Entry:
        """The entry ``data`` describes; its request body, if stored as a file, is looked for in ``bodies``."""
        if not isinstance(data, dict):
            raise ValueError("an entry must be a JSON object")
        time = data.get("time", 0.0)
        if not isinstance(time, (int, float)) or isinstance(time, bool):
            raise ValueError("time must be a number")
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("seed must be an integer")
        waited = data.get("waited", 0.0)
        if not isinstance(waited, (int, float)) or isinstance(waited, bool) or not 0 <= waited < 1e6:
            raise ValueError("waited must be a number of seconds")
        seq = data.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
            raise ValueError("seq must be a positive integer")
        return cls(
            time=float(time),
            service=_str(data, "service", ""),
            operation=_str(data, "operation", ""),
            request=Request.from_dict(data.get("request"), bodies),
            response=Response.from_dict(data.get("response")),
            seed=seed,
            waited=float(waited),
            seq=seq,
        )

    def __repr__(self) -> str:
        return f"<Entry {self.service}.{self.operation} {self.request.method} {self.request.target}>"


def _str(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def encode_entry(entry: Entry) -> bytes:
    """One log line for ``entry``, newline included."""
    return orjson.dumps(entry.to_dict(), option=orjson.OPT_APPEND_NEWLINE)


def _response_document(status: int, headers: Sequence[tuple[str, str]], body: bytes) -> dict[str, Any]:
    text, encoding = _encode_body(body)
    return {"status": status, "headers": headers, "body": text, "encoding": encoding}


def _document(
    time: float,
    service: str,
    operation: str,
    request: Request,
    response: dict[str, Any],
    seed: int | None,
    waited: float = 0.0,
) -> dict[str, Any]:
    """The version-1 document of one entry: the single place its fields are laid out."""
    data = {
        "v": FORMAT_VERSION,
        "time": time,
        "service": service,
        "operation": operation,
        "request": request.to_dict(),
        "response": response,
    }
    if seed is not None:
        data["seed"] = seed
    if waited:
        data["waited"] = round(waited, 6)
    return data


def encode_call(
    time: float,
    service: str,
    operation: str,
    request: Request,
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    seed: int | None = None,
    waited: float = 0.0,
) -> bytes:
    """The log line :func:`encode_entry` would make, without building the objects first (the recording hot path)."""
    document = _document(time, service, operation, request, _response_document(status, headers, body), seed, waited)
    return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)


_PREFIX = b'{"v":' + str(FORMAT_VERSION).encode() + b","


def numbered(line: bytes, seq: int) -> bytes:
    """``line`` (an encoded entry without a sequence number) with ``"seq": seq`` after its version."""
    if line.startswith(_PREFIX):
        return _PREFIX + b'"seq":' + str(seq).encode() + b"," + line[len(_PREFIX) :]
    document = orjson.loads(line)  # laid out by someone else: the slow, sure way
    document = {"v": document.pop("v", FORMAT_VERSION), "seq": seq, **document}
    return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)


def decode_entry(line: bytes, bodies: Path | None = None) -> Entry:
    """Decode one log line; ``bodies`` is the folder of the body files its log names (``bodies`` beside it).

    :raises EntryVersionError: the entry has a newer format version.
    :raises ValueError: the line is not a well-formed entry (orjson's
        ``JSONDecodeError`` is a ``ValueError`` too).
    """
    data = orjson.loads(line)
    if not isinstance(data, dict):
        raise ValueError("an entry must be a JSON object")
    version = data.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("missing or invalid format version 'v'")
    if version > FORMAT_VERSION:
        raise EntryVersionError(version, FORMAT_VERSION)
    return Entry.from_dict(data, bodies)
