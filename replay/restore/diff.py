"""What differs between a recorded response and the response its replay got.

:func:`changes` walks both responses side by side (status, headers, JSON or XML
bodies, and JSON documents carried inside string values, such as an SNS
notification in an SQS message body) and lists each :class:`Change`.  Request
ids and volatile headers (``Date``, ``Server`` ...) are not compared at all.
Whether a change is fine (one of the call's own times, a generated id the
mapping learned) or a divergence is decided in :mod:`replay.restore.convergence`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import xml.etree.ElementTree as ElementTree
from typing import Any

import orjson

from ..record.entry import Response
from ..record.redact import conceals

__all__ = ["Change", "changes"]

VOLATILE_HEADERS = frozenset(
    {
        "date",
        "server",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "x-amzn-requestid",
        "x-amz-request-id",
        "x-amz-id-2",
        "x-amz-crc32",
        "access-control-allow-origin",
    }
)
REQUEST_IDS = frozenset({"RequestId", "RequestID", "requestId", "request_id"})


@dataclasses.dataclass(frozen=True)
class Change:
    """One value that differs: where it is, the key or element it is under, both values."""

    where: str
    key: str
    recorded: Any
    replayed: Any

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "recorded": self.recorded, "replayed": self.replayed}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _summary(value: Any) -> Any:
    if isinstance(value, dict):
        return f"object with {len(value)} keys"
    if isinstance(value, list):
        return f"{len(value)} items"
    return value


def _walk_json(old: Any, new: Any, where: str, key: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for name, value in old.items():
            if name in REQUEST_IDS:
                continue
            if name in new:
                _walk_json(value, new[name], f"{where}.{name}", name, out)
            else:
                out.append(Change(f"{where}.{name}", name, _summary(value), None))
        out.extend(Change(f"{where}.{name}", name, None, _summary(new[name])) for name in new if name not in old)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.append(Change(where, key, f"{len(old)} items", f"{len(new)} items"))
        for index, (item, other) in enumerate(zip(old, new, strict=False)):
            _walk_json(item, other, f"{where}[{index}]", key, out)
    elif old != new and not (
        isinstance(old, str) and isinstance(new, str) and _walk_embedded(old, new, where, key, out)
    ):
        out.append(Change(where, key, _summary(old), _summary(new)))


def _walk_embedded(old: str, new: str, where: str, key: str, out: list[Change]) -> bool:
    """Walk two strings that both hold JSON objects or arrays; ``False`` when they do not."""
    if old[:1] not in ("{", "[") or new[:1] not in ("{", "["):
        return False
    try:
        old_data, new_data = orjson.loads(old), orjson.loads(new)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(old_data, (dict, list)) or not isinstance(new_data, (dict, list)):
        return False
    _walk_json(old_data, new_data, f"{where}(json)", key, out)
    return True


def _walk_xml(old: ElementTree.Element, new: ElementTree.Element, where: str, out: list[Change]) -> None:
    tag = _local(old.tag)
    if tag in REQUEST_IDS:
        return
    if old.tag != new.tag:
        out.append(Change(where, tag, tag, _local(new.tag)))
        return
    old_text, new_text = (old.text or "").strip(), (new.text or "").strip()
    if (
        old_text != new_text
        and not conceals(old_text, new_text)
        and not _walk_embedded(old_text, new_text, where, tag, out)
    ):
        out.append(Change(where, tag, old_text, new_text))
    old_children, new_children = list(old), list(new)
    if len(old_children) != len(new_children):
        out.append(Change(where, tag, f"{len(old_children)} elements", f"{len(new_children)} elements"))
    for child, other in zip(old_children, new_children, strict=False):
        _walk_xml(child, other, f"{where}/{_local(child.tag)}", out)


def _digest(body: bytes) -> str:
    return f"{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:16]}"


def changes(recorded: Response, replayed: Response) -> list[Change]:
    """Every difference between ``recorded`` and ``replayed`` (volatile headers and request ids aside)."""
    out: list[Change] = []
    if recorded.status != replayed.status:
        out.append(Change("status", "status", recorded.status, replayed.status))
    replayed_headers = {name.lower(): value for name, value in replayed.headers}
    for name, value in recorded.headers:
        lower = name.lower()
        if lower not in VOLATILE_HEADERS and replayed_headers.get(lower) != value:
            out.append(Change(f"header {lower}", lower, value, replayed_headers.get(lower)))
    old, new = recorded.body.strip(), replayed.body.strip()
    if old == new:
        return out
    walked: list[Change] = []
    try:
        if old[:1] in (b"{", b"[") and new[:1] in (b"{", b"["):
            with contextlib.suppress(orjson.JSONDecodeError):
                _walk_json(orjson.loads(old), orjson.loads(new), "body", "", walked)
                return out + walked
        elif old[:1] == b"<" and new[:1] == b"<":
            with contextlib.suppress(ElementTree.ParseError):
                old_root, new_root = ElementTree.fromstring(old), ElementTree.fromstring(new)
                _walk_xml(old_root, new_root, f"body/{_local(old_root.tag)}", walked)
                return out + walked
    except RecursionError:  # nested deeper than can be walked: compared whole
        pass
    out.append(Change("body", "body", _digest(recorded.body), _digest(replayed.body)))
    return out
