"""Compaction planning: which recorded calls a log can lose without changing what its replay builds.

:func:`plan_compaction` reads the entries of a log once, in order, and returns a
:class:`CompactionPlan`: for each entry (by its 0-based ordinal) whether it must
be kept.  Replaying the kept entries, in the same order, into an empty emulator
gives the same state as replaying all of them.  Replay reissues each call in the
random stream and at the clock it was recorded with (:mod:`replay.seeding`), so
dropping a call never changes the ids or timestamps other calls generate: only
real state dependencies count.  The planner never looks at emulator state, and
keeps only small per-resource bookkeeping (ordinals and flags), never entries.

Rules (the keys of :attr:`CompactionPlan.by_rule`)
--------------------------------------------------

``moto-reset``
    ``POST /moto-api/reset``: everything before it and the reset itself (with
    ``from_empty``; otherwise the reset is kept and only the state after it is
    known to be empty).
``sqs-queue-lifetime``, ``s3-bucket-lifetime``, ``dynamodb-table-lifetime``, ``sns-topic-lifetime``
    A resource created in the log and deleted later: every call on it from its
    create to its delete goes.  Not when another resource or service refers to it
    (its ARN, queue URL or name appears in a call of something else that is kept,
    before its delete), not when it had effects outside itself (an SNS topic that
    published, an S3 bucket with event notifications, access logging or
    replication, a bucket whose tags or object tags a later bucket of the same
    name would inherit, see below), and not when it saw an operation this module
    does not model.  A name deleted and created again is two lifetimes.
``sqs-deleted-message``
    In a queue created in the log: a message sent with ``SendMessage`` or
    ``SendMessageBatch`` (JSON protocol) and deleted (``DeleteMessage`` or
    ``DeleteMessageBatch`` naming a receipt handle that
    a recorded ``ReceiveMessage`` returned for it), purged, or dropped with its
    queue: its send, receives, visibility changes and deletes go, as one unit with
    every message sharing one of those calls (a batch or a receive goes only when
    all its messages do).
``s3-overwritten-object``, ``s3-redundant-delete``, ``s3-aborted-upload``
    In a bucket created in the log that never had versioning, object lock,
    notifications, logging or replication: an object write (``PutObject``,
    ``CopyObject``, or a whole multipart upload) later overwritten or deleted, with
    the tag, ACL, retention and legal-hold calls made on that object; with
    ``from_empty``, a ``DeleteObject`` of a key that has no kept write before it;
    a multipart upload that was aborted.
``dynamodb-overwritten-item``, ``dynamodb-redundant-delete``
    In a table created in the log, without a stream: a ``PutItem``,
    ``UpdateItem`` or ``DeleteItem`` of a key later replaced by an unconditional
    ``PutItem``/``DeleteItem``; with ``from_empty``, a
    ``DeleteItem`` of a key with no kept write before it.
``sns-cancelled-subscription``
    On a topic created in the log: a ``Subscribe`` later ``Unsubscribe``\\ d with no
    publish on its topic in between, with the subscription's attribute calls.

What keeps calls (found by reading moto's models)
-------------------------------------------------

* SQS FIFO queues deduplicate against messages still in the queue, and an
  in-flight message blocks its message group: a message is kept when a later
  send with the same deduplication id (or body, for content-based
  deduplication) arrived while it was still there, or when another receive ran
  on its FIFO queue while it was in flight.  A receive stops at the first
  expired message, so a message that lived longer than the queue's shortest
  retention period is kept.  A deleted receipt handle stays valid for repeated
  deletes, so repeated deletes go with their message.  FIFO queues that
  anything else refers to (an SNS subscription, a notification) get no message
  rule: deliveries could be deduplicated against the dropped messages.
* S3 keeps object tags in a per-account store keyed by bucket, key and version
  (``null`` without versioning) that neither an object's delete nor its bucket's
  delete clears; ``PutObject`` and ``CompleteMultipartUpload`` replace them but a
  ``CopyObject`` without ``x-amz-tagging-directive: REPLACE`` merges the source's
  tags into them.  So such a copy keeps every write and tag call of its
  destination key since the key's last replacing write, even across a delete of
  the bucket, and bucket tags survive a bucket's delete too.  ``PutObject`` with
  ``If-Match``/``If-None-Match`` depends on the object before it and keeps it.
  Copies (``x-amz-copy-source``) keep the object they read.  Versioning keeps
  overwritten versions, notifications and logging make every write visible
  elsewhere: no object rule there.
* DynamoDB: a write with ``ConditionExpression`` or ``Expected``, or one that
  answers with the old values (``ReturnValues``), is never dropped and keeps
  every earlier write of its key; ``BatchWriteItem`` and
  ``TransactWriteItems`` are kept and keep the earlier writes of every key they
  touch; key numbers compare as moto compares them (``1`` is ``1.0``).  Tables
  with a stream, or touched by an operation not modelled here (backups, PartiQL,
  Kinesis destinations), get no item rule.
* SNS ``DeleteTopic`` removes only the caller's subscriptions, and a publish
  delivers to subscribed queues, so a topic that published or was subscribed to
  by another principal keeps its lifetime.

Resource identity is scoped the way moto scopes it: SQS queues and DynamoDB
tables by account and region (the region from the host name, the user agent or
the SigV4 credential scope, the account from ``x-moto-account-id``, from an
access key an IAM ``CreateAccessKey`` in the log issued, else moto's default
``123456789012``), SNS topics by their ARN and the request's region, S3 buckets
by name alone (one namespace).  When two principals that may be different
accounts touch a resource of the same name, that service keeps everything in
that part of the log.

Being conservative: unknown services and operations are always kept, their
requests are searched for ARNs, queue URLs and known resource names, and what
they name is pinned.  A resource that something else names (another service, a
bucket notification, a subscription, a redrive policy) keeps its lifetime while
the reference may matter, and from then on gets no rule that assumes nobody else
reads or writes it: no object rule for the bucket, no item rule for the table, no
subscription rule for the topic, and no message rule for the queue (for a
standard queue that only receives deliveries, the message rule stays: deliveries
arrive as messages this log never sent, which are kept).  An SQS call in the
query protocol keeps its queue and the queue's messages.  A call of a modelled
service that cannot be understood otherwise (an unparseable body, a call naming
no resource, a virtual-hosted S3 request, a failed status) switches every rule
of that service off for that part of the log (up to the next reset).  With
``from_empty=False`` the log applies on top of unknown state: a resource counts
as created only when the log also deleted it before (or DynamoDB, whose create
fails on an existing table), a delete of something not created in the log is
kept, and a reset is kept (the state after it is known to be empty).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import logging
import re
from array import array
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes, urlsplit

import orjson

from .entry import Entry, Request

__all__ = ["CompactionPlan", "plan_compaction"]

logger = logging.getLogger("replay.compaction")

_RULES: tuple[str, ...] = (
    "",  # 0: kept
    "moto-reset",
    "sqs-queue-lifetime",
    "sqs-deleted-message",
    "s3-bucket-lifetime",
    "s3-overwritten-object",
    "s3-redundant-delete",
    "s3-aborted-upload",
    "dynamodb-table-lifetime",
    "dynamodb-overwritten-item",
    "dynamodb-redundant-delete",
    "sns-topic-lifetime",
    "sns-cancelled-subscription",
)
_CODE = {name: code for code, name in enumerate(_RULES) if name}
_RESET = _CODE["moto-reset"]
_SQS_LIFE, _SQS_MSG = _CODE["sqs-queue-lifetime"], _CODE["sqs-deleted-message"]
_S3_LIFE, _S3_OVER, _S3_REDUNDANT, _S3_ABORT = (
    _CODE["s3-bucket-lifetime"],
    _CODE["s3-overwritten-object"],
    _CODE["s3-redundant-delete"],
    _CODE["s3-aborted-upload"],
)
_DDB_LIFE, _DDB_OVER, _DDB_REDUNDANT = (
    _CODE["dynamodb-table-lifetime"],
    _CODE["dynamodb-overwritten-item"],
    _CODE["dynamodb-redundant-delete"],
)
_SNS_LIFE, _SNS_SUB = _CODE["sns-topic-lifetime"], _CODE["sns-cancelled-subscription"]
_LIFE_CODE = {"sqs": _SQS_LIFE, "s3": _S3_LIFE, "dynamodb": _DDB_LIFE, "sns": _SNS_LIFE}
_SERVICE_CODES = {
    "sqs": (_SQS_LIFE, _SQS_MSG),
    "s3": (_S3_LIFE, _S3_OVER, _S3_REDUNDANT, _S3_ABORT),
    "dynamodb": (_DDB_LIFE, _DDB_OVER, _DDB_REDUNDANT),
    "sns": (_SNS_LIFE, _SNS_SUB),
}

_DEFAULT_ACCOUNT = "123456789012"
_DEFAULT_REGION = "us-east-1"

# mention kinds: how another resource refers to one
_READS = 1  # an S3 copy source: reads an object now
_WRITES = 2  # an SNS subscription or a bucket notification: delivers into it
_REFERS = 4  # anything else: may read, write or depend on it at any time

_PUT, _UPDATE, _DELETE = 0, 1, 2  # what an item (a DynamoDB item write, an S3 object write) does


@dataclasses.dataclass
class CompactionPlan:
    """Which entries of a log to keep: :meth:`keeps` by 0-based ordinal, counts by rule."""

    read: int
    by_rule: dict[str, int]
    _marks: bytearray = dataclasses.field(default_factory=bytearray, repr=False, compare=False)

    def keeps(self, index: int) -> bool:
        """Whether the entry fed at ``index`` (0-based) must be kept."""
        if not 0 <= index < self.read:
            raise IndexError(f"entry {index} is not in a plan of {self.read} entries")
        return index >= len(self._marks) or self._marks[index] == 0

    @property
    def dropped(self) -> int:
        return sum(self.by_rule.values())

    @property
    def kept(self) -> int:
        return self.read - self.dropped


def plan_compaction(entries: Iterable[Entry], from_empty: bool = True) -> CompactionPlan:
    """Plan which of ``entries`` (consumed once, in order) a compacted log keeps.

    :param from_empty: the log is replayed into an empty emulator; with ``False``
        it applies on top of unknown earlier state and only what the log itself
        created (or wrote in full) may be dropped.
    """
    planner = _Planner(from_empty)
    for entry in entries:
        planner.feed(entry)
    return planner.finish()


# parsing helpers

_UA_REGION = re.compile(r"region/([a-z]{2}-[a-z]+-\d)")
_HOST_REGION = re.compile(r"\.([^.]+)\.amazonaws\.com")
_SQS_HOST_REGION = re.compile(r"://(.+?)\.queue\.amazonaws\.com")
_MOTO_ACCESS_KEY = re.compile(r"AWS.*((?<![A-Z0-9])[A-Z0-9]{20}(?![A-Z0-9]))[:/]")
_ARN = re.compile(rb"arn:aws[a-z-]*:(sqs|sns|s3|dynamodb):([a-z0-9-]*):([0-9]*):([^\s\"'<>&,;\\]+)")
_QUEUE_URL = re.compile(rb"https?://[^/\s\"'<>]+/[0-9]{12}/([A-Za-z0-9_-]{1,80}(?:\.fifo)?)")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}(\.fifo)?")
_TOKEN = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.-]{1,254}")
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_S3_OBJECT = re.compile(rb"<Object>(.*?)</Object>", re.S)
_S3_KEY = re.compile(rb"<Key>(.*?)</Key>", re.S)
_TARGET_BUCKET = re.compile(rb"<TargetBucket>([^<]+)</TargetBucket>")
_XML_TOPIC_ARN = re.compile(rb"<TopicArn>([^<]+)</TopicArn>")
_XML_SUBSCRIPTION_ARN = re.compile(rb"<SubscriptionArn>([^<]+)</SubscriptionArn>")
_XML_ACCESS_KEY = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_S3_PATH_HOST = re.compile(r"^s3([.-](dualstack|fips))?[.-]([^.]*\.)?amazonaws\.com$")
_TOKEN_SCAN_LIMIT = 4 << 20  # bytes of an unmodelled call searched for resource names
_LONG_KEY = 64


class _Opaque(Exception):
    """A call of a modelled service that this module cannot follow: its service's rules go off."""


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


