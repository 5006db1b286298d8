"""SQS scenarios: standard and FIFO queues, long polls, dead-letter redrive, batches, permissions."""

from __future__ import annotations

import json
import time
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of

LONG_POLL_TIMEOUT = 5  # seconds a long-poll client waits for an answer (a 1 s poll answers within ~1.1 s)


def queue_state(sqs: Any, url: str) -> dict[str, Any]:
    """A queue's attributes and tags: its counts included, read without receiving anything."""
    return {
        "url": url,
        "attributes": sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"],
        "tags": sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
    }


def queues_named(sqs: Any, prefix: str) -> dict[str, Any]:
    """Every queue whose name starts with ``prefix``, by name."""
    urls = sorted(sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []))
    return {url.rsplit("/", 1)[1]: queue_state(sqs, url) for url in urls}


class StandardQueueLifecycle(Scenario):
    """A standard work queue: attributes and tags at creation, single and batch sends with message attributes,
    a receive asking for every attribute, a delete by receipt handle and a visibility change; the counts of
    visible and in-flight messages must read the same."""

    name = "sqs-standard-lifecycle"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        obs["create"] = sqs.create_queue(
            QueueName="tp-sqs-orders",
            Attributes={"VisibilityTimeout": "900", "MessageRetentionPeriod": "86400"},
            tags={"team": "billing", "env": "test"},
        )
        url = obs["create"]["QueueUrl"]
        obs["send"] = sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"order": 1, "total": "12.50"}),
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "new"},
                "amount": {"DataType": "Number", "StringValue": "12.5"},
                "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},
            },
        )
        obs["batch"] = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": f"m{n}", "MessageBody": json.dumps({"order": n})} for n in range(2, 7)],
        )
        obs["receive"] = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=3,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        first, second, _ = obs["receive"]["Messages"]
        obs["delete"] = sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
        obs["visibility"] = sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0
        )
        obs["again"] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        obs["state"] = queue_state(sqs, url)
        obs["url"] = sqs.get_queue_url(QueueName="tp-sqs-orders")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-orders")


class LongPollEmptyQueue(Scenario):
    """A consumer long-polls an empty queue with WaitTimeSeconds=1: the receive waits about a second and
    answers with no message; then a message arrives and the next long poll returns it at once."""

    name = "sqs-long-poll-empty"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        poller = ctx.client("sqs", read_timeout=LONG_POLL_TIMEOUT)
        obs: Observations = {}
        url = sqs.create_queue(QueueName="tp-sqs-longpoll")["QueueUrl"]
        started = time.monotonic()
        obs["empty"] = poller.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        obs["waited about a second"] = 0.9 <= time.monotonic() - started < LONG_POLL_TIMEOUT
        sqs.send_message(QueueUrl=url, MessageBody="wake up")
        obs["full"] = poller.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=900)
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-longpoll")


class LongPollQueueDefault(Scenario):
    """A queue created with ReceiveMessageWaitTimeSeconds=1: a receive that passes no WaitTimeSeconds
    long-polls by the queue's default, waits about a second on the empty queue and answers empty."""

    name = "sqs-long-poll-queue-default"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        poller = ctx.client("sqs", read_timeout=LONG_POLL_TIMEOUT)
        obs: Observations = {}
        url = sqs.create_queue(QueueName="tp-sqs-default-wait", Attributes={"ReceiveMessageWaitTimeSeconds": "1"})[
            "QueueUrl"
        ]
        started = time.monotonic()
        obs["empty"] = poller.receive_message(QueueUrl=url, MaxNumberOfMessages=5)
        obs["waited about a second"] = 0.9 <= time.monotonic() - started < LONG_POLL_TIMEOUT
        obs["short poll"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-default-wait")


class FifoOrderingAndDeduplication(Scenario):
    """A FIFO queue with explicit deduplication ids and two message groups: a duplicate is dropped (same
    message id), messages come back in order per group, and an in-flight group holds back its later
    messages while the other group is served."""

    name = "sqs-fifo-ordering"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(
            QueueName="tp-sqs-payments.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false", "VisibilityTimeout": "900"},
        )["QueueUrl"]
        sends = []
        for group, body in [("alice", "a1"), ("bob", "b1"), ("alice", "a2"), ("alice", "a1"), ("bob", "b2")]:
            sends.append(
                sqs.send_message(
                    QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=f"dedup-{body}"
                )
            )
        obs["sends"] = sends
        obs["first"] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["All"])
        obs["second"] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        for message in obs["first"]["Messages"]:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        obs["third"] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-payments")


