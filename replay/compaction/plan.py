"""Compaction planning: which recorded calls a log can lose without changing what its replay builds.

:func:`plan_compaction` reads the entries of a log once, in order, and returns a
:class:`CompactionPlan`: for each entry (by its 0-based ordinal) whether it must
be kept.  Replaying the kept entries, in the same order, into an empty emulator
gives the same state as replaying all of them.  Replay reissues each call in the
random stream and at the clock it was recorded with (:mod:`replay.record.seeding`), so
dropping a call never changes the ids or timestamps other calls generate: only
real state dependencies count.  The planner never looks at emulator state, and
keeps only small per-resource bookkeeping (ordinals and flags), never entries.

The package holds one concept a module: :mod:`~replay.compaction.plan` the plan
and :func:`plan_compaction`; :mod:`~replay.compaction.core` the planner core
(rule codes, segments between resets, lifetimes, references and pinning, opaque
services, unmodelled services); :mod:`~replay.compaction.parsing` the request
parsing every service shares; and :mod:`~replay.compaction.sqs`,
:mod:`~replay.compaction.s3`, :mod:`~replay.compaction.dynamodb` and
:mod:`~replay.compaction.sns` the rules of one service each (the rules below,
and the findings in moto's models they rest on).

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
    name would inherit, see below), and not when it saw an operation the planner
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

This module: the plan and the planner: :class:`CompactionPlan`, :func:`plan_compaction`, and the planner they share.

:class:`_Planner` is the planner core (:mod:`replay.compaction.core`) with the
rules of each modelled service mixed in (:mod:`~replay.compaction.sqs`,
:mod:`~replay.compaction.s3`, :mod:`~replay.compaction.dynamodb`,
:mod:`~replay.compaction.sns`): each service class adds its handler, which
:meth:`_Planner.__init__` registers by service name, and extends the core's hooks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from ..record.entry import Entry
from .core import _CODE
from .dynamodb import _DynamoDBRules
from .s3 import _S3Rules
from .sns import _SnsRules
from .sqs import _SqsRules

__all__ = ["CompactionPlan", "plan_compaction"]

logger = logging.getLogger("replay.compaction")


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


class _Planner(_SqsRules, _S3Rules, _DynamoDBRules, _SnsRules):
    """One pass over a log: the planner core with every service's rules."""

    def __init__(self, from_empty: bool) -> None:
        super().__init__(from_empty)
        self.handlers.update(sqs=self._sqs, s3=self._s3, dynamodb=self._dynamodb, sns=self._sns)

    def finish(self) -> CompactionPlan:
        self._close()
        marks = self.marks
        by_rule = {name: count for name, code in _CODE.items() if (count := marks.count(code))}
        plan = CompactionPlan(read=self.count, by_rule=by_rule, _marks=marks)
        logger.debug("compaction plan: %d entries, %d to drop %s", plan.read, plan.dropped, by_rule)
        return plan
