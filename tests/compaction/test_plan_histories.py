"""Compaction against the real moto: a compacted log rebuilds exactly the state its full log does.

For each seed a random history (SQS standard and FIFO queues, S3 buckets with and without versioning,
DynamoDB tables, SNS topics delivering to queues; creates, deletes and reuse of names) is driven with boto3
over HTTP through ``RecordingMiddleware``.  The log is then replayed into a reset moto, and so is the log
with only the entries :func:`replay.compaction.plan_compaction` keeps; both must replay without a failure
and leave the same state fingerprint.  For ``from_empty=False`` only the second half of a history is
planned, and its first half replayed before the kept rest of it.

The fingerprint is everything a client can read back without changing it: queues with all their
attributes and tags, and their messages as moto holds them (read from the backend, since a receive would
change receive counts and visibility): id, body, attributes, receive count, first receive time, visibility,
delay, group, deduplication id, sequence number, the current receipt handle and whether the message is in
flight (an SNS delivery without its signature: moto signs with an RSA key it makes anew in each process
and replay, compacted or not); buckets with versioning, tags, every object version and delete marker with
its body digest, metadata, tags and ACL, and the multipart uploads in progress; tables as described, with
tags and every item; topics with attributes and tags, and every subscription with its attributes.  Left
out: what no client can read (SQS keeps the receipt handles of deleted messages only to let a repeated
delete succeed, and the time of the last purge), and request ids.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from werkzeug.serving import make_server

from replay.compaction import CompactionPlan, plan_compaction
from replay.config import FsyncPolicy
from replay.record.entry import decode_entry
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.reader import LogReader
from replay.restore.replayer import Replayer, ReplayReport
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator, moto_emulator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytestmark = pytest.mark.filterwarnings("ignore:S3 key was not disposed of in time:ResourceWarning")

ACCOUNT = "123456789012"
REGION = "us-east-1"
# the default run (CI) takes three histories; REPLAY_FUZZ_EXAMPLES (the full property runs) takes all six
SEEDS = [1, 2, 3, 4, 5, 6] if os.environ.get("REPLAY_FUZZ_EXAMPLES") else [1, 2, 3]
STEPS = 260


class Switch:
    """A WSGI app that forwards to whichever app is current: the recorder while recording, moto for reads."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        yield from self.app(environ, start_response)


