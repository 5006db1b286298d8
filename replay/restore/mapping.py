"""Learned id mapping: generated ids that came out differently on replay, and rewriting later calls.

Emulators generate ids (upload ids, subscription ARNs, message ids ...) that
later calls refer to.  A replay that cannot reproduce them (no seeding, a
remote target, an id drawn from a source seeding does not reach) generates
different ones, so a later recorded call would name an id that no longer
exists.  While replaying, :class:`IdMapping` is given the pairs that
:mod:`replay.restore.convergence` decided are ids (both values of the same identifier
shape, :mod:`replay.record.identifiers`; inside ARNs and URLs, the parts that
differ) and keeps them ``old -> new``, one to one: an id that would map to a
second value, or a second id that would map onto a taken value, is refused.

:meth:`IdMapping.rewrite` then replaces learned ids in a request before it is
reissued: path segments and query values (percent-decoded first), header
values, and JSON, form-encoded and XML bodies.  Other bodies (S3 object data)
are never touched.  Nothing but ids is ever rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import orjson

from ..record.entry import Request

__all__ = ["IdMapping"]

# headers of a request that must never be rewritten
_FIXED_HEADERS = frozenset({"host", "content-length", "content-type", "authorization", "x-amz-date", "x-amz-target"})
_PARTS = re.compile(r"([:/])")
_XML_TOKEN = re.compile(r"[^<>\s\"'&]+")


class IdMapping:
    """Generated ids that differ between a recording and its replay (one to one), and their rewriting."""

    def __init__(self) -> None:
        self.pairs: dict[str, str] = {}
        self._sources: dict[str, str] = {}  # new -> old

    def __len__(self) -> int:
        return len(self.pairs)

    def inverse(self) -> IdMapping:
        """The same pairs the other way round (``new -> old``)."""
        inverse = IdMapping()
        inverse.pairs = dict(self._sources)
        inverse._sources = dict(self.pairs)
        return inverse

    # learning

    def fits(self, pairs: Iterable[tuple[str, str]]) -> bool:
        """Would ``pairs`` keep the mapping one to one (each old id one new id, each new id one old id)?"""
        return all(self.pairs.get(old, new) == new and self._sources.get(new, old) == old for old, new in pairs)

    def learn(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember ``pairs`` of ids (:func:`replay.record.identifiers.id_pairs`); check :meth:`fits` first."""
        for old, new in pairs:
            self.pairs[old] = new
            self._sources[new] = old

    # rewriting

    def map_value(self, value: str) -> str:
        """``value`` with learned values replaced: whole, or part by part inside ARNs and URLs."""
        pairs = self.pairs
        mapped = pairs.get(value)
        if mapped is not None:
            return mapped
        if ":" in value or "/" in value:
            parts = _PARTS.split(value)
            replaced = [pairs.get(part, part) for part in parts]
            if replaced != parts:
                return "".join(replaced)
        return value

    def _map_pairs(self, raw: str, plus: bool) -> str:
        """Map the values of a ``k=v&k=v`` string, re-encoding only what changed."""
        decode = unquote_plus if plus else unquote
        parts = raw.split("&")
        changed = False
        for index, part in enumerate(parts):
            key, sep, value = part.partition("=")
            if not sep:
                continue
            decoded = decode(value)
            mapped = self.map_value(decoded)
            if mapped != decoded:
                parts[index] = f"{key}={quote(mapped, safe='-_.~')}"
                changed = True
        return "&".join(parts) if changed else raw

    def _map_json(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.map_value(data)
        if isinstance(data, dict):
            return {key: self._map_json(value) for key, value in data.items()}
        if isinstance(data, list):
            return [self._map_json(item) for item in data]
        return data

    def _map_body(self, body: bytes, content_type: str) -> bytes:
        stripped = body.lstrip()
        if content_type.startswith("application/x-www-form-urlencoded"):
            text = body.decode("latin-1")
            mapped = self._map_pairs(text, plus=True)
            return body if mapped is text else mapped.encode("latin-1")
        if stripped[:1] in (b"{", b"[") and ("json" in content_type or not content_type):
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                return body
            mapped_data = self._map_json(data)
            return body if mapped_data == data else orjson.dumps(mapped_data)
        if stripped[:1] == b"<" and ("xml" in content_type or not content_type):
            text = body.decode("utf-8", "surrogateescape")
            mapped = _XML_TOKEN.sub(lambda match: self.map_value(match.group()), text)
            return body if mapped == text else mapped.encode("utf-8", "surrogateescape")
        return body  # opaque data (S3 objects ...) is never rewritten

    def rewrite(self, request: Request) -> Request:
        """``request`` with learned values replaced (``request`` itself when nothing applies)."""
        if not self.pairs:
            return request
        segments = request.path.split("/")
        path_changed = False
        for index, segment in enumerate(segments):
            if segment:
                decoded = unquote(segment)
                mapped = self.map_value(decoded)
                if mapped != decoded:
                    segments[index] = quote(mapped, safe="-_.~!$&'()*+,;=:@")
                    path_changed = True
        path = "/".join(segments) if path_changed else request.path
        query = self._map_pairs(request.query, plus=False) if request.query else request.query
        headers = [
            (name, value if name.lower() in _FIXED_HEADERS else self.map_value(value))
            for name, value in request.headers
        ]
        body = request.payload
        if body and isinstance(body, bytes):  # a body kept as a file (an upload's data) is sent as recorded
            body = self._map_body(body, (request.header("Content-Type") or "").lower())
        unchanged = path is request.path and query is request.query and body is request.payload
        if unchanged and headers == list(request.headers):
            return request
        return Request(request.method, path, query, headers, body, safe_headers=request.safe_headers)
