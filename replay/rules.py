"""Service rules applied to a recorded call before it is replayed.

Only what the generic machinery (:mod:`replay.mapping`, :mod:`replay.seeding`)
cannot do is here, each rule documented:

* **SQS ReceiveMessage** is replayed with ``WaitTimeSeconds=0``.  It is recorded
  only when it returned messages, so on replay the messages are there; a long
  poll must never make a start-up wait (LocalStack's replay once took hours
  because of recorded long polls).
"""

from __future__ import annotations

import orjson

from .entry import Entry, Request

__all__ = ["prepare"]


def _no_wait(request: Request) -> Request:
    content_type = (request.header("Content-Type") or "").lower()
    if "json" in content_type:
        try:
            data = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return request
        if not isinstance(data, dict) or not data.get("WaitTimeSeconds"):
            return request
        data["WaitTimeSeconds"] = 0
        return Request(
            request.method, request.path, request.query, request.headers, orjson.dumps(data), safe_headers=True
        )
    if content_type.startswith("application/x-www-form-urlencoded"):
        parts = [
            b"WaitTimeSeconds=0" if part.startswith(b"WaitTimeSeconds=") else part for part in request.body.split(b"&")
        ]
        body = b"&".join(parts)
        if body != request.body:
            return Request(request.method, request.path, request.query, request.headers, body, safe_headers=True)
    return request


def prepare(entry: Entry) -> Request:
    """The request to reissue for ``entry``."""
    if entry.service == "sqs" and entry.operation == "ReceiveMessage":
        return _no_wait(entry.request)
    return entry.request