class Harness:
    def __init__(self, emulator: Emulator, switch: Switch, endpoint: str) -> None:
        self.emulator = emulator
        self.switch = switch
        self.endpoint = endpoint
        config = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
        self.clients = {
            name: boto3.client(
                name,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=config,
            )
            for name in ("sqs", "s3", "dynamodb", "sns")
        }

    def reset(self) -> None:
        assert self.emulator.reset is not None
        self.emulator.reset()

    def record(self, path: Path, *phases: Callable[[dict[str, Any]], None]) -> list[int]:
        """Record ``phases`` one after the other into one log; returns how many entries each left."""
        self.reset()
        log = CallLog(path, FsyncPolicy.NO)
        self.switch.app = RecordingMiddleware(self.emulator.app, log, seeder=self.emulator.seeder)
        counts = []
        try:
            for phase in phases:
                phase(self.clients)
                counts.append(sum(1 for line in path.read_bytes().splitlines() if line.strip()))
        finally:
            self.switch.app = self.emulator.app
            log.close()
        return counts

    def replay(self, path: Path) -> ReplayReport:
        self.reset()
        return Replayer(WSGITransport(self.emulator.app), seeder=self.emulator.seeder).replay(path)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    emulator = moto_emulator()
    switch = Switch(emulator.app)
    server = make_server("127.0.0.1", 0, switch, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Harness(emulator, switch, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        if emulator.reset is not None:
            emulator.reset()


# histories


class History:
    """Random calls on a small pool of names, following what exists so that most calls succeed."""

    QUEUES = ("hq-a", "hq-b", "hq-c")
    FIFO_QUEUES = ("hq-f.fifo", "hq-g.fifo")
    BUCKETS = ("hb-plain", "hb-other", "hb-versioned")
    KEYS = ("k0", "k1", "dir/k 2", "k3")
    TABLES = ("ht-hash", "ht-range")
    TOPICS = ("hn-a", "hn-b")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.queues: dict[str, str] = {}  # name -> url
        self.handles: dict[str, list[str]] = {}  # queue name -> receipt handles of messages in flight
        self.buckets: dict[str, set[str]] = {}  # name -> keys written (approximately)
        self.tables: set[str] = set()
        self.topics: dict[str, str] = {}  # name -> arn
        self.subscriptions: dict[str, list[tuple[str, str]]] = {}  # topic name -> (subscription arn, queue)
        self.counter = 0

    def __call__(self, clients: dict[str, Any]) -> None:
        self.sqs, self.s3, self.ddb, self.sns = (clients[name] for name in ("sqs", "s3", "dynamodb", "sns"))
        actions = [
            (self.create_queue, 3),
            (self.delete_queue, 1),
            (self.send, 8),
            (self.send_batch, 2),
            (self.receive, 6),
            (self.delete_message, 5),
            (self.delete_message_batch, 2),
            (self.change_visibility, 1),
            (self.purge, 1),
            (self.create_bucket, 2),
            (self.delete_bucket, 1),
            (self.put_object, 9),
            (self.copy_object, 3),
            (self.delete_object, 3),
            (self.delete_objects, 1),
            (self.multipart, 1),
            (self.tag_object, 1),
            (self.object_acl, 1),
            (self.create_table, 2),
            (self.delete_table, 1),
            (self.put_item, 7),
            (self.update_item, 3),
            (self.delete_item, 3),
            (self.conditional_item, 2),
            (self.batch_items, 1),
            (self.transact_items, 1),
            (self.create_topic, 2),
            (self.delete_topic, 1),
            (self.subscribe, 2),
            (self.unsubscribe, 2),
            (self.publish, 2),
            (self.topic_attributes, 1),
        ]
        functions = [action for action, _ in actions]
        weights = [weight for _, weight in actions]
        for _ in range(STEPS):
            action = self.rng.choices(functions, weights)[0]
            with contextlib.suppress(ClientError):  # a failed call is not recorded; the history goes on
                action()

    def again(self, clients: dict[str, Any]) -> None:
        """A second part: resources deleted and created again (creates that prove absence), then more at random."""
        self.sqs, self.s3, self.ddb, self.sns = (clients[name] for name in ("sqs", "s3", "dynamodb", "sns"))
        for _ in range(2):
            url = self.sqs.create_queue(QueueName="hq-tail")["QueueUrl"]
            self.sqs.send_message(QueueUrl=url, MessageBody=self.body())
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            self.sqs.delete_queue(QueueUrl=url)
        for _ in range(2):
            self.s3.create_bucket(Bucket="hb-tail")
            for _ in range(3):
                self.s3.put_object(Bucket="hb-tail", Key="k", Body=self.body().encode())
            self.s3.delete_object(Bucket="hb-tail", Key="k")
            self.s3.delete_bucket(Bucket="hb-tail")
        key_schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        definitions = [{"AttributeName": "pk", "AttributeType": "S"}]
        self.ddb.create_table(
            TableName="ht-tail", KeySchema=key_schema, AttributeDefinitions=definitions, BillingMode="PAY_PER_REQUEST"
        )
        for _ in range(3):
            self.ddb.put_item(TableName="ht-tail", Item={"pk": {"S": "a"}, "v": {"S": self.body()}})
        self(clients)

    def body(self) -> str:
        self.counter += 1
        return f"body-{self.counter}-{self.rng.randrange(4)}"

    # SQS

    def create_queue(self) -> None:
        fifo = self.rng.random() < 0.4
        name = self.rng.choice(self.FIFO_QUEUES if fifo else self.QUEUES)
        attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
        if self.rng.random() < 0.3:
            attributes["VisibilityTimeout"] = "120"
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.queues[name] = url
        self.handles.setdefault(name, [])

    def some_queue(self) -> str | None:
        return self.rng.choice(sorted(self.queues)) if self.queues else None

    def delete_queue(self) -> None:
        name = self.some_queue()
        if name is None or name == "hq-a" or self.rng.random() < 0.4:  # one queue lives on
            return
        # a publish to a topic with a subscription to a deleted queue fails in moto after delivering to the
        # other queues: a failed call is not recorded, its deliveries would be lost on replay
        for subscriptions in self.subscriptions.values():
            for arn, queue in list(subscriptions):
                if queue == name:
                    self.sns.unsubscribe(SubscriptionArn=arn)
                    subscriptions.remove((arn, queue))
        self.sqs.delete_queue(QueueUrl=self.queues.pop(name))
        self.handles.pop(name, None)

    def message(self, name: str) -> dict[str, Any]:
        message: dict[str, Any] = {"MessageBody": self.body()}
        if name.endswith(".fifo"):
            message["MessageGroupId"] = self.rng.choice("gh")
            if self.rng.random() < 0.7:  # else content-based deduplication; sometimes a repeated id
                message["MessageDeduplicationId"] = f"d{self.rng.randrange(12)}"
        return message

    def send(self) -> None:
        name = self.some_queue()
        if name is not None:
            self.sqs.send_message(QueueUrl=self.queues[name], **self.message(name))

    def send_batch(self) -> None:
        name = self.some_queue()
        if name is not None:
            entries = [{"Id": str(n), **self.message(name)} for n in range(self.rng.randint(1, 3))]
            self.sqs.send_message_batch(QueueUrl=self.queues[name], Entries=entries)

    def receive(self) -> None:
        name = self.some_queue()
        if name is None:
            return
        received = self.sqs.receive_message(
            QueueUrl=self.queues[name],
            MaxNumberOfMessages=self.rng.randint(1, 4),
            VisibilityTimeout=self.rng.choice((0, 3600, 3600)),
            AttributeNames=["All"],
        )
        self.handles[name].extend(message["ReceiptHandle"] for message in received.get("Messages", []))

    def take_handle(self, name: str) -> str | None:
        handles = self.handles.get(name)
        if not handles:
            return None
        return handles.pop(self.rng.randrange(len(handles)))

    def delete_message(self) -> None:
        name = self.some_queue()
        handle = self.take_handle(name) if name is not None else None
        if name is not None and handle is not None:
            self.sqs.delete_message(QueueUrl=self.queues[name], ReceiptHandle=handle)

    def delete_message_batch(self) -> None:
        name = self.some_queue()
        if name is None:
            return
        handles = [h for h in (self.take_handle(name) for _ in range(self.rng.randint(1, 3))) if h is not None]
        if handles:
            entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(dict.fromkeys(handles))]
            self.sqs.delete_message_batch(QueueUrl=self.queues[name], Entries=entries)

    def change_visibility(self) -> None:
        name = self.some_queue()
        handles = self.handles.get(name or "")
        if name is not None and handles:
            handle = self.rng.choice(handles)
            self.sqs.change_message_visibility(QueueUrl=self.queues[name], ReceiptHandle=handle, VisibilityTimeout=0)

    def purge(self) -> None:
        name = self.some_queue()
        if name is not None and self.rng.random() < 0.5:
            self.sqs.purge_queue(QueueUrl=self.queues[name])
            self.handles[name] = []

    # S3

    def create_bucket(self) -> None:
        name = self.rng.choice(self.BUCKETS)
        if name in self.buckets:
            return
        self.s3.create_bucket(Bucket=name)
        self.buckets[name] = set()
        if name == "hb-versioned":
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if self.rng.random() < 0.3:
            self.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "made", "Value": str(self.counter)}]})

    def some_bucket(self) -> str | None:
        return self.rng.choice(sorted(self.buckets)) if self.buckets else None

    def delete_bucket(self) -> None:
        name = self.some_bucket()
        if name is None or name == "hb-plain" or self.rng.random() < 0.4:  # one bucket lives on
            return
        versions = self.s3.list_object_versions(Bucket=name)
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
        ]
        if name != "hb-versioned":
            doomed = [{"Key": item["Key"]} for item in doomed]
        if doomed:
            self.s3.delete_objects(Bucket=name, Delete={"Objects": doomed})
        for upload in self.s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            self.s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        self.s3.delete_bucket(Bucket=name)
        del self.buckets[name]

    def put_object(self) -> None:
        name = self.some_bucket()
        if name is None:
            return
        key = self.rng.choice(self.KEYS)
        extra: dict[str, Any] = {}
        if self.rng.random() < 0.3:
            extra["Tagging"] = f"t={self.counter}"
        if self.rng.random() < 0.2:
            extra["Metadata"] = {"m": str(self.counter)}
        if self.rng.random() < 0.1:
            extra["IfNoneMatch"] = "*"  # fails when the key exists
        self.s3.put_object(Bucket=name, Key=key, Body=self.body().encode(), **extra)
        self.buckets[name].add(key)

    def copy_object(self) -> None:
        source = self.some_bucket()
        target = self.some_bucket()
        if source is None or target is None or not self.buckets[source]:
            return
        key = self.rng.choice(sorted(self.buckets[source]))
        extra: dict[str, Any] = {}
        if self.rng.random() < 0.4:
            extra = {"TaggingDirective": "REPLACE", "Tagging": f"c={self.counter}"}
        destination = self.rng.choice(self.KEYS)
        if source == target and destination == key:
            extra["MetadataDirective"] = "REPLACE"
        self.s3.copy_object(Bucket=target, Key=destination, CopySource={"Bucket": source, "Key": key}, **extra)
        self.buckets[target].add(destination)

    def delete_object(self) -> None:
        name = self.some_bucket()
        if name is not None:
            key = self.rng.choice(self.KEYS)
            self.s3.delete_object(Bucket=name, Key=key)
            if name != "hb-versioned":
                self.buckets[name].discard(key)

    def delete_objects(self) -> None:
        name = self.some_bucket()
        if name is not None:
            keys = self.rng.sample(self.KEYS, self.rng.randint(1, 3))
            self.s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": key} for key in keys]})
            if name != "hb-versioned":
                self.buckets[name].difference_update(keys)

    def multipart(self) -> None:
        name = self.some_bucket()
        if name is None:
            return
        key = self.rng.choice(self.KEYS)
        upload = self.s3.create_multipart_upload(Bucket=name, Key=key)["UploadId"]
        part = self.s3.upload_part(Bucket=name, Key=key, UploadId=upload, PartNumber=1, Body=self.body().encode())
        if self.rng.random() < 0.35:
            self.s3.abort_multipart_upload(Bucket=name, Key=key, UploadId=upload)
        elif self.rng.random() < 0.85:
            self.s3.complete_multipart_upload(
                Bucket=name,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            )
            self.buckets[name].add(key)

    def tag_object(self) -> None:
        name = self.some_bucket()
        if name is not None and self.buckets[name]:
            key = self.rng.choice(sorted(self.buckets[name]))
            self.s3.put_object_tagging(Bucket=name, Key=key, Tagging={"TagSet": [{"Key": "o", "Value": self.body()}]})

    def object_acl(self) -> None:
        name = self.some_bucket()
        if name is not None and self.buckets[name]:
            key = self.rng.choice(sorted(self.buckets[name]))
            self.s3.put_object_acl(Bucket=name, Key=key, ACL=self.rng.choice(("private", "public-read")))

    # DynamoDB

    def create_table(self) -> None:
        name = self.rng.choice(self.TABLES)
        if name in self.tables:
            return
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        definitions = [{"AttributeName": "pk", "AttributeType": "S"}]
        if name == "ht-range":
            schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
            definitions.append({"AttributeName": "sk", "AttributeType": "N"})
        self.ddb.create_table(
            TableName=name, KeySchema=schema, AttributeDefinitions=definitions, BillingMode="PAY_PER_REQUEST"
        )
        self.tables.add(name)

    def some_table(self) -> str | None:
        return self.rng.choice(sorted(self.tables)) if self.tables else None

    def key(self, table: str) -> dict[str, Any]:
        key: dict[str, Any] = {"pk": {"S": f"p{self.rng.randrange(4)}"}}
        if table == "ht-range":
            key["sk"] = {"N": self.rng.choice(("1", "1.0", "2", "3e0"))}  # the same numbers, written differently
        return key

    def delete_table(self) -> None:
        name = self.some_table()
        if name is not None and name != "ht-range" and self.rng.random() < 0.5:  # one table lives on
            self.ddb.delete_table(TableName=name)
            self.tables.discard(name)

    def put_item(self) -> None:
        name = self.some_table()
        if name is not None:
            item = {**self.key(name), "v": {"S": self.body()}, "n": {"N": str(self.rng.randrange(100))}}
            self.ddb.put_item(TableName=name, Item=item)

    def update_item(self) -> None:
        name = self.some_table()
        if name is not None:
            self.ddb.update_item(
                TableName=name,
                Key=self.key(name),
                UpdateExpression="SET w = :w ADD c :one",
                ExpressionAttributeValues={":w": {"S": self.body()}, ":one": {"N": "1"}},
            )

    def delete_item(self) -> None:
        name = self.some_table()
        if name is not None:
            self.ddb.delete_item(TableName=name, Key=self.key(name))

    def conditional_item(self) -> None:
        name = self.some_table()
        if name is None:
            return
        if self.rng.random() < 0.5:
            item = {**self.key(name), "v": {"S": self.body()}}
            self.ddb.put_item(TableName=name, Item=item, ConditionExpression="attribute_not_exists(pk)")
        else:
            self.ddb.update_item(
                TableName=name,
                Key=self.key(name),
                UpdateExpression="SET c = c + :one",
                ConditionExpression="attribute_exists(c)",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    def batch_items(self) -> None:
        name = self.some_table()
        if name is None:
            return
        keys = {str(sorted(k.items())): k for k in (self.key(name) for _ in range(3))}
        requests = [
            {"PutRequest": {"Item": {**key, "b": {"S": self.body()}}}}
            if self.rng.random() < 0.7
            else {"DeleteRequest": {"Key": key}}
            for key in keys.values()
        ]
        self.ddb.batch_write_item(RequestItems={name: requests})

    def transact_items(self) -> None:
        name = self.some_table()
        if name is None:
            return
        first, second = self.key(name), self.key(name)
        if first == second:
            return
        self.ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": name, "Item": {**first, "x": {"S": self.body()}}}},
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": second,
                        "ConditionExpression": "attribute_not_exists(c)",
                    }
                },
            ]
        )

    # SNS

    def create_topic(self) -> None:
        name = self.rng.choice(self.TOPICS)
        arn = self.sns.create_topic(Name=name, Tags=[{"Key": "t", "Value": name}])["TopicArn"]
        self.topics[name] = arn
        self.subscriptions.setdefault(name, [])

    def some_topic(self) -> str | None:
        return self.rng.choice(sorted(self.topics)) if self.topics else None

    def delete_topic(self) -> None:
        name = self.some_topic()
        if name is not None and self.rng.random() < 0.6:
            self.sns.delete_topic(TopicArn=self.topics.pop(name))
            self.subscriptions.pop(name, None)

    def subscribe(self) -> None:
        topic = self.some_topic()
        queues = [name for name in sorted(self.queues) if not name.endswith(".fifo")]
        if topic is None or not queues:
            return
        queue = self.rng.choice(queues)
        endpoint = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
        arn = self.sns.subscribe(TopicArn=self.topics[topic], Protocol="sqs", Endpoint=endpoint)["SubscriptionArn"]
        if (arn, queue) not in self.subscriptions[topic]:
            self.subscriptions[topic].append((arn, queue))
        if self.rng.random() < 0.3:
            self.sns.set_subscription_attributes(
                SubscriptionArn=arn, AttributeName="RawMessageDelivery", AttributeValue="true"
            )

    def unsubscribe(self) -> None:
        topic = self.some_topic()
        if topic is not None and self.subscriptions[topic]:
            subscriptions = self.subscriptions[topic]
            arn, _ = subscriptions.pop(self.rng.randrange(len(subscriptions)))
            self.sns.unsubscribe(SubscriptionArn=arn)

    def publish(self) -> None:
        topic = self.some_topic()
        if topic is not None and self.rng.random() < 0.5:
            self.sns.publish(TopicArn=self.topics[topic], Message=self.body())

    def topic_attributes(self) -> None:
        topic = self.some_topic()
        if topic is not None:
            self.sns.set_topic_attributes(
                TopicArn=self.topics[topic], AttributeName="DisplayName", AttributeValue=self.body()
            )


