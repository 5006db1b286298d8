"""SQS rules: queue lifetimes, and messages that were sent and then deleted, purged or dropped with their queue.

:class:`_Queue` follows one queue's messages (a union-find over them groups the
messages that share a call); :class:`_SqsRules` reads the calls.  Only the JSON
protocol is followed message by message: a query-protocol call keeps its queue
and the queue's messages.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable
from typing import Any

from ..record.entry import Entry, Request
from .core import _REFERS, _SQS_MSG, _Life, _PlannerCore
from .parsing import _digest, _form, _json, _Opaque, _region, _text

__all__: list[str] = []


def _queue_name(body: dict[str, Any], path: str) -> str:
    """The queue moto resolves: last segment of ``QueueUrl`` (or the value itself), else of the path."""
    url = body.get("QueueUrl")
    if isinstance(url, str):
        return url.split("/")[-1] if url.startswith(("http://", "https://")) else url
    return path.split("/")[-1]


class _Queue(_Life):
    __slots__ = (
        "by_handle",
        "by_id",
        "calls",
        "dedup",
        "dedup_of",
        "ended",
        "fifo",
        "first_receive",
        "ids",
        "live",
        "opaque",
        "parent",
        "pinned_messages",
        "receipts",
        "received",
        "receives",
        "retention",
        "sent_at",
        "token",
    )

    def __init__(self, ident: int, name: str, keys: list[tuple[str, ...]], start: int, created: bool, token: str):
        super().__init__(ident, "sqs", name, keys, start, created)
        self.token = token
        self.fifo = name.endswith(".fifo")
        self.retention = 345_600.0 if created else 60.0
        self.opaque = False  # an operation not modelled here: no message rule
        self.parent = array("l", [0])  # union-find over messages; node 0 stands for "must be kept"
        self.ended = bytearray(1)
        self.pinned_messages = bytearray(b"\x01")
        self.sent_at = array("d", [0.0])
        self.first_receive = array("l", [-1])
        self.received = array("l", [0])
        self.receives = 0  # receives on this queue so far
        self.by_id: dict[str, int] = {}
        self.ids: list[str] = [""]  # node -> message id, while it is there
        self.by_handle: dict[str | bytes, int] = {}
        self.live: set[int] = set()
        self.dedup: dict[str | bytes, set[int]] = {}  # FIFO: deduplication key -> messages still there
        self.dedup_of: dict[int, str | bytes] = {}
        self.calls = array("l")  # ordinals of message calls ...
        self.receipts = array("l")  # ... and the message node each belongs to

    def node(self, message_id: str, sent_at: float) -> int:
        """A new message; its id is known until it is gone (a deleted message is never received again)."""
        node = len(self.parent)
        self.parent.append(node)
        self.ended.append(0)
        self.pinned_messages.append(0)
        self.sent_at.append(sent_at)
        self.first_receive.append(-1)
        self.received.append(0)
        self.by_id[message_id] = node
        self.ids.append(message_id)
        self.live.add(node)
        return node

    def find(self, node: int) -> int:
        parent = self.parent
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def union(self, nodes: Iterable[int]) -> int:
        first = -1
        for node in nodes:
            root = self.find(node)
            if first < 0:
                first = root
            elif root != first:
                low, high = min(root, first), max(root, first)
                self.parent[high] = low
                first = low
        return first

    def rules_off(self, kind: int) -> None:
        """No message rule, unless it is a standard queue that something only delivers into."""
        if kind & _REFERS or self.fifo:
            self.opaque = True

    def call(self, ordinal: int, node: int) -> None:
        self.calls.append(ordinal)
        self.receipts.append(node)

    def end_message(self, node: int, when: float) -> None:
        if self.ended[node]:
            return
        self.ended[node] = 1
        self.live.discard(node)
        self.by_id.pop(self.ids[node], None)
        self.ids[node] = ""
        if when - self.sent_at[node] >= self.retention - 1.0:
            self.pinned_messages[node] = 1  # may have expired meanwhile: a receive stops at it
        first = self.first_receive[node]
        if self.fifo and first >= 0 and self.receives - first + 1 > self.received[node]:
            self.pinned_messages[node] = 1  # another receive ran while it blocked its message group
        key = self.dedup_of.pop(node, None)
        if key is not None:
            holders = self.dedup[key]
            holders.discard(node)
            if not holders:
                del self.dedup[key]


class _SqsRules(_PlannerCore):
    """The SQS handler and its hooks."""

    def _settle(self) -> None:
        for life in self.lives:
            if isinstance(life, _Queue) and life.end is None:
                self._settle_queue(life)
        super()._settle()

    def _queue(self, ordinal: int, request: Request, name: str, token: str, region: str) -> _Queue:
        self._claim("sqs", (region, name), token)
        key = ("sqs", region, name)
        life = self.open.get(key)
        if not isinstance(life, _Queue):
            keys = [("sqs", region, name), ("sqs", "*", name), ("name", name)]
            life = _Queue(self._new_id(), name, keys, ordinal, False, token)
            self._life(key, life)
        return life

    def _sqs(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        region = _region(request, "sqs")
        token = self._token(request)
        target = request.index.get("x-amz-target", "")
        if not target.startswith("AmazonSQS."):  # the query protocol: follow the queue, not its messages
            params = _form(request)
            name = _queue_name(params, request.path) if "QueueUrl" in params else params.get("QueueName", "")
            if not name:
                raise _Opaque("a query-protocol call names no queue")
            queue = self._queue(ordinal, request, name, token, region)
            queue.opaque = queue.nodrop = True
            self._own(ordinal, queue)
            return
        body = _json(request.body)
        op = entry.operation
        if op == "CreateQueue":
            self._create_queue(ordinal, entry, body, token, region)
            return
        name = _queue_name(body, request.path)
        if not name:
            raise _Opaque("no queue named")
        queue = self._queue(ordinal, request, name, token, region)
        self._own(ordinal, queue)
        if op == "DeleteQueue":
            for node in list(queue.live):
                queue.end_message(node, entry.time)
            self._end(("sqs", region, name), ordinal)
            self._settle_queue(queue)
        elif op == "SetQueueAttributes":
            self._queue_attributes(queue, body.get("Attributes"))
            self._scan(ordinal, queue, request.body)
        elif op in ("TagQueue", "UntagQueue", "AddPermission", "RemovePermission"):
            pass
        elif op == "SendMessage":
            response = _json(entry.response.body)
            node = queue.node(_text(response.get("MessageId")), entry.time)
            self._dedup(queue, node, body)
            queue.call(ordinal, node)
        elif op == "SendMessageBatch":
            self._send_batch(ordinal, entry, queue, body)
        elif op == "ReceiveMessage":
            self._receive(ordinal, entry, queue)
        elif op in ("DeleteMessage", "ChangeMessageVisibility"):
            node = queue.by_handle.get(_digest(_text(body.get("ReceiptHandle"))), -1)
            if node > 0:
                queue.call(ordinal, node)
                if op == "DeleteMessage":
                    queue.end_message(node, entry.time)
        elif op in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
            self._handle_batch(ordinal, entry, queue, body, op == "DeleteMessageBatch")
        elif op == "PurgeQueue":
            for node in list(queue.live):
                queue.end_message(node, entry.time)
        else:
            queue.opaque = queue.nodrop = True
            self._scan(ordinal, queue, request.body)

    def _create_queue(self, ordinal: int, entry: Entry, body: dict[str, Any], token: str, region: str) -> None:
        name = _text(body.get("QueueName"))
        if not name:
            raise _Opaque("CreateQueue without a name")
        self._claim("sqs", (region, name), token)
        key = ("sqs", region, name)
        queue = self.open.get(key)
        if not isinstance(queue, _Queue):
            keys = [("sqs", region, name), ("sqs", "*", name), ("name", name)]
            queue = _Queue(self._new_id(), name, keys, ordinal, self._created(key), token)
            self._life(key, queue)
        self._own(ordinal, queue)
        self._queue_attributes(queue, body.get("Attributes"))
        self._scan(ordinal, queue, entry.request.body)

    @staticmethod
    def _queue_attributes(queue: _Queue, attributes: Any) -> None:
        if not isinstance(attributes, dict):
            return
        if str(attributes.get("FifoQueue", "")).lower() == "true":
            queue.fifo = True
        retention = attributes.get("MessageRetentionPeriod")
        if retention is not None:
            try:
                queue.retention = min(queue.retention, float(retention))
            except (TypeError, ValueError):
                queue.opaque = True

    @staticmethod
    def _dedup(queue: _Queue, node: int, body: dict[str, Any]) -> None:
        """FIFO: a send with the deduplication id of a message still there depends on that message."""
        if not queue.fifo:
            return
        explicit = body.get("MessageDeduplicationId")
        key: str | bytes = (
            f"i:{explicit}"
            if isinstance(explicit, str)
            else hashlib.blake2b(
                _text(body.get("MessageBody")).encode("utf-8", "surrogatepass"), digest_size=16
            ).digest()
        )
        holders = queue.dedup.get(key)
        if holders:
            for holder in holders:
                queue.pinned_messages[holder] = 1
            holders.add(node)
        else:
            queue.dedup[key] = {node}
        queue.dedup_of[node] = key

    def _send_batch(self, ordinal: int, entry: Entry, queue: _Queue, body: dict[str, Any]) -> None:
        requested = {
            item.get("Id"): item for item in body.get("Entries") or () if isinstance(item, dict) and "Id" in item
        }
        response = _json(entry.response.body)
        nodes = []
        for sent in response.get("Successful") or ():
            node = queue.node(_text(sent.get("MessageId")), entry.time)
            self._dedup(queue, node, requested.get(sent.get("Id")) or {})
            nodes.append(node)
        if not nodes:
            return
        queue.union(nodes)
        for node in nodes:
            queue.call(ordinal, node)

    def _receive(self, ordinal: int, entry: Entry, queue: _Queue) -> None:
        response = _json(entry.response.body)
        queue.receives += 1
        nodes = []
        for message in response.get("Messages") or ():
            node = queue.by_id.get(_text(message.get("MessageId")), 0)
            if node and queue.ended[node]:
                node = 0  # cannot happen in moto; keep whatever it is
            nodes.append(node)
            if node:
                if queue.first_receive[node] < 0:
                    queue.first_receive[node] = queue.receives
                queue.received[node] += 1
                handle = message.get("ReceiptHandle")
                if isinstance(handle, str):
                    queue.by_handle[_digest(handle)] = node
        if nodes:
            queue.call(ordinal, queue.union(nodes))

    def _handle_batch(self, ordinal: int, entry: Entry, queue: _Queue, body: dict[str, Any], deletes: bool) -> None:
        handles = {
            item.get("Id"): _text(item.get("ReceiptHandle"))
            for item in body.get("Entries") or ()
            if isinstance(item, dict)
        }
        response = _json(entry.response.body)
        nodes = [0] if response.get("Failed") else []
        done = [
            queue.by_handle.get(_digest(handles.get(item.get("Id"), "")), 0)
            for item in response.get("Successful") or ()
        ]
        nodes.extend(done)
        if not nodes:
            return
        queue.call(ordinal, queue.union(nodes))
        if deletes:
            for node in done:
                if node:
                    queue.end_message(node, entry.time)

    def _settle_queue(self, queue: _Queue) -> None:
        """Decide the queue's messages: a group of messages goes when every one of them may."""
        if queue.opaque or not queue.created or not queue.calls:  # unknown queues may hide consumers
            queue.calls = array("l")
            return
        bad = bytearray(len(queue.parent))
        bad[queue.find(0)] = 1
        for node in range(1, len(queue.parent)):
            if not queue.ended[node] or queue.pinned_messages[node]:
                bad[queue.find(node)] = 1
        marks = self.marks
        for ordinal, node in zip(queue.calls, queue.receipts, strict=True):
            if not bad[queue.find(node)]:
                marks[ordinal] = _SQS_MSG
        queue.calls, queue.receipts = array("l"), array("l")
        queue.by_handle.clear()
        queue.by_id.clear()
        queue.dedup.clear()
        queue.dedup_of.clear()