def _queue_name(body: dict[str, Any], path: str) -> str:
    """The queue moto resolves: last segment of ``QueueUrl`` (or the value itself), else of the path."""
    url = body.get("QueueUrl")
    if isinstance(url, str):
        return url.split("/")[-1] if url.startswith(("http://", "https://")) else url
    return path.split("/")[-1]


def _dynamo_value(value: Any) -> str | None:
    """A key attribute value, canonical as moto compares it (numbers by value)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, raw),) = value.items()
    if not isinstance(raw, str):
        return None
    if kind == "N":
        try:
            number = Decimal(raw)
        except InvalidOperation:
            return None
        return "N:0" if number.is_zero() else f"N:{number.normalize()}"
    if kind in ("S", "B"):
        return f"{kind}:{raw}"
    return None


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


# model


class _Life:
    """One lifetime of one resource: from its create (or first sight) to its delete."""

    __slots__ = ("created", "end", "id", "keys", "mentioned", "name", "nodrop", "pinned", "service", "start")

    def __init__(self, ident: int, service: str, name: str, keys: list[tuple[str, ...]], start: int, created: bool):
        self.id = ident
        self.service = service
        self.name = name
        self.keys = keys
        self.start = start
        self.end: int | None = None
        self.created = created
        self.nodrop = False
        self.pinned = False
        self.mentioned = 0  # mention kinds seen while it lived

    def droppable(self) -> bool:
        return self.created and self.end is not None and not self.nodrop and not self.pinned


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


class _Item:
    """One write of one key: the calls that make it, what it does, whether it must stay."""

    __slots__ = ("calls", "keep", "kind", "life")

    def __init__(self, calls: list[int], kind: int, keep: bool, life: _Life) -> None:
        self.calls = calls
        self.kind = kind
        self.keep = keep
        self.life = life


class _Chain:
    """The writes of one key not yet decided, and whether the key exists before the first of them."""

    __slots__ = ("live", "pending", "present", "tagged")

    def __init__(self, present: bool) -> None:
        self.pending: list[_Item] = []
        self.present = present  # in the compacted replay, before pending[0] (True when unknown)
        self.live: _Item | None = None  # S3: the object now there
        self.tagged = False  # S3: the key's tag state may be non-empty


class _Bucket(_Life):
    __slots__ = ("bucket_tags", "object_tags", "rule", "token")

    def __init__(self, ident: int, name: str, start: int, created: bool, token: str):
        super().__init__(ident, "s3", name, [("s3", name), ("name", name)], start, created)
        self.rule = created  # the object rule applies (no versioning, notifications, logging ...)
        self.bucket_tags = False  # bucket tags survive its delete: a later bucket of this name sees them
        self.object_tags = False  # so do object tags
        self.token = token


class _Upload:
    __slots__ = ("bucket", "calls", "key", "life", "tagged")

    def __init__(self, bucket: str, key: str, calls: list[int], life: _Bucket, tagged: bool):
        self.bucket = bucket
        self.key = key
        self.calls = calls
        self.life = life
        self.tagged = tagged


class _Table(_Life):
    __slots__ = ("hash_key", "items", "range_key", "token")

    def __init__(self, ident: int, name: str, keys: list[tuple[str, ...]], start: int, created: bool, token: str):
        super().__init__(ident, "dynamodb", name, keys, start, created)
        self.hash_key: str | None = None
        self.range_key: str | None = None
        self.items: dict[str | bytes, _Chain] | None = {} if created else None  # None: no item rule
        self.token = token


class _Topic(_Life):
    __slots__ = ("opaque", "published", "subscribers", "subscriptions")

    def __init__(self, ident: int, name: str, keys: list[tuple[str, ...]], start: int, created: bool):
        super().__init__(ident, "sns", name, keys, start, created)
        self.published = 0  # publishes so far
        self.opaque = False  # no subscription rule
        self.subscribers: set[str] = set()  # principals whose subscriptions live in their own backends
        self.subscriptions: list[_Subscription] = []


class _Subscription:
    __slots__ = ("calls", "cancelled", "pinned", "published", "token", "topic")

    def __init__(self, topic: _Topic, token: str):
        self.topic = topic
        self.token = token
        self.calls: list[int] = []
        self.published = topic.published
        self.cancelled = False
        self.pinned = False


class _Planner:
    def __init__(self, from_empty: bool) -> None:
        self.from_empty = from_empty
        self.marks = bytearray()
        self.owners = array("l")
        self.count = 0
        self.next_life = 0
        self.issued: dict[str, str] = {}  # access key ids IAM issued in the log -> account
        self.handlers: dict[str, Callable[[int, Entry], None]] = {
            "sqs": self._sqs,
            "s3": self._s3,
            "dynamodb": self._dynamodb,
            "sns": self._sns,
        }
        self._segment(0, from_empty)

    # segments: the log between resets

    def _segment(self, start: int, empty: bool) -> None:
        self.start = start
        self.empty = empty  # the state at the segment start is known to be empty
        self.creates_proven = empty  # a create proves the resource was absent (no CloudFormation seen)
        self.lives: list[_Life] = []
        self.open: dict[tuple[str, ...], _Life] = {}
        self.absent: set[tuple[str, ...]] = set()  # deleted in this segment, not created again
        self.by_key: dict[tuple[str, ...], list[_Life]] = {}
        self.mentions: dict[tuple[str, ...], array[int]] = {}
        self.referenced: dict[tuple[str, ...], int] = {}
        self.names: set[str] = set()
        self.opaque: set[str] = set()
        self.tokens: dict[tuple[str, ...], str] = {}
        self.events_at: int | None = None  # first EventBridge call: rules may react to CreateBucket
        self.s3_keys: dict[str, dict[str | bytes, _Chain]] = {}
        self.uploads: dict[str, _Upload] = {}
        self.subscriptions: dict[str, _Subscription] = {}

    def feed(self, entry: Entry) -> None:
        ordinal = self.count
        self.count += 1
        self.marks.append(0)
        self.owners.append(-1)
        service = entry.service
        if service == "moto" and entry.operation == "Reset":
            self._reset(ordinal)
            return
        handler = self.handlers.get(service)
        if handler is None:
            self._other(ordinal, entry)
            return
        if not entry.response.ok:
            self._make_opaque(service, f"{entry.operation} answered {entry.response.status}")
            return
        try:
            handler(ordinal, entry)
        except (_Opaque, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            self._make_opaque(service, f"{entry.operation} at entry {ordinal}: {exc}")

    def _make_opaque(self, service: str, why: str) -> None:
        if service not in self.opaque:
            logger.debug("no %s rules from entry %d on: %s", service, self.start, why)
            self.opaque.add(service)

    def _reset(self, ordinal: int) -> None:
        if self.from_empty or self.empty:
            self.marks[self.start : ordinal + 1] = bytes([_RESET]) * (ordinal + 1 - self.start)
        else:
            self._close()
        self.issued.clear()
        self._segment(ordinal + 1, True)

    def finish(self) -> CompactionPlan:
        self._close()
        marks = self.marks
        by_rule = {name: count for name, code in _CODE.items() if (count := marks.count(code))}
        plan = CompactionPlan(read=self.count, by_rule=by_rule, _marks=marks)
        logger.debug("compaction plan: %d entries, %d to drop %s", plan.read, plan.dropped, by_rule)
        return plan

    def _drop(self, calls: Iterable[int], code: int) -> None:
        marks = self.marks
        for ordinal in calls:
            marks[ordinal] = code

    # identity

    def _token(self, request: Request) -> str:
        """Who moto thinks the caller is: an account id, or ``?<key>`` when it cannot be known."""
        index = request.index
        account = index.get("x-moto-account-id")
        if account:
            return account
        auth = index.get("authorization", "")
        found = _MOTO_ACCESS_KEY.search(auth) if auth else None
        if found is None:
            return _DEFAULT_ACCOUNT  # moto's stand-in key: never an IAM key
        key = found.group(1)
        issued = self.issued.get(key)
        if issued is not None:
            return issued
        return _DEFAULT_ACCOUNT if self.empty else f"?{key}"

    def _claim(self, service: str, ident: tuple[str, ...], token: str) -> None:
        """One resource name, one principal: else the resources may be several and are told apart badly."""
        key = (service, *ident)
        seen = self.tokens.setdefault(key, token)
        if seen != token:
            raise _Opaque(f"{ident} is used by two principals")

    def _life(self, key: tuple[str, ...], life: _Life) -> _Life:
        self.lives.append(life)
        self.open[key] = life
        self.absent.discard(key)
        flags = 0
        for mention in life.keys:
            self.by_key.setdefault(mention, []).append(life)
            flags |= self.referenced.get(mention, 0)
            if mention[0] == "name":
                self.names.add(mention[1])
        if flags:
            self._referred(life, flags)
        return life

    def _created(self, key: tuple[str, ...]) -> bool:
        return self.creates_proven or key in self.absent

    def _new_id(self) -> int:
        self.next_life += 1
        return self.next_life

    def _own(self, ordinal: int, life: _Life | None) -> None:
        if life is not None:
            self.owners[ordinal] = life.id

    def _end(self, key: tuple[str, ...], ordinal: int) -> _Life | None:
        life = self.open.pop(key, None)
        if life is not None:
            life.end = ordinal
        self.absent.add(key)
        return life

    # mentions

    def _mention(self, ordinal: int, own: _Life | None, key: tuple[str, ...], kind: int) -> None:
        if own is not None and key in own.keys:
            return
        if key[0] == "name" and key[1] not in self.names:
            return
        mentions = self.mentions.get(key)
        if mentions is None:
            mentions = self.mentions[key] = array("l")
        if not mentions or mentions[-1] != ordinal:
            mentions.append(ordinal)
        self.referenced[key] = self.referenced.get(key, 0) | kind
        for life in self.by_key.get(key, ()):
            if life.end is None and life is not own:
                self._referred(life, kind)

    def _scan(self, ordinal: int, own: _Life | None, data: bytes, kind: int = _REFERS) -> None:
        """Mention every ARN and queue URL in ``data``."""
        if b"arn:" in data:
            for match in _ARN.finditer(data):
                for key in _arn_keys(match):
                    self._mention(ordinal, own, key, kind)
        if b"://" in data:
            for match in _QUEUE_URL.finditer(data):
                name = match.group(1).decode()
                self._mention(ordinal, own, ("sqs", "*", name), kind)

    def _referred(self, life: _Life, kind: int) -> None:
        """Something else refers to ``life``: rules that assume nothing else looks go off."""
        life.mentioned |= kind
        if kind == _READS:
            return
        if isinstance(life, _Bucket):
            self._s3_rule_off(life)
        elif isinstance(life, _Table):
            life.items = None
        elif isinstance(life, _Queue):
            if kind & _REFERS or life.fifo:
                life.opaque = True
        elif isinstance(life, _Topic):
            life.opaque = True

    # closing a segment

    def _close(self) -> None:
        for life in self.lives:
            if isinstance(life, _Queue) and life.end is None:
                self._settle_queue(life)
            elif isinstance(life, _Table) and life.end is None:
                life.items = None  # what is still pending stays
        for chains in self.s3_keys.values():
            for chain in chains.values():
                self._settle_s3(chain, every_one_ended=False)
        for subscription in self.subscriptions.values():
            self._settle_subscription(subscription)
        if self.opaque:
            table = bytearray(range(256))
            for service in self.opaque:
                for code in _SERVICE_CODES[service]:
                    table[code] = 0
            self.marks[self.start :] = self.marks[self.start :].translate(table)
        self._drop_lifetimes()

    def _drop_lifetimes(self) -> None:
        later: dict[str, int] = {}  # bucket name -> latest lifetime start
        for life in self.lives:
            if isinstance(life, _Bucket):
                later[life.name] = max(later.get(life.name, -1), life.start)
        candidates: dict[int, _Life] = {}
        for life in self.lives:
            if life.service in self.opaque or not life.droppable():
                continue
            if isinstance(life, _Bucket) and (
                (life.bucket_tags and later[life.name] > life.start)
                or (self.events_at is not None and self.events_at < life.start)
            ):
                continue
            if isinstance(life, _Topic) and (life.published or life.opaque):
                continue
            candidates[life.id] = life
        marks, owners = self.marks, self.owners
        changed = True
        while changed:
            changed = False
            for life in list(candidates.values()):
                if self._pinned(life, candidates):
                    del candidates[life.id]
                    changed = True
        if not candidates:
            return
        for ordinal in range(self.start, self.count):
            owner = owners[ordinal]
            if owner >= 0 and owner in candidates:
                marks[ordinal] = _LIFE_CODE[candidates[owner].service]

    def _pinned(self, life: _Life, candidates: dict[int, _Life]) -> bool:
        marks, owners = self.marks, self.owners
        end = life.end if life.end is not None else self.count
        for key in life.keys:
            for ordinal in self.mentions.get(key, ()):
                if ordinal >= end:
                    break
                owner = owners[ordinal]
                if marks[ordinal] or owner == life.id or owner in candidates:
                    continue
                return True
        return False

    # unmodelled services

    def _other(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        service = entry.service
        if service == "iam":
            self._iam(entry)
        elif service == "cloudformation":
            self.creates_proven = False  # stacks create queues, buckets, tables and topics out of sight
        elif service == "events" and self.events_at is None:
            self.events_at = ordinal
        body = request.body
        if body and (b"%3A" in body or b"%3a" in body or b"%2F" in body) and b"=" in body:
            body = unquote_to_bytes(body.replace(b"+", b" "))
        where = unquote_to_bytes(request.path) + b"?" + unquote_to_bytes(request.query)
        self._scan(ordinal, None, where)
        self._scan(ordinal, None, body)
        if self.names:
            for data in (where, body[:_TOKEN_SCAN_LIMIT]):
                for match in _TOKEN.finditer(data):
                    name = match.group(0).decode("ascii")
                    if name in self.names:
                        self._mention(ordinal, None, ("name", name), _REFERS)

    def _iam(self, entry: Entry) -> None:
        if entry.operation == "CreateAccessKey":
            found = _XML_ACCESS_KEY.search(entry.response.body)
            if found:
                self.issued[found.group(1).decode()] = self._token(entry.request)
        elif entry.operation == "DeleteAccessKey":
            key = _form(entry.request).get("AccessKeyId")
            if key:
                self.issued.pop(key, None)

    # SQS

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

    # S3

    def _s3(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        host = request.index.get("host", "").rsplit(":", 1)[0].lower() if request.index.get("host") else ""
        if host and not (
            host.startswith(("localhost", "localstack", "host.docker.internal", "["))
            or "." not in host
            or _IPV4.match(host)
            or _S3_PATH_HOST.match(host)
            or host.endswith(".svc.cluster.local")
        ):
            raise _Opaque(f"virtual-hosted request to {host}")
        raw = request.path.lstrip("/")
        bucket = raw.split("/", 1)[0]
        if not bucket:
            raise _Opaque(f"{entry.operation} on no bucket")
        token = self._token(request)
        self._claim("s3", (bucket,), token)
        parts = unquote(request.path).split("/")
        key = "/".join(parts[2:]) if "/" in raw and raw.split("/", 1)[1] else None
        op = entry.operation
        life = self.open.get(("s3", bucket))
        if op == "CreateBucket" and key is None:
            if not isinstance(life, _Bucket):
                created = self._created(("s3", bucket))
                life = _Bucket(self._new_id(), bucket, ordinal, created, token)
                self._life(("s3", bucket), life)
            self._own(ordinal, life)
            if (request.header("x-amz-bucket-object-lock-enabled") or "").lower() == "true":
                self._s3_rule_off(life)
            return
        if not isinstance(life, _Bucket):
            life = _Bucket(self._new_id(), bucket, ordinal, False, token)
            self._life(("s3", bucket), life)
        self._own(ordinal, life)
        if key is None:
            self._s3_bucket_call(ordinal, entry, life, op)
        else:
            self._s3_object_call(ordinal, entry, life, op, key)

    def _s3_rule_off(self, life: _Bucket) -> None:
        """No object rule in this bucket from now on; what is pending stays."""
        life.rule = False
        self.s3_keys.pop(life.name, None)
        for upload_id in [uid for uid, upload in self.uploads.items() if upload.life is life]:
            del self.uploads[upload_id]

    def _s3_bucket_call(self, ordinal: int, entry: Entry, life: _Bucket, op: str) -> None:
        request = entry.request
        if op == "DeleteBucket":
            self._end(("s3", life.name), ordinal)
            chains = self.s3_keys.get(life.name)
            if chains:
                for name in [name for name, chain in chains.items() if not chain.tagged]:
                    self._settle_s3(chains.pop(name), every_one_ended=False)
            return
        if op == "DeleteObjects":
            self._s3_delete_objects(ordinal, entry, life)
            return
        if op in ("PutBucketVersioning", "PutObjectLockConfiguration"):
            self._s3_rule_off(life)
        elif op in ("PutBucketTagging", "DeleteBucketTagging"):
            life.bucket_tags = True
        elif op == "PutBucketNotificationConfiguration":
            life.nodrop = True  # moto sends a test event at once, and events on every write
            self._s3_rule_off(life)
            self._scan(ordinal, life, request.body, _WRITES)
            return
        elif op in ("PutBucketLogging", "PutBucketReplication", "PostObject") or not op.startswith(
            ("PutBucket", "DeleteBucket")
        ):
            if op != "PostObject":
                life.nodrop = True
            self._s3_rule_off(life)
            for found in _TARGET_BUCKET.finditer(request.body):
                target = html.unescape(found.group(1).decode("utf-8", "replace"))
                self._mention(ordinal, life, ("s3", target), _REFERS)
        if op != "PostObject":
            self._scan(ordinal, life, request.body)

    def _chain(self, life: _Bucket, key: str) -> _Chain | None:
        if not life.rule:
            return None
        chains = self.s3_keys.setdefault(life.name, {})
        name = _digest(key)
        chain = chains.get(name)
        if chain is None:
            chain = chains[name] = _Chain(present=not life.created)
        return chain

    def _s3_delete_objects(self, ordinal: int, entry: Entry, life: _Bucket) -> None:
        body = entry.request.body
        keys = []
        for found in _S3_OBJECT.finditer(body):
            inner = found.group(1)
            if b"<VersionId>" in inner:
                self._s3_rule_off(life)
            match = _S3_KEY.search(inner)
            if match is None:
                raise _Opaque("DeleteObjects entry without a key")
            keys.append(html.unescape(match.group(1).decode("utf-8")))
        if not keys or b"<Error>" in entry.response.body:
            self._s3_rule_off(life)
        for key in keys:
            chain = self._chain(life, key)
            if chain is not None:
                chain.pending.append(_Item([ordinal], _DELETE, True, life))
                chain.live = None

    def _s3_object_call(self, ordinal: int, entry: Entry, life: _Bucket, op: str, key: str) -> None:
        request = entry.request
        query = request.query
        if op in ("CopyObject", "UploadPartCopy"):
            self._s3_copy_source(ordinal, request, life)
        if op == "PutObject" or op == "CopyObject":
            conditional = request.header("if-match") is not None or request.header("if-none-match") is not None
            tagged = bool(request.header("x-amz-tagging"))
            if op == "CopyObject":
                life.object_tags = True
                if (request.header("x-amz-tagging-directive") or "").upper() != "REPLACE":
                    self._s3_merge_copy(ordinal, request, life, key)
                    return
            elif tagged:
                life.object_tags = True
            self._s3_write(life, key, [ordinal], conditional, tagged)
        elif op == "CreateMultipartUpload":
            found = _UPLOAD_ID.search(entry.response.body)
            tagged = bool(request.header("x-amz-tagging"))
            life.object_tags |= tagged
            if found and life.rule:
                upload_id = found.group(1).decode()
                self.uploads[upload_id] = _Upload(life.name, key, [ordinal], life, tagged)
        elif op in ("UploadPart", "UploadPartCopy"):
            upload = self.uploads.get(dict(parse_qsl(query)).get("uploadId", ""))
            if upload is not None:
                upload.calls.append(ordinal)
        elif op == "CompleteMultipartUpload":
            upload = self.uploads.pop(dict(parse_qsl(query)).get("uploadId", ""), None)
            conditional = request.header("if-match") is not None or request.header("if-none-match") is not None
            if upload is None or upload.life is not life or upload.key != key:
                self._s3_write(life, key, [ordinal], True, True)  # from parts we did not see: stays
            else:
                self._s3_write(life, key, [*upload.calls, ordinal], conditional, upload.tagged)
        elif op == "AbortMultipartUpload":
            upload = self.uploads.pop(dict(parse_qsl(query)).get("uploadId", ""), None)
            if upload is not None and upload.life is life and life.rule:
                self._drop([*upload.calls, ordinal], _S3_ABORT)
        elif op == "DeleteObject":
            chain = self._chain(life, key)
            if chain is not None:
                versioned = "versionId" in dict(parse_qsl(query))
                chain.pending.append(_Item([ordinal], _DELETE, versioned, life))
                chain.live = None
        elif op in (
            "PutObjectTagging",
            "DeleteObjectTagging",
            "PutObjectAcl",
            "PutObjectRetention",
            "PutObjectLegalHold",
        ):
            if op.endswith("Tagging"):
                life.object_tags = True
            chain = self._chain(life, key)
            if chain is not None:
                if op.endswith("Tagging"):
                    chain.tagged = True
                if chain.live is not None:
                    chain.live.calls.append(ordinal)
        elif op == "RestoreObject":
            chain = self._chain(life, key)
            if chain is not None and chain.live is not None:
                self._keep(chain.live, life)
        else:
            life.nodrop = True
            self._s3_rule_off(life)

    def _s3_copy_source(self, ordinal: int, request: Request, life: _Bucket) -> None:
        source = request.header("x-amz-copy-source") or ""
        parsed = urlsplit(source)
        path = unquote(parsed.path).lstrip("/")
        if "/" not in path:
            raise _Opaque(f"copy source {source!r}")
        bucket, key = path.split("/", 1)
        if bucket != life.name:
            self._mention(ordinal, life, ("s3", bucket), _READS)
        source_life = self.open.get(("s3", bucket))
        if isinstance(source_life, _Bucket):
            chain = self._chain(source_life, key)
            if chain is not None and chain.live is not None:
                self._keep(chain.live, source_life)

    def _s3_source_tagged(self, request: Request) -> bool:
        path = unquote(urlsplit(request.header("x-amz-copy-source") or "").path).lstrip("/")
        bucket, _, key = path.partition("/")
        source_life = self.open.get(("s3", bucket))
        chains = self.s3_keys.get(bucket) if isinstance(source_life, _Bucket) and source_life.rule else None
        chain = chains.get(_digest(key)) if chains is not None else None
        return chain is None or chain.tagged

    def _s3_merge_copy(self, ordinal: int, request: Request, life: _Bucket, key: str) -> None:
        """A copy that merges the source's tags into the key's (stale) tags: everything since they were set stays."""
        for earlier in self.by_key.get(("s3", life.name), ()):
            if earlier is not life and isinstance(earlier, _Bucket) and earlier.object_tags:
                earlier.pinned = True
        chain = self._chain(life, key)
        if chain is None:
            return
        for item in chain.pending:
            self._keep(item, life)
        item = _Item([ordinal], _PUT, False, life)
        chain.pending.append(item)
        chain.live = item
        chain.tagged = chain.tagged or self._s3_source_tagged(request)

    def _s3_write(self, life: _Bucket, key: str, calls: list[int], conditional: bool, tagged: bool) -> None:
        """A write that replaces the key's object and its tags."""
        chain = self._chain(life, key)
        if chain is None:
            return
        if conditional:
            for item in chain.pending:
                self._keep(item, life)
        self._settle_s3(chain, every_one_ended=True)
        item = _Item(calls, _PUT, conditional, life)
        chain.pending = [item]
        chain.live = item
        chain.tagged = tagged

    def _keep(self, item: _Item, current: _Life) -> None:
        item.keep = True
        if item.life is not current:
            item.life.pinned = True

    def _settle_s3(self, chain: _Chain, every_one_ended: bool) -> None:
        """Decide the pending writes of one key: overwritten or deleted ones go, deletes of nothing go."""
        present = chain.present
        last = len(chain.pending) - 1
        redundant_ok = self.empty
        for position, item in enumerate(chain.pending):
            if item.kind == _DELETE:
                if not item.keep and not present and redundant_ok:
                    self._drop(item.calls, _S3_REDUNDANT)
                present = False
            elif item.keep or (position == last and not every_one_ended):
                present = True
            else:
                self._drop(item.calls, _S3_OVER)
        chain.present = present
        chain.pending = []
        chain.live = None

    # DynamoDB

    def _table(self, ordinal: int, name: str, token: str, region: str) -> _Table:
        if name.startswith("arn:"):
            name = name.rsplit(":", 1)[-1].removeprefix("table/").split("/", 1)[0]
        self._claim("dynamodb", (region, name), token)
        key = ("dynamodb", region, name)
        life = self.open.get(key)
        if not isinstance(life, _Table):
            life = _Table(self._new_id(), name, [key, ("name", name)], ordinal, False, token)
            self._life(key, life)
        return life

    def _dynamodb(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        if not (request.index.get("x-amz-target") or "").startswith("DynamoDB_"):
            raise _Opaque("not the JSON protocol")
        region = _region(request, "dynamodb")
        token = self._token(request)
        body = _json(request.body)
        op = entry.operation
        if op == "CreateTable":
            name = _text(body.get("TableName"))
            if not name:
                raise _Opaque("CreateTable without a name")
            self._claim("dynamodb", (region, name), token)
            key = ("dynamodb", region, name)
            if key in self.open:
                raise _Opaque(f"CreateTable of {name} while it exists")
            table = _Table(self._new_id(), name, [key, ("name", name)], ordinal, True, token)
            self._life(key, table)
            self._own(ordinal, table)
            for part in body.get("KeySchema") or ():
                if part.get("KeyType") == "HASH":
                    table.hash_key = _text(part.get("AttributeName"))
                elif part.get("KeyType") == "RANGE":
                    table.range_key = _text(part.get("AttributeName"))
            stream = body.get("StreamSpecification")
            if table.hash_key is None or (isinstance(stream, dict) and stream.get("StreamEnabled")):
                table.items = None
            self._scan(ordinal, table, request.body)
            return
        if op in ("BatchWriteItem", "TransactWriteItems"):
            self._dynamodb_batch(ordinal, body, op, token, region)
            return
        reference = body.get("TableName") or body.get("ResourceArn") or body.get("TableArn")
        if not isinstance(reference, str) or not reference:
            # PartiQL and friends name tables inside statements: every table here may be touched
            for life in self.open.values():
                if isinstance(life, _Table):
                    life.items = None
                    life.nodrop = True
            self._scan(ordinal, None, request.body)
            return
        table = self._table(ordinal, reference, token, region)
        self._own(ordinal, table)
        if op == "DeleteTable":
            self._end(("dynamodb", region, table.name), ordinal)
            table.items = None  # what is pending stays: DeleteTable answers with the item count
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            self._item_write(ordinal, table, body, op)
        elif op == "UpdateTable":
            stream = body.get("StreamSpecification")
            if (isinstance(stream, dict) and stream.get("StreamEnabled")) or body.get("ReplicaUpdates"):
                table.items = None
            if body.get("ReplicaUpdates"):
                table.nodrop = True
            self._scan(ordinal, table, request.body)
        elif op in ("TagResource", "UntagResource", "UpdateTimeToLive", "UpdateContinuousBackups"):
            self._scan(ordinal, table, request.body)
        else:  # backups, restores, exports, imports, Kinesis destinations ...
            table.items = None
            table.nodrop = True
            self._scan(ordinal, table, request.body)
            for other in ("TargetTableName", "SourceTableArn"):
                if isinstance(body.get(other), str):
                    peer = self._table(ordinal, body[other], token, region)
                    peer.items = None
                    peer.nodrop = True

    def _item_key(self, table: _Table, attributes: Any) -> str | bytes | None:
        if not isinstance(attributes, dict) or table.hash_key is None:
            return None
        first = _dynamo_value(attributes.get(table.hash_key))
        if first is None:
            return None
        if table.range_key is None:
            return _digest(first)
        second = _dynamo_value(attributes.get(table.range_key))
        return None if second is None else _digest(f"{first}\x00{second}")

    def _item_write(self, ordinal: int, table: _Table, body: dict[str, Any], op: str) -> None:
        if table.items is None:
            return
        key = self._item_key(table, body.get("Item") if op == "PutItem" else body.get("Key"))
        if key is None:
            raise _Opaque(f"{op} without a key of {table.name}")
        chain = table.items.get(key)
        if chain is None:
            chain = table.items[key] = _Chain(present=False)
        # a condition depends on the earlier writes, and so does an answer with the old values in it
        conditional = (
            bool(body.get("ConditionExpression"))
            or "Expected" in body
            or body.get("ReturnValues") not in (None, "NONE")
        )
        kind = {"PutItem": _PUT, "UpdateItem": _UPDATE, "DeleteItem": _DELETE}[op]
        if conditional:
            for item in chain.pending:
                item.keep = True
            chain.pending.append(_Item([ordinal], kind, True, table))
            return
        if kind == _UPDATE:
            chain.pending.append(_Item([ordinal], kind, False, table))
            return
        self._settle_items(chain)
        if kind == _DELETE and not chain.present and self.empty:
            self.marks[ordinal] = _DDB_REDUNDANT
            return
        chain.pending = [_Item([ordinal], kind, False, table)]

    def _settle_items(self, chain: _Chain) -> None:
        """The key is written in full: earlier writes not pinned go."""
        present = chain.present
        for item in chain.pending:
            if item.keep:
                present = item.kind != _DELETE
            else:
                self._drop(item.calls, _DDB_OVER)
        chain.present = present
        chain.pending = []

    def _dynamodb_batch(self, ordinal: int, body: dict[str, Any], op: str, token: str, region: str) -> None:
        writes: list[tuple[str, Any, int]] = []
        if op == "BatchWriteItem":
            for name, requests in (body.get("RequestItems") or {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        writes.append((name, request["PutRequest"].get("Item"), _PUT))
                    elif "DeleteRequest" in request:
                        writes.append((name, request["DeleteRequest"].get("Key"), _DELETE))
                    else:
                        raise _Opaque("BatchWriteItem request of an unknown kind")
        else:
            for item in body.get("TransactItems") or ():
                for kind_name, kind in (
                    ("Put", _PUT),
                    ("Update", _UPDATE),
                    ("Delete", _DELETE),
                    ("ConditionCheck", -1),
                ):
                    part = item.get(kind_name)
                    if isinstance(part, dict):
                        attributes = part.get("Item") if kind == _PUT else part.get("Key")
                        writes.append((_text(part.get("TableName")), attributes, kind))
        for name, attributes, kind in writes:
            table = self._table(ordinal, name, token, region)
            self._mention(ordinal, None, ("dynamodb", region, table.name), _READS)
            if table.items is None:
                continue
            key = self._item_key(table, attributes)
            if key is None:
                table.items = None
                continue
            chain = table.items.get(key)
            if chain is None:
                chain = table.items[key] = _Chain(present=False)
            for pending in chain.pending:
                pending.keep = True
            if kind >= 0:
                chain.pending.append(_Item([ordinal], kind, True, table))

    # SNS

    def _topic(self, ordinal: int, arn: str, region: str, create: bool) -> _Topic:
        key = ("sns", region, arn)
        life = self.open.get(key)
        if not isinstance(life, _Topic):
            name = arn.rsplit(":", 1)[-1]
            arn_region = arn.split(":")[3] if arn.count(":") >= 5 else region
            keys = [("sns", arn_region, name), ("name", name)]
            life = _Topic(self._new_id(), name, keys, ordinal, create and self._created(key))
            self._life(key, life)
        return life

    def _sns(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        region = _region(request, "sns")
        token = self._token(request)
        json_protocol = bool(request.index.get("x-amz-target"))
        params: dict[str, Any] = _json(request.body) if json_protocol else _form(request)
        op = entry.operation
        response = entry.response.body
        if op == "CreateTopic":
            arn = self._response_value(response, "TopicArn", _XML_TOPIC_ARN, json_protocol)
            if not arn:
                raise _Opaque("CreateTopic answered no ARN")
            topic = self._topic(ordinal, arn, region, create=True)
            self._own(ordinal, topic)
            self._scan_params(ordinal, topic, params, skip=("Name",))
            return
        subscription_arn = _text(params.get("SubscriptionArn"))
        arn = _text(params.get("TopicArn") or params.get("ResourceArn"))
        if op in ("Publish", "PublishBatch") and not arn:
            arn = _text(params.get("TargetArn"))
        if not arn and subscription_arn.count(":") >= 6:
            arn = subscription_arn.rsplit(":", 1)[0]
        if (
            not arn.startswith("arn:")
            or arn.split(":")[2] != "sns"
            or arn.count(":") != 5
            or not _TOPIC_NAME.fullmatch(arn.rsplit(":", 1)[1])
        ):
            self._other(ordinal, entry)  # not about a topic (platform endpoints, SMS ...)
            return
        topic = self._topic(ordinal, arn, region, create=False)
        self._own(ordinal, topic)
        if op == "DeleteTopic":
            self._end(("sns", region, arn), ordinal)
            if topic.subscribers - {token}:
                topic.nodrop = True  # other principals' subscriptions outlive the topic
        elif op in ("Publish", "PublishBatch"):
            topic.published += 1
        elif op == "Subscribe":
            self._subscribe(ordinal, entry, topic, params, token, json_protocol)
        elif op in ("Unsubscribe", "SetSubscriptionAttributes"):
            subscription = self.subscriptions.get(subscription_arn)
            if subscription is None or subscription.topic is not topic:
                return
            subscription.calls.append(ordinal)
            if op == "Unsubscribe":
                del self.subscriptions[subscription_arn]
                if subscription.token == token and subscription.published == topic.published:
                    subscription.cancelled = True
                self._settle_subscription(subscription)
            else:
                self._scan_params(ordinal, topic, params)
        elif op == "ConfirmSubscription":
            for subscription in topic.subscriptions:
                subscription.pinned = True
        elif op in ("SetTopicAttributes", "TagResource", "UntagResource", "AddPermission", "RemovePermission"):
            self._scan_params(ordinal, topic, params)
        else:
            topic.opaque = topic.nodrop = True
            self._scan_params(ordinal, topic, params)

    @staticmethod
    def _response_value(body: bytes, name: str, pattern: re.Pattern[bytes], json_protocol: bool) -> str:
        if json_protocol:
            return _text(_json(body).get(name))
        found = pattern.search(body)
        return html.unescape(found.group(1).decode("utf-8", "replace")) if found else ""

    def _subscribe(
        self, ordinal: int, entry: Entry, topic: _Topic, params: dict[str, Any], token: str, json_protocol: bool
    ) -> None:
        endpoint = _text(params.get("Endpoint"))
        self._scan(ordinal, topic, endpoint.encode("utf-8", "replace"), _WRITES)
        self._scan_params(ordinal, topic, params, skip=("Endpoint", "TopicArn"))
        topic.subscribers.add(token)
        arn = self._response_value(entry.response.body, "SubscriptionArn", _XML_SUBSCRIPTION_ARN, json_protocol)
        subscription = self.subscriptions.get(arn)
        if subscription is None or subscription.topic is not topic:
            subscription = _Subscription(topic, token)
            if not arn.startswith(_text(params.get("TopicArn")) + ":"):
                subscription.pinned = True
            else:
                self.subscriptions[arn] = subscription
            topic.subscriptions.append(subscription)
        if subscription.token != token:
            subscription.pinned = True
        subscription.calls.append(ordinal)

    def _scan_params(self, ordinal: int, topic: _Topic, params: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
        for name, value in params.items():
            if name not in skip and name != "Action":
                data = value if isinstance(value, str) else orjson.dumps(value).decode()
                self._scan(ordinal, topic, data.encode("utf-8", "replace"))

    def _settle_subscription(self, subscription: _Subscription) -> None:
        topic = subscription.topic
        if subscription.cancelled and not subscription.pinned and not topic.opaque and topic.created:
            self._drop(subscription.calls, _SNS_SUB)
        subscription.calls = []