class FifoContentDeduplicationBatch(Scenario):
    """A high-throughput FIFO queue with content-based deduplication, fed by a batch holding a duplicate body
    and an invalid entry (no group id); the batch answer lists successes and the failure."""

    name = "sqs-fifo-batch"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(
            QueueName="tp-sqs-events.fifo",
            Attributes={
                "FifoQueue": "true",
                "ContentBasedDeduplication": "true",
                "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId",
            },
        )["QueueUrl"]
        obs["batch"] = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "one", "MessageBody": "created", "MessageGroupId": "user-1"},
                {"Id": "two", "MessageBody": "updated", "MessageGroupId": "user-1"},
                {"Id": "three", "MessageBody": "created", "MessageGroupId": "user-1"},
                {"Id": "four", "MessageBody": "created", "MessageGroupId": "user-2"},
            ],
        )
        obs["no group"] = error_of(sqs.send_message, QueueUrl=url, MessageBody="orphan")
        obs["receive"] = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        )
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-events")


class DeadLetterRedrive(Scenario):
    """A source queue redriving to a DLQ after one receive (maxReceiveCount=1): the message is received once
    (visibility 0), the next receive looks empty but moves it to the DLQ; the DLQ then counts it and names
    its source queue."""

    name = "sqs-dlq-redrive"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        dlq = sqs.create_queue(QueueName="tp-sqs-redrive-dlq", Attributes={"MessageRetentionPeriod": "1209600"})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        obs["dlq arn"] = dlq_arn
        source = sqs.create_queue(
            QueueName="tp-sqs-redrive-source",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})},
        )["QueueUrl"]
        obs["send"] = sqs.send_message(QueueUrl=source, MessageBody="poison pill")
        obs["first receive"] = sqs.receive_message(QueueUrl=source, VisibilityTimeout=0, AttributeNames=["All"])
        obs["second receive"] = sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)
        obs["source"] = queue_state(sqs, source)
        obs["dlq"] = queue_state(sqs, dlq["QueueUrl"])
        obs["sources of the dlq"] = sqs.list_dead_letter_source_queues(QueueUrl=dlq["QueueUrl"])
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-redrive-")


class BatchVisibilityAndDeletes(Scenario):
    """Batch visibility changes and batch deletes with one stale receipt handle among good ones: the answers
    list per-entry successes and failures, and only the good entries take effect."""

    name = "sqs-batch-visibility-delete"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(QueueName="tp-sqs-batches", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"job {n}"} for n in range(8)])
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=6)["Messages"]
        obs["received"] = got
        obs["visibility"] = sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": f"v{n}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(got[:2])
            ],
        )
        obs["delete"] = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": f"d{n}", "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got[2:5])]
            + [{"Id": "stale", "ReceiptHandle": "not-a-receipt-handle"}],
        )
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-batches")


class QueueAdministration(Scenario):
    """Queue administration: attribute changes, tagging and untagging, a permission added and one removed,
    a purge, a deleted queue that is then gone, and errors for a missing queue and a conflicting re-create."""

    name = "sqs-queue-admin"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(QueueName="tp-sqs-admin")["QueueUrl"]
        doomed = sqs.create_queue(QueueName="tp-sqs-admin-doomed")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="to purge")
        obs["set"] = sqs.set_queue_attributes(
            QueueUrl=url,
            Attributes={"DelaySeconds": "2", "MaximumMessageSize": "4096", "KmsMasterKeyId": "alias/aws/sqs"},
        )
        obs["tag"] = sqs.tag_queue(QueueUrl=url, Tags={"owner": "ops", "cost-center": "42", "temp": "yes"})
        obs["untag"] = sqs.untag_queue(QueueUrl=url, TagKeys=["temp"])
        obs["allow"] = sqs.add_permission(
            QueueUrl=url, Label="producers", AWSAccountIds=[ACCOUNT], Actions=["SendMessage", "GetQueueUrl"]
        )
        sqs.add_permission(QueueUrl=url, Label="temporary", AWSAccountIds=[ACCOUNT], Actions=["ReceiveMessage"])
        obs["disallow"] = sqs.remove_permission(QueueUrl=url, Label="temporary")
        obs["purge"] = sqs.purge_queue(QueueUrl=url)
        obs["delete"] = sqs.delete_queue(QueueUrl=doomed)
        obs["listed"] = sorted(sqs.list_queues(QueueNamePrefix="tp-sqs-admin").get("QueueUrls", []))
        obs["missing"] = error_of(sqs.get_queue_url, QueueName="tp-sqs-admin-doomed")
        obs["conflicting create"] = error_of(
            sqs.create_queue, QueueName="tp-sqs-admin", Attributes={"VisibilityTimeout": "5"}
        )
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-admin")


class DelayedMessages(Scenario):
    """A delay queue (15 minutes) and a per-message delay: delayed messages are counted as delayed, are not
    received, and a message with DelaySeconds=0 overrides the queue's delay."""

    name = "sqs-delay"
    service = "sqs"

    def run(self, ctx: Context) -> Observations:
        sqs = ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(QueueName="tp-sqs-delayed", Attributes={"DelaySeconds": "900"})["QueueUrl"]
        obs["delayed"] = sqs.send_message(QueueUrl=url, MessageBody="later")
        obs["now"] = sqs.send_message(QueueUrl=url, MessageBody="now", DelaySeconds=0)
        obs["receive"] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        obs["state"] = queue_state(sqs, url)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return queues_named(ctx.client("sqs"), "tp-sqs-delayed")
