"""Ids that came out differently on restore, kept working for clients: :class:`LiveIdMapping`.

When a restore cannot make an id again (seeding is off, or the emulator draws it from a source seeding does
not reach: a C extension's own generator, another process), the replay learns ``old -> new``
(:class:`~replay.restore.mapping.IdMapping`).  Clients still hold the old ids.  This WSGI layer sits between the
recording middleware and the emulator while serving:

* a request naming an old id (in its path, query, headers or JSON, form or XML body) reaches the emulator
  with the new one;
* the emulator's answer shows the old ids again (JSON strings and XML text, in place, the rest of the bytes
  left as they were; ``Location``-style headers too), so clients never see the change;
* the recording middleware, outside this layer, keeps the call as the client saw it: the log stays in the
  ids clients know, and the next restore learns the mapping afresh from it.

Answers that are not JSON, XML or text (S3 object data ...) pass through untouched, streamed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

import orjson

from ..record.wsgi import REQUEST_KEY, drain, request_from_environ
from .mapping import IdMapping

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["LiveIdMapping"]

_JSON_STRING = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_TEXTUAL = ("json", "xml", "text/", "x-www-form-urlencoded")
_FIXED_HEADERS = frozenset({"content-length", "content-type", "date", "server", "transfer-encoding", "etag"})


class LiveIdMapping:
    """Rewrite old ids to new ones on the way in, and new ones to old on the way out (see the module docstring).

    :param app: the emulator.
    :param mapping: what the restore learned (``old -> new``).
    """

    def __init__(self, app: WSGIApplication, mapping: IdMapping) -> None:
        self.app = app
        self.forward = mapping
        self.backward = mapping.inverse()

    def __len__(self) -> int:
        return len(self.forward)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = request_from_environ(environ)
        rewritten = self.forward.rewrite(request)
        if rewritten is not request:
            environ = dict(environ)
            environ.pop(REQUEST_KEY, None)
            environ["PATH_INFO"] = unquote_to_bytes(rewritten.path).decode("latin-1")
            environ["RAW_URI"] = environ["REQUEST_URI"] = rewritten.target
            environ["QUERY_STRING"] = rewritten.query
            for name, value in rewritten.headers:
                key = name.upper().replace("-", "_")
                key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
                environ[key] = value
            body = rewritten.payload
            if isinstance(body, bytes):
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
        written: list[bytes] = []
        kept: list[tuple[str, list[tuple[str, str]], OptExcInfo | None]] = []

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            kept[:] = [(status, headers, exc_info)]
            return written.append

        iterable = self.app(environ, capture)
        if not kept:  # an app that starts its response when first iterated
            iterable = [drain(iterable)]
        status, headers, exc_info = kept[0]
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "").lower()
        if not any(kind in content_type for kind in _TEXTUAL):  # opaque data: passed on as it comes
            write = start_response(status, headers, exc_info)
            for chunk in written:
                write(chunk)
            return iterable
        rest = drain(iterable)  # first: write() may be called while it is iterated
        body = self.answer(b"".join(written) + rest, content_type)
        headers = [
            (name, str(len(body)) if name.lower() == "content-length" else self._header(name, value))
            for name, value in headers
        ]
        start_response(status, headers, exc_info)
        return [body]

    def _header(self, name: str, value: str) -> str:
        return value if name.lower() in _FIXED_HEADERS else self.backward.map_value(value)

    def answer(self, body: bytes, content_type: str) -> bytes:
        """``body`` with new ids shown as the old ones (JSON strings and XML text; formatting kept)."""
        stripped = body.lstrip()
        if stripped[:1] in (b"{", b"[") and ("json" in content_type or "text/" in content_type):
            return _JSON_STRING.sub(self._json_string, body)
        return self.backward._map_body(body, content_type)

    def _json_string(self, match: re.Match[bytes]) -> bytes:
        raw = match.group(0)
        try:
            text = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        mapped = self.backward.map_value(text)
        return raw if mapped == text else orjson.dumps(mapped)
