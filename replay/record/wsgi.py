"""Conversions between a WSGI environ and a :class:`~replay.record.entry.Request`.

:func:`request_from_environ` reads what a server handed the app (restoring
``wsgi.input`` so the app can still read the body), dropping secret headers on
the way so that no :class:`Request` ever holds them (:mod:`replay.record.redact`); :func:`environ_from_request`
builds the environ an in-process replay hands the app, the way werkzeug's
server would have built it (``PATH_INFO`` decoded, ``RAW_URI`` raw).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, unquote_to_bytes

from werkzeug.wsgi import ClosingIterator, get_input_stream

from ..errors import RequestError
from .bodies import SPOOL_THRESHOLD, BodyFile, spool, stream_of
from .entry import Request, Response
from .redact import SENSITIVE_HEADERS, safe_header

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

__all__ = [
    "BODY_STREAM_KEY",
    "DEFAULT_MAX_BODY",
    "MAX_BODY_KEY",
    "REQUEST_KEY",
    "SPOOL_DIR_KEY",
    "closing_body",
    "content_length",
    "drain",
    "environ_from_request",
    "request_from_environ",
    "run_app",
]

DEFAULT_MAX_BODY = 5 * 1024**3
"""S3's largest single upload: the default of ``REPLAY_MAX_BODY_SIZE``."""

_SPECIAL = {"CONTENT_TYPE": ("Content-Type", "content-type"), "CONTENT_LENGTH": ("Content-Length", "content-length")}


def _header_name(key: str) -> tuple[str, str] | tuple[()]:
    """``(name, lower-cased name)`` of the header an environ key holds, or ``()`` for other keys."""
    if key in _SPECIAL:
        return _SPECIAL[key]
    if not key.startswith("HTTP_"):
        return ()
    name = "-".join(part.capitalize() for part in key[5:].split("_"))
    return name, name.lower()


# environ keys (in order) -> the header keys among them: (key, name, lower-cased name, sensitive)
_Plan = tuple[tuple[str, str, str, bool], ...]
_PLANS: dict[tuple[str, ...], _Plan] = {}


def _plan(keys: tuple[str, ...]) -> _Plan:
    """Which environ keys are headers, worked out once per shape of environ (clients repeat theirs)."""
    plan = _PLANS.get(keys)
    if plan is None:
        found = [(key, _header_name(key)) for key in keys]
        plan = tuple((key, f[0], f[1], f[1] in SENSITIVE_HEADERS) for key, f in found if f)
        if len(_PLANS) >= 256:
            _PLANS.clear()
        _PLANS[keys] = plan
    return plan


MAX_BODY_KEY = "replay.max_body"
"""The environ key a server sets to the largest body it takes (``REPLAY_MAX_BODY_SIZE``)."""

SPOOL_DIR_KEY = "replay.spool_dir"
"""The environ key naming the folder where large bodies are spooled (:mod:`replay.record.bodies`)."""


def content_length(environ: WSGIEnvironment) -> int | None:
    """The request's ``Content-Length``: ``None`` when it names none.

    :raises RequestError: it is not a plain number of bytes (``+5``, ``-1``, ``5.0``, ``0x5`` ...).
    """
    raw = environ.get("CONTENT_LENGTH")
    if raw in (None, ""):
        return None
    if not raw.isascii() or not raw.isdigit():
        raise RequestError("400 Bad Request", f"invalid Content-Length {raw!r}: it must be a number of bytes")
    return int(raw)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        "413 Content Too Large", f"the request body is larger than {limit:,} bytes (REPLAY_MAX_BODY_SIZE)"
    )


def _read_body(environ: WSGIEnvironment, wanted: int | None, limit: int) -> bytes | BodyFile:
    """Read the body, in bounded chunks: ``wanted`` bytes, or to its end when chunked (``None``).

    A body over :data:`~replay.record.bodies.SPOOL_THRESHOLD` bytes is spooled to a file in the environ's
    ``replay.spool_dir`` (the system's temporary folder when unset).

    :raises RequestError: more than ``limit`` bytes, framing the server could not decode (bad chunks),
        or no room to spool the body (503).
    """
    if wanted is not None and wanted > limit:
        raise _too_large(limit)
    stream = get_input_stream(environ, safe_fallback=True) if wanted is None else environ["wsgi.input"]
    try:
        if wanted is not None and wanted <= SPOOL_THRESHOLD:  # the usual API call: read into memory
            first = stream.read(wanted)
            if len(first) == wanted or not first:
                return first
            parts: list[bytes] = [first]
            size = len(first)
            while size < wanted:
                chunk = stream.read(wanted - size)
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        return spool(stream.read, wanted, limit, environ.get(SPOOL_DIR_KEY), lambda: _too_large(limit))
    except OSError as exc:  # werkzeug's chunked decoding (a malformed chunk), or the connection failing mid-body
        raise RequestError("400 Bad Request", f"the request body cannot be read: {exc}") from None