# fingerprint


def canon(value: Any) -> Any:
    """JSON-comparable: datetimes as ISO strings, bytes as digests, response metadata dropped."""
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canon(v) for v in value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return value


def message_body(body: str) -> Any:
    """A message body; an SNS delivery without its signature (moto signs with a fresh RSA key each replay)."""
    if body.startswith("{") and '"Signature"' in body:
        delivery = json.loads(body)
        delivery["Signature"] = "(signed)"
        return delivery
    return body


def sqs_fingerprint(clients: dict[str, Any]) -> Any:
    from moto.sqs.models import sqs_backends

    sqs = clients["sqs"]
    backend = sqs_backends[ACCOUNT][REGION]
    queues = {}
    for url in sorted(sqs.list_queues().get("QueueUrls", [])):
        name = url.rsplit("/", 1)[1]
        queue = backend.queues[name]
        queues[name] = {
            "attributes": sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"],
            "tags": sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
            "messages": [
                {
                    "id": message.id,
                    "body": message_body(message.body),
                    "attributes": message.message_attributes,
                    "sent": message.sent_timestamp,
                    "received": message.approximate_receive_count,
                    "first_received": message.approximate_first_receive_timestamp,
                    "visible_at": message.visible_at,
                    "delayed_until": message.delayed_until,
                    "group": message.group_id,
                    "deduplication": message.deduplication_id,
                    "sequence": message.sequence_number,
                    "handle": message.receipt_handle,
                    "in_flight": message in queue.pending_messages,
                }
                for message in queue._messages
            ],
        }
    return queues


