"""The planner core: rule codes, segments between resets, resource lifetimes, references and pinning.

:class:`_PlannerCore` reads the log entry by entry and hands each call of a
modelled service to the handler its service rules registered (see
:mod:`replay.compaction.plan`).  It keeps what every service shares: the marks
(one rule code an entry), the segments between resets, the lifetimes of
resources and who owns each call, the references between resources and what
they pin, the services switched off as opaque, and the unmodelled services
(searched for resource names, IAM access keys followed).  The service rules
subclass it, add a handler each and extend its hooks where they keep state of
their own: :meth:`_PlannerCore._segment`, :meth:`_PlannerCore._rules_off`,
:meth:`_PlannerCore._settle` and :meth:`_PlannerCore._kept_lifetimes`.  A
service's :class:`_Life` subclass says itself which of its rules a reference
turns off (:meth:`_Life.rules_off`) and whether it may go (:meth:`_Life.droppable`).
"""

from __future__ import annotations

import logging
import re
from array import array
from collections.abc import Callable, Iterable
from urllib.parse import unquote_to_bytes

from ..record.entry import Entry, Request
from .parsing import _ARN, _QUEUE_URL, _arn_keys, _form, _Opaque, _pieces

__all__: list[str] = []

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

# mention kinds: how another resource refers to one
_READS = 1  # an S3 copy source: reads an object now
_WRITES = 2  # an SNS subscription or a bucket notification: delivers into it
_REFERS = 4  # anything else: may read, write or depend on it at any time

_PUT, _UPDATE, _DELETE = 0, 1, 2  # what an item (a DynamoDB item write, an S3 object write) does

_MOTO_ACCESS_KEY = re.compile(r"AWS.*((?<![A-Z0-9])[A-Z0-9]{20}(?![A-Z0-9]))[:/]")
_TOKEN = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.-]{1,254}")
_XML_ACCESS_KEY = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")
_TOKEN_SCAN_LIMIT = 4 << 20  # bytes of an unmodelled call searched for resource names


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

    def rules_off(self, kind: int) -> None:
        """Something else refers to this resource (more than a read): rules that assume nobody else looks go off."""


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


class _PlannerCore:
    """What every service shares; the service rules subclass it and fill :attr:`handlers`."""

    def __init__(self, from_empty: bool) -> None:
        self.from_empty = from_empty
        self.marks = bytearray()
        self.owners = array("l")
        self.count = 0
        self.next_life = 0
        self.issued: dict[str, str] = {}  # access key ids IAM issued in the log -> account
        self.handlers: dict[str, Callable[[int, Entry], None]] = {}  # modelled service -> its handler
        self._segment(0, from_empty)

    # segments: the log between resets

    def _segment(self, start: int, empty: bool) -> None:
        """A new segment starts at ``start``: services with state of their own extend this."""
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
        if kind != _READS:
            self._rules_off(life, kind)

    # hooks of the service rules

    def _rules_off(self, life: _Life, kind: int) -> None:
        """Hook: ``life`` is referred to (``kind`` is more than a read) and turns its rules off."""
        life.rules_off(kind)

    def _settle(self) -> None:
        """Hook: the segment closes; each service decides what it still has pending."""

    def _kept_lifetimes(self) -> set[int]:
        """Hook: the ids of lifetimes kept whole for what the planner, not the lifetime, knows."""
        return set()

    # closing a segment

    def _close(self) -> None:
        self._settle()
        if self.opaque:
            table = bytearray(range(256))
            for service in self.opaque:
                for code in _SERVICE_CODES[service]:
                    table[code] = 0
            self.marks[self.start :] = self.marks[self.start :].translate(table)
        self._drop_lifetimes()

    def _drop_lifetimes(self) -> None:
        kept = self._kept_lifetimes()
        candidates: dict[int, _Life] = {}
        for life in self.lives:
            if life.service in self.opaque or not life.droppable() or life.id in kept:
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
        where = unquote_to_bytes(request.path) + b"?" + unquote_to_bytes(request.query)
        self._scan(ordinal, None, where)
        self._names(ordinal, where)
        searched = 0
        for body in _pieces(request):
            if body and (b"%3A" in body or b"%3a" in body or b"%2F" in body) and b"=" in body:
                body = unquote_to_bytes(body.replace(b"+", b" "))
            self._scan(ordinal, None, body)
            if searched < _TOKEN_SCAN_LIMIT:
                self._names(ordinal, body[: _TOKEN_SCAN_LIMIT - searched])
                searched += len(body)

    def _names(self, ordinal: int, data: bytes) -> None:
        """Mention every known resource name that ``data`` holds as a word."""
        if self.names:
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