REQUEST_KEY = "replay.request"
"""The environ key the request read from it is kept under, so that each layer reads it once."""
BODY_STREAM_KEY = "replay.body_stream"  # a body too large for memory: its file, and the handle the app reads


def _stream(environ: WSGIEnvironment, body: bytes | BodyFile) -> BinaryIO:
    stream = stream_of(body)
    if isinstance(body, BodyFile):
        environ[BODY_STREAM_KEY] = (stream, body)
    return stream


def _release(spooled: tuple[BinaryIO, BodyFile]) -> None:
    stream, body = spooled
    stream.close()
    body.discard()  # a temporary spool file goes now (a recorded body was kept under its own name)


def closing_body(environ: WSGIEnvironment, response: Iterable[bytes]) -> Iterable[bytes]:
    """``response``, closing and removing the file the request's body was spooled to (if it was) when it is
    closed, not whenever it is collected."""
    spooled = environ.pop(BODY_STREAM_KEY, None)
    if spooled is None:
        return response
    return ClosingIterator(response, lambda: _release(spooled))


def request_from_environ(environ: WSGIEnvironment) -> Request:
    """The request in ``environ``; its body is read (in bounded chunks) and put back for the app to read.

    :raises RequestError: its framing cannot be read (a bad ``Content-Length``, a malformed chunk) or its
        body is larger than the environ's ``replay.max_body`` (default :data:`DEFAULT_MAX_BODY`).

    The request is kept in ``environ`` (key ``replay.request``), so that the layers a
    request passes through read it once.
    """
    cached = environ.get(REQUEST_KEY)
    if cached is not None:
        request: Request = cached
        return request
    request = _read_request(environ)
    environ[REQUEST_KEY] = request
    return request


def _read_request(environ: WSGIEnvironment) -> Request:
    method = environ.get("REQUEST_METHOD", "GET")
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = raw.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
    else:
        decoded = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        path = quote(decoded, safe="/:@!$&'()*+,;=~", encoding="latin-1") or "/"
    headers = []
    index: dict[str, str] = {}
    for key, name, lower, sensitive in _plan(tuple(environ)):
        value: str | None = environ[key]
        if sensitive:
            value = safe_header(lower, value)  # type: ignore[arg-type]
            if value is None:
                continue
        elif not value:
            continue
        headers.append((name, value))
        index[lower] = value
    limit = environ.get(MAX_BODY_KEY, DEFAULT_MAX_BODY)
    length = content_length(environ)
    body: bytes | BodyFile
    if environ.get("wsgi.input_terminated"):
        body = _read_body(environ, None, limit)
        environ["wsgi.input"] = _stream(environ, body)
    elif not length:
        body = b""
    else:
        body = _read_body(environ, length, limit)
        environ["wsgi.input"] = _stream(environ, body)
    return Request(method, path, environ.get("QUERY_STRING", ""), headers, body, index, safe_headers=True)


def environ_from_request(
    request: Request, server_name: str = "localhost", server_port: int = 80, url_scheme: str = "http"
) -> WSGIEnvironment:
    """A WSGI environ for ``request``, as werkzeug's server would build it."""
    environ: WSGIEnvironment = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(request.path).decode("latin-1"),
        "QUERY_STRING": request.query,
        "RAW_URI": request.target,
        "REQUEST_URI": request.target,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": stream_of(request.payload),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        elif key != "TRANSFER_ENCODING":
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ["CONTENT_LENGTH"] = str(request.size)
    if "HTTP_HOST" not in environ:  # HTTP/1.1 always has one; apps (moto among them) rely on it
        environ["HTTP_HOST"] = server_name if server_port == 80 else f"{server_name}:{server_port}"
    return environ


def run_app(app: WSGIApplication, environ: WSGIEnvironment) -> Response:
    """Call ``app`` with ``environ`` and collect its whole response (its iterable is closed)."""
    status = 0
    headers: list[tuple[str, str]] = []
    written: list[bytes] = []

    def start_response(
        status_line: str, response_headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> object:
        nonlocal status, headers
        status = int(status_line[:3])
        headers = response_headers
        return written.append

    opened = environ["wsgi.input"]
    try:
        iterable = app(environ, start_response)  # type: ignore[arg-type]
        body = drain(iterable)  # first: an app may call start_response only once it is iterated
    finally:  # a body file's handles are closed now, not when collected
        opened.close()
        spooled = environ.pop(BODY_STREAM_KEY, None)
        if spooled is not None:
            _release(spooled)
    return Response(status, headers, b"".join(written) + body)


def drain(iterable: Iterable[bytes]) -> bytes:
    """All of a response iterable's bytes; it is closed (as WSGI asks) whatever happens."""
    try:
        return b"".join(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
