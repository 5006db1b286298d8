"""Learned id mapping: which generated values came out differently on replay, and rewriting later calls.

Emulators generate values (upload ids, subscription ARNs, message ids ...) that
later calls refer to.  Replayed, the same call generates different ones, so a
later recorded call would name a value that no longer exists.  While replaying,
:class:`IdMapping` learns from the differences between each recorded response
and the one the replay got (:func:`replay.diff.changes`: JSON bodies walked in
parallel, objects by key and arrays by position, XML bodies likewise, and
same-named response headers):

* every string that differs is a candidate ``old -> new`` pair;
* values that cannot be identifiers are ignored: shorter than 6 characters,
  numbers, timestamps, and request ids (``RequestId`` elements or keys and the
  request-id headers);
* inside ARNs and URLs the differing parts are learned too (split at ``:`` and
  ``/``), so a later call that names only the random tail is also rewritten.

:meth:`IdMapping.rewrite` then replaces learned values in a request before it
is reissued: path segments and query values (percent-decoded first), header
values, and JSON, form-encoded and XML bodies.  Other bodies (S3 object data)
are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import orjson

from .diff import Change, explain, is_clock_value
from .entry import Request

__all__ = ["IdMapping"]

# headers of a request that must never be rewritten
_FIXED_HEADERS = frozenset({"host", "content-length", "content-type", "authorization", "x-amz-date", "x-amz-target"})
_PARTS = re.compile(r"([:/])")
_XML_TOKEN = re.compile(r"[^<>\s\"'&]+")
_MIN_LENGTH = 6


def _identifier(value: str) -> bool:
    """Could ``value`` be a generated identifier worth mapping?"""
    if len(value) < _MIN_LENGTH or is_clock_value(value):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


class IdMapping:
    """Generated values that differ between a recording and its replay, and their rewriting."""

    def __init__(self) -> None:
        self.pairs: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    # learning

    def _add(self, old: str, new: str) -> None:
        if old == new or not _identifier(old):
            return
        self.pairs[old] = new
        if ":" in old or "/" in old:
            old_parts, new_parts = _PARTS.split(old), _PARTS.split(new)
            if len(old_parts) == len(new_parts):
                for part, replacement in zip(old_parts, new_parts, strict=True):
                    if part != replacement and _identifier(part):
                        self.pairs[part] = replacement

    def learn(self, changes: Iterable[Change]) -> None:
        """Remember the generated values among ``changes`` (:func:`replay.diff.changes` of a recorded
        response and its replay)."""
        for change in changes:
            if isinstance(change.recorded, str) and isinstance(change.replayed, str) and explain(change, None) is None:
                self._add(change.recorded, change.replayed)

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
        body = request.body
        if body:
            body = self._map_body(body, (request.header("Content-Type") or "").lower())
        unchanged = path is request.path and query is request.query and body is request.body
        if unchanged and headers == list(request.headers):
            return request
        return Request(request.method, path, query, headers, body, safe_headers=request.safe_headers)