def acl_of(bucket: str, key: str, version: str) -> Any:
    """An object's ACL as moto holds it (its GetObjectAcl fails on objects that have none)."""
    from moto.s3.models import s3_backends

    stored = s3_backends[ACCOUNT]["aws"].get_object(bucket, key, version_id=version)
    assert stored is not None
    acl = stored.acl
    if acl is None:
        return None
    return [
        (sorted((g.id, g.uri, g.display_name) for g in grant.grantees), sorted(grant.permissions))
        for grant in acl.grants
    ]


def s3_fingerprint(clients: dict[str, Any]) -> Any:
    s3 = clients["s3"]
    state: dict[str, Any] = {}
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        versions = s3.list_object_versions(Bucket=name)
        objects = {}
        for version in versions.get("Versions", []):
            where = {"Bucket": name, "Key": version["Key"], "VersionId": version["VersionId"]}
            got = s3.get_object(**where)
            objects[f"{version['Key']}@{version['VersionId']}"] = {
                "body": got["Body"].read(),
                "metadata": got.get("Metadata"),
                "type": got.get("ContentType"),
                "tags": s3.get_object_tagging(**where)["TagSet"],
                "acl": acl_of(name, version["Key"], version["VersionId"]),
            }
        try:
            tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
        except ClientError:
            tags = None
        state[name] = {
            "bucket": bucket,
            "versioning": s3.get_bucket_versioning(Bucket=name),
            "tags": tags,
            "versions": versions.get("Versions", []),
            "delete_markers": versions.get("DeleteMarkers", []),
            "objects": objects,
            "uploads": s3.list_multipart_uploads(Bucket=name).get("Uploads", []),
        }
    return state


