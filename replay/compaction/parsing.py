"""Reading requests: the region a call is served in, JSON and form bodies, and the resources an ARN names.

Also :class:`_Opaque`, raised by anything that cannot follow a call of a modelled service.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..record.entry import Request

__all__: list[str] = []

_DEFAULT_REGION = "us-east-1"

_UA_REGION = re.compile(r"region/([a-z]{2}-[a-z]+-\d)")
_HOST_REGION = re.compile(r"\.([^.]+)\.amazonaws\.com")
_SQS_HOST_REGION = re.compile(r"://(.+?)\.queue\.amazonaws\.com")
_ARN = re.compile(rb"arn:aws[a-z-]*:(sqs|sns|s3|dynamodb):([a-z0-9-]*):([0-9]*):([^\s\"'<>&,;\\]+)")
_QUEUE_URL = re.compile(rb"https?://[^/\s\"'<>]+/[0-9]{12}/([A-Za-z0-9_-]{1,80}(?:\.fifo)?)")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_LONG_KEY = 64


class _Opaque(Exception):
    """A call of a modelled service that the planner cannot follow: its service's rules go off."""


def _region(request: Request, service: str) -> str:
    """The region moto serves ``request`` in: host name, user agent, SigV4 scope, else the default."""
    index = request.index
    host = index.get("host", "")
    if "amazonaws.com" in host:
        match = (_SQS_HOST_REGION if service == "sqs" else _HOST_REGION).search("http://" + host)
        if match:
            return match.group(1)
    agent = index.get("user-agent", "")
    if "region/" in agent:
        found = _UA_REGION.search(agent)
        if found:
            return found.group(1)
    auth = index.get("authorization", "")
    if "AWS4" in auth:
        parts = auth.split(",", 1)[0].split("/")
        if len(parts) > 2:
            return parts[2]
    return _DEFAULT_REGION


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Opaque("body is not JSON") from exc
    if not isinstance(data, dict):
        raise _Opaque("body is not a JSON object")
    return data


def _form(request: Request) -> dict[str, str]:
    params = dict(parse_qsl(request.query, keep_blank_values=True))
    if request.body:
        params.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _digest(text: str) -> str | bytes:
    """``text``, or a 16-byte digest of it when long (keys are kept for the whole pass)."""
    if len(text) <= _LONG_KEY:
        return text
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _arn_keys(match: re.Match[bytes]) -> list[tuple[str, ...]]:
    """Mention keys of one ARN match."""
    service = match.group(1).decode()
    region = match.group(2).decode()
    resource = match.group(4).decode("utf-8", "replace")
    if service == "s3":
        bucket = resource.split("/", 1)[0]
        return [("s3", bucket)] if bucket and "*" not in bucket else []
    if service == "dynamodb":
        if not resource.startswith("table/"):
            return []
        name = resource[6:].split("/", 1)[0]
        return [("dynamodb", region, name)] if name else []
    found = _NAME.match(resource.split(":", 1)[0])
    if not found:
        return []
    name = found.group(0)
    if service == "sqs":
        return [("sqs", region, name), ("sqs", "*", name)]
    return [("sns", region, name)]


def _pieces(request: Request) -> Iterable[bytes]:
    """The request's body to search, whole, or (held in a file) in overlapping pieces of about 1 MiB."""
    if request.file is not None:
        return request.file.windows()
    return (request.body,)