def dynamodb_fingerprint(clients: dict[str, Any]) -> Any:
    ddb = clients["dynamodb"]
    tables = {}
    for name in ddb.list_tables()["TableNames"]:
        description = ddb.describe_table(TableName=name)["Table"]
        tables[name] = {
            "table": description,
            "tags": ddb.list_tags_of_resource(ResourceArn=description["TableArn"]).get("Tags", []),
            "items": ddb.scan(TableName=name, ConsistentRead=True)["Items"],
        }
    return tables


def sns_fingerprint(clients: dict[str, Any]) -> Any:
    sns = clients["sns"]
    topics = {
        topic["TopicArn"]: {
            "attributes": sns.get_topic_attributes(TopicArn=topic["TopicArn"])["Attributes"],
            "tags": sns.list_tags_for_resource(ResourceArn=topic["TopicArn"])["Tags"],
        }
        for topic in sns.list_topics()["Topics"]
    }
    subscriptions = [
        {**subscription, "attributes": sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])}
        for subscription in sns.list_subscriptions()["Subscriptions"]
    ]
    return {"topics": topics, "subscriptions": subscriptions}


def fingerprint(harness: Harness) -> Any:
    clients = harness.clients
    return canon(
        {
            "sqs": sqs_fingerprint(clients),
            "s3": s3_fingerprint(clients),
            "dynamodb": dynamodb_fingerprint(clients),
            "sns": sns_fingerprint(clients),
        }
    )


# the tests


def write_kept(source: Path, target: Path, plan: CompactionPlan) -> int:
    """Copy the lines of ``source`` whose entries the plan keeps; returns how many."""
    kept = 0
    with source.open("rb") as lines, target.open("wb") as out:
        ordinal = 0
        for line in lines:
            if not line.strip():
                continue
            if plan.keeps(ordinal):
                out.write(line)
                kept += 1
            ordinal += 1
    assert ordinal == plan.read
    return kept


@pytest.mark.parametrize("seed", SEEDS)
def test_compacted_history_rebuilds_the_same_state(harness: Harness, tmp_path: Path, seed: int) -> None:
    full = tmp_path / "recorded_api_calls.json"
    harness.record(full, History(seed))

    plan = plan_compaction(entry for _, entry in LogReader(full))
    compacted = tmp_path / "compacted.json"
    assert write_kept(full, compacted, plan) == plan.kept
    ratio = f"seed {seed}: dropped {plan.dropped} of {plan.read} ({plan.dropped / plan.read:.0%}) {plan.by_rule}"

    report = harness.replay(full)
    assert report.failures == [], ratio
    assert report.restored == plan.read
    expected = fingerprint(harness)

    report = harness.replay(compacted)
    assert report.failures == [], ratio
    assert report.restored == plan.kept
    assert fingerprint(harness) == expected, ratio

    assert plan.dropped >= plan.read * 0.15, ratio  # it compacts for real ...
    assert len(plan.by_rule) >= 4, ratio  # ... by several rules


@pytest.mark.parametrize("seed", [7, 8])
def test_a_tail_compacted_without_from_empty_applies_on_top_of_its_head(
    harness: Harness, tmp_path: Path, seed: int
) -> None:
    """``from_empty=False``: plan only the second half of a log, then replay the first half and the kept tail."""
    full = tmp_path / "recorded_api_calls.json"
    history = History(seed)
    head, _ = harness.record(full, history, history.again)
    lines = [line for line in full.read_bytes().splitlines(keepends=True) if line.strip()]
    tail = [decode_entry(line) for line in lines[head:]]
    plan = plan_compaction(iter(tail), from_empty=False)
    compacted = tmp_path / "compacted.json"
    kept_tail = [line for ordinal, line in enumerate(lines[head:]) if plan.keeps(ordinal)]
    compacted.write_bytes(b"".join(lines[:head] + kept_tail))
    ratio = (
        f"seed {seed}: dropped {plan.dropped} of the last {plan.read} ({plan.dropped / plan.read:.0%}) {plan.by_rule}"
    )

    report = harness.replay(full)
    assert report.failures == [], ratio
    expected = fingerprint(harness)
    report = harness.replay(compacted)
    assert report.failures == [], ratio
    assert report.restored == head + plan.kept
    assert fingerprint(harness) == expected, ratio

    # a queue the tail deleted and then created again is the tail's own; before that it was the head's
    creates = [
        n for n, entry in enumerate(tail) if entry.operation == "CreateQueue" and b'"hq-tail"' in entry.request.body
    ]
    assert [plan.keeps(n) for n in creates] == [True, False], ratio
    assert plan.dropped >= 10, ratio
