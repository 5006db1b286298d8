"""Reads that change moto's state: a behavioural oracle for replay's read classification.

replay records only the calls :class:`~replay.record.classify.DefaultClassifier` calls mutating
(and, for SQS ``ReceiveMessage``, only those that returned messages or, as moto's
adapter watches them, changed the queue); after a restart only those are replayed.  A
call classified as a read that changes moto's state loses that change across a restart.
Operation names do not say which calls those are, so this module asks moto: boto3
drives moto's server app through a tap that decides about every request as replay
would, and each call replay would *not* record runs between
two fingerprints of the emulator's state (``MotoAdapter().dump`` of every active
service, so that changes moto makes in *other* services on a call's behalf -- STS in
IAM, S3 notifications in SQS -- are seen too).

The fingerprint:

* raw dumps first: pickling the same objects gives the same bytes (checked by dumping
  twice with nothing in between), so equal bytes mean no change;
* when the bytes differ, both dumps are unpickled and compared per backend (account,
  region) and per backend attribute, structurally, which names *what* changed and
  guards against differences that are not state: a set pickles in its iteration order,
  and a set of objects hashed by identity (SQS's pending messages) may iterate in
  another order after a remove and re-add; sets are compared as sets here.  (With moto
  5.2.5 no such case came up: every byte difference was a real change.)  A backend
  present only after the call is reported as created: moto makes a region's backend on
  first use, EC2's with a default VPC, subnets and security group.

:data:`MUTATING` and :data:`CLEAN` list every measured case and what it changed; the test
fails, naming the difference, when moto or the classifier changes.  The changes a client
can observe after a restart are marked there, and :func:`test_a_restart_loses_only_the_known_limits`
replays through replay itself (record, empty moto, replay the log, look again): what was found here
and is now recorded (STS ``AssumeRole``, Logs ``StartQuery``, Cognito ``GetId``, receives that move
messages to a dead-letter queue) survives; what is still lost is exactly what README "Limits" lists.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import decimal
import functools
import io
import json
import pickle
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.backends import get_backend
from moto.core.base_backend import BaseBackend
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import make_server

from replay import CheckpointPolicy, RecordReplayBackend
from replay.adapters.moto import MotoAdapter
from replay.record.classify import Call, DefaultClassifier
from replay.record.wsgi import request_from_environ
from replay.serve.emulators import Emulator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REGION = "us-east-1"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "111111111111"  # AssumeRole into another account: the temporary key maps to it
NEW_REGION = "eu-north-1"  # a region no other case touches
CLASSIFIER = DefaultClassifier()
ADAPTER = MotoAdapter()
CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})


# --------------------------------------------------------------------------- the tap


class Tap:
    """WSGI middleware: what replay would make of each request (its :class:`Call`, recorded or not)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.calls: list[tuple[Call, bool]] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = request_from_environ(environ)
        call = CLASSIFIER(request)
        changed = ADAPTER.watch(call.service, call.operation, request) if call.mutating else None
        statuses: list[int] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
            statuses.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        chunks = self.app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        ok = bool(statuses) and 200 <= statuses[0] < 300
        kept = ok and (CLASSIFIER.recordable(call, statuses[0], body) or (changed is not None and changed()))
        self.calls.append((call, call.mutating and kept))
        return [body]


# --------------------------------------------------------------------------- the fingerprint

_LEAVES = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    decimal.Decimal,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
)


class _Canon:
    """A hashable rendering of an unpickled object graph, for comparing two of them.

    Sets render as sets (their pickled order is not state); a moto backend met inside
    another object (a Task's ``backend``, an AccountSummary's ``_iam_backend``) renders
    as its class name only: backends are compared attribute by attribute on their own, so
    a change is reported where it is, not in every object that can reach it.
    """

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()
        self.keep: list[Any] = []  # keeps the rendered objects alive, so that ids are not reused

    def __call__(self, value: Any) -> Any:
        if isinstance(value, _LEAVES):
            return value
        key = id(value)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            return ("cycle", type(value).__qualname__)
        self.active.add(key)
        self.keep.append(value)
        try:
            result = self._render(value)
        finally:
            self.active.discard(key)
        self.done[key] = result
        return result

    def _render(self, value: Any) -> Any:
        kind = type(value).__qualname__
        if isinstance(value, BaseBackend):
            return ("backend", kind)
        if isinstance(value, dict):
            return ("dict", kind, tuple((self(k), self(v)) for k, v in dict.items(value)))
        if isinstance(value, (list, tuple, collections.deque)):
            return ("seq", kind, tuple(self(item) for item in value))
        if isinstance(value, (set, frozenset)):
            return ("set", kind, frozenset(self(item) for item in value))
        if isinstance(value, bytearray):
            return bytes(value)
        if isinstance(value, io.IOBase):  # S3 bodies live in spooled files
            return ("file", kind)
        state = getattr(value, "__dict__", None)
        if isinstance(state, dict):
            return ("obj", kind, tuple(sorted((name, self(item)) for name, item in state.items())))
        return ("opaque", kind)  # locks, functions, cryptography keys ...


def fingerprint(adapter: MotoAdapter) -> dict[str, bytes]:
    """Every active service's state, as the adapter pickles it."""
    return {service: adapter.dump(service) for service in adapter.active()}


def _backends(data: bytes | None) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
    if data is None:
        return {}, {}
    state = pickle.loads(data)
    backends = {
        (account, region): backend
        for account, regions in state["backends"].items()
        for region, backend in regions.items()
    }
    return backends, state["attributes"]


def changes(before: dict[str, bytes], after: dict[str, bytes]) -> frozenset[str]:
    """What differs: ``service.attribute`` of a backend, or ``service[account/region] created``."""
    found: set[str] = set()
    for service in sorted(set(before) | set(after)):
        if before.get(service) == after.get(service):
            continue
        old_backends, old_attributes = _backends(before.get(service))
        new_backends, new_attributes = _backends(after.get(service))
        old, new = _Canon(), _Canon()
        for where in sorted(set(old_backends) | set(new_backends)):
            if where not in old_backends:
                found.add(f"{service}[{where[0]}/{where[1]}] created")
            elif where not in new_backends:
                found.add(f"{service}[{where[0]}/{where[1]}] removed")
            else:
                was, now = vars(old_backends[where]), vars(new_backends[where])
                for name in sorted(set(was) | set(now)):
                    if name not in was or name not in now or old(was[name]) != new(now[name]):
                        found.add(f"{service}.{name}")
        for name in sorted(set(old_attributes) | set(new_attributes)):
            if old(old_attributes.get(name)) != new(new_attributes.get(name)):
                found.add(f"{service}.<dict>.{name}")
    return frozenset(found)


# --------------------------------------------------------------------------- the oracle

Credentials = tuple[str, str, str | None]  # access key id, secret, session token


def aws_client(endpoint: str, service: str, region: str = REGION, credentials: Credentials | None = None) -> Any:
    key, secret, token = credentials or ("testing", "testing", None)
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=CONFIG,
    )


@dataclass
class Oracle:
    """Runs boto3 calls against the tapped moto; measures the ones replay would not record."""

    endpoint: str
    tap: Tap
    adapter: MotoAdapter = field(default_factory=MotoAdapter)
    observed: dict[tuple[str, str, str], frozenset[str]] = field(default_factory=dict)
    _last: tuple[int, dict[str, bytes]] | None = None  # the fingerprint after the last read, and the calls by then

    def client(self, service: str, region: str = REGION, credentials: Credentials | None = None) -> Any:
        return aws_client(self.endpoint, service, region, credentials)

    def _send(self, client: Any, operation: str, params: dict[str, Any]) -> tuple[Any, Call, bool]:
        start = len(self.tap.calls)
        method = {api: name for name, api in client.meta.method_to_api_mapping.items()}[operation]
        response = getattr(client, method)(**params)
        calls = self.tap.calls[start:]
        assert len(calls) == 1, f"{operation}: {len(calls)} requests"
        call, recorded = calls[0]
        return response, call, recorded

    def write(self, client: Any, operation: str, **params: Any) -> Any:
        """A setup call: replay records it (asserted), so a restart keeps what it did."""
        response, call, recorded = self._send(client, operation, params)
        assert recorded, f"{call} is not recorded"
        return response

    def read(self, client: Any, operation: str, case: str = "", **params: Any) -> Any:
        """A call replay would not record: what it changed is kept under (service, operation, case).

        The service is replay's (the SigV4 signing name); the operation is boto3's name for
        it (replay names other REST services' calls by method and path, ids included).
        """
        if self._last is not None and self._last[0] == len(self.tap.calls):
            before = self._last[1]  # nothing ran since the last read's fingerprint
        else:
            before = fingerprint(self.adapter)
        response, call, recorded = self._send(client, operation, params)
        assert not recorded, f"{call} is recorded: not a read for replay"
        key = (call.service, operation, case)
        assert key not in self.observed, f"{key} measured twice: give the cases names"
        after = fingerprint(self.adapter)
        self._last = (len(self.tap.calls), after)
        self.observed[key] = changes(before, after)
        return response

    def forget(self) -> None:
        """State was changed behind moto's API: the next read takes a fresh fingerprint."""
        self._last = None


# --------------------------------------------------------------------------- the scenarios


def sqs_cases(oracle: Oracle) -> None:
    sqs = oracle.client("sqs")
    dlq = oracle.write(sqs, "CreateQueue", QueueName="dead")["QueueUrl"]
    dlq_arn = oracle.read(sqs, "GetQueueAttributes", QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": 1})
    source = oracle.write(sqs, "CreateQueue", QueueName="source", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    oracle.read(sqs, "ListQueues")
    oracle.read(sqs, "GetQueueUrl", QueueName="source")
    oracle.read(sqs, "ListDeadLetterSourceQueues", QueueUrl=dlq)
    oracle.write(sqs, "SendMessage", QueueUrl=source, MessageBody="poison")
    received = oracle.write(sqs, "ReceiveMessage", QueueUrl=source, VisibilityTimeout=0)  # returned it: recorded
    assert len(received["Messages"]) == 1
    # received maxReceiveCount times: the next receive moves it to the DLQ and returns nothing (recorded:
    # the adapter sees the queue change)
    assert "Messages" not in oracle.write(sqs, "ReceiveMessage", QueueUrl=source)
    counts = oracle.read(sqs, "GetQueueAttributes", "DLQ", QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "1"
    assert "Messages" not in oracle.read(sqs, "ReceiveMessage", "empty queue", QueueUrl=source)

    fifo_dlq = oracle.write(sqs, "CreateQueue", QueueName="dead.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fifo_dlq_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dead.fifo"
    fifo_redrive = json.dumps({"deadLetterTargetArn": fifo_dlq_arn, "maxReceiveCount": 1})
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true", "RedrivePolicy": fifo_redrive}
    fifo = oracle.write(sqs, "CreateQueue", QueueName="jobs.fifo", Attributes=attributes)["QueueUrl"]
    oracle.write(sqs, "SendMessage", QueueUrl=fifo, MessageBody="a", MessageGroupId="g")
    oracle.write(sqs, "SendMessage", QueueUrl=fifo, MessageBody="b", MessageGroupId="g")
    first = oracle.write(sqs, "ReceiveMessage", QueueUrl=fifo, VisibilityTimeout=30)["Messages"][0]
    assert first["Body"] == "a"
    # group g is held by the in-flight "a": nothing to return, and nothing changed
    assert "Messages" not in oracle.read(sqs, "ReceiveMessage", "FIFO group held", QueueUrl=fifo)
    oracle.write(
        sqs, "ChangeMessageVisibility", QueueUrl=fifo, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    # "a" is visible again, received maxReceiveCount times: this receive releases group g, moves "a"
    # to the DLQ and returns "b" (so it is recorded); the next one does the same to "b", returning nothing
    assert oracle.write(sqs, "ReceiveMessage", QueueUrl=fifo, VisibilityTimeout=0)["Messages"][0]["Body"] == "b"
    assert "Messages" not in oracle.write(sqs, "ReceiveMessage", QueueUrl=fifo)
    depth = oracle.read(
        sqs, "GetQueueAttributes", "FIFO DLQ", QueueUrl=fifo_dlq, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "2"

    # a message past the queue's retention period: moto marks it received (a receive count, a new
    # receipt handle, in flight) before it sees the age, and returns nothing
    old = oracle.write(sqs, "CreateQueue", QueueName="old")["QueueUrl"]
    oracle.write(sqs, "SendMessage", QueueUrl=old, MessageBody="stale")
    message: Any = get_backend("sqs")[ACCOUNT][REGION].queues["old"]._messages[0]  # moto types sent_timestamp as None
    message.sent_timestamp -= 15 * 86400 * 1000  # as if sent 15 days ago: past any retention period (max 14 days)
    oracle.forget()
    assert "Messages" not in oracle.write(sqs, "ReceiveMessage", QueueUrl=old)


def sts_iam_cases(oracle: Oracle) -> None:
    sts, iam = oracle.client("sts"), oracle.client("iam")
    role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/deployer"
    # the first request after an account appears makes the account's IAM backends in every other
    # partition: let that happen before measuring (bookkeeping: empty backends, nothing a client sees)
    warm = sts.assume_role(RoleArn=role, RoleSessionName="warm")["Credentials"]
    oracle.client("sts", credentials=_keys(warm)).get_caller_identity()

    oracle.read(sts, "GetCallerIdentity")
    oracle.read(sts, "GetSessionToken")
    credentials = oracle.write(sts, "AssumeRole", RoleArn=role, RoleSessionName="session")["Credentials"]
    assumed = oracle.client("sts", credentials=_keys(credentials))
    identity = oracle.read(assumed, "GetCallerIdentity", "assumed-role credentials")
    assert identity["Account"] == OTHER_ACCOUNT  # only because AssumeRole stored the session

    oracle.write(iam, "CreateUser", UserName="alice")
    key = oracle.write(iam, "CreateAccessKey", UserName="alice")["AccessKey"]
    oracle.read(iam, "GetUser", UserName="alice")
    oracle.read(iam, "ListUsers")
    oracle.read(iam, "ListAccessKeys", UserName="alice")
    unused = oracle.read(iam, "GetAccessKeyLastUsed", AccessKeyId=key["AccessKeyId"])
    assert "LastUsedDate" not in unused["AccessKeyLastUsed"]
    alice = (key["AccessKeyId"], key["SecretAccessKey"], None)
    # any request signed with a key IAM knows stamps its last use, whatever the service
    oracle.read(oracle.client("sqs", credentials=alice), "ListQueues", "signed by an IAM user's key")
    used = oracle.read(iam, "GetAccessKeyLastUsed", "after use", AccessKeyId=key["AccessKeyId"])
    assert used["AccessKeyLastUsed"]["ServiceName"] == "sqs"


def _keys(credentials: dict[str, Any]) -> tuple[str, str, str]:
    return credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]


def secretsmanager_cases(oracle: Oracle) -> None:
    secrets = oracle.client("secretsmanager")
    oracle.write(secrets, "CreateSecret", Name="db", SecretString="hunter2")
    oracle.read(secrets, "GetSecretValue", SecretId="db")
    oracle.read(secrets, "DescribeSecret", SecretId="db")
    oracle.read(secrets, "ListSecrets")
    oracle.read(secrets, "ListSecretVersionIds", SecretId="db")
    oracle.read(secrets, "BatchGetSecretValue", SecretIdList=["db"])


def kms_cases(oracle: Oracle) -> None:
    kms = oracle.client("kms")
    key = oracle.write(kms, "CreateKey")["KeyMetadata"]["KeyId"]
    blob = oracle.read(kms, "Encrypt", KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    oracle.read(kms, "Decrypt", CiphertextBlob=blob)
    oracle.read(kms, "GenerateDataKey", KeyId=key, KeySpec="AES_256")
    oracle.read(kms, "ReEncrypt", CiphertextBlob=blob, DestinationKeyId=key)
    oracle.read(kms, "GenerateRandom", NumberOfBytes=16)
    oracle.read(kms, "DescribeKey", KeyId=key)
    oracle.read(kms, "ListKeys")
    signing = oracle.write(kms, "CreateKey", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = oracle.read(kms, "Sign", KeyId=signing, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    oracle.read(kms, "Verify", KeyId=signing, Message=b"m", Signature=signature, SigningAlgorithm="ECDSA_SHA_256")
    oracle.read(kms, "GetPublicKey", KeyId=signing)

    primary = oracle.write(kms, "CreateKey", MultiRegion=True)["KeyMetadata"]["KeyId"]
    oracle.write(kms, "ReplicateKey", KeyId=primary, ReplicaRegion="us-west-2")
    oracle.read(kms, "DescribeKey", "multi-Region primary", KeyId=primary)
    # the replica is a shallow copy: its multi-Region configuration is the primary's own dict, and
    # describing the replica writes REPLICA into it
    oracle.read(oracle.client("kms", "us-west-2"), "DescribeKey", "multi-Region replica", KeyId=primary)
    after = oracle.read(kms, "DescribeKey", "multi-Region primary, again", KeyId=primary)
    assert after["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"


def logs_cases(oracle: Oracle) -> None:
    logs = oracle.client("logs")
    oracle.write(logs, "CreateLogGroup", logGroupName="app")
    oracle.write(logs, "CreateLogStream", logGroupName="app", logStreamName="web")
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": "hello"}, {"timestamp": now + 1, "message": "bye"}]
    oracle.write(logs, "PutLogEvents", logGroupName="app", logStreamName="web", logEvents=events)
    oracle.read(logs, "DescribeLogGroups")
    oracle.read(logs, "DescribeLogStreams", logGroupName="app")
    oracle.read(logs, "GetLogEvents", logGroupName="app", logStreamName="web")
    oracle.read(logs, "FilterLogEvents", logGroupName="app", filterPattern="hello")
    query = oracle.write(
        logs, "StartQuery", logGroupName="app", startTime=0, endTime=now + 10, queryString="fields @message"
    )
    oracle.read(logs, "GetQueryResults", queryId=query["queryId"])
    oracle.read(logs, "DescribeQueries")


def dynamodb_cases(oracle: Oracle) -> None:
    ddb = oracle.client("dynamodb")
    oracle.write(
        ddb,
        "CreateTable",
        TableName="items",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    oracle.write(ddb, "PutItem", TableName="items", Item={"id": {"S": "1"}, "n": {"N": "1"}})
    oracle.read(ddb, "GetItem", TableName="items", Key={"id": {"S": "1"}})
    oracle.read(
        ddb,
        "Query",
        TableName="items",
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": "1"}},
    )
    oracle.read(ddb, "Scan", TableName="items")
    oracle.read(ddb, "BatchGetItem", RequestItems={"items": {"Keys": [{"id": {"S": "1"}}]}})
    oracle.read(ddb, "TransactGetItems", TransactItems=[{"Get": {"TableName": "items", "Key": {"id": {"S": "1"}}}}])
    arn = oracle.read(ddb, "DescribeTable", TableName="items")["Table"]["LatestStreamArn"]
    streams = oracle.client("dynamodbstreams")
    shard = oracle.read(streams, "DescribeStream", StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = oracle.read(streams, "GetShardIterator", StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = oracle.read(streams, "GetRecords", ShardIterator=iterator["ShardIterator"])
    assert len(records["Records"]) == 1


def s3_cases(oracle: Oracle) -> None:
    s3, sqs = oracle.client("s3"), oracle.client("sqs")
    oracle.write(s3, "CreateBucket", Bucket="reads")
    for name in ("a", "b", "c"):
        oracle.write(s3, "PutObject", Bucket="reads", Key=name, Body=name.encode())
    oracle.read(s3, "ListBuckets")
    oracle.read(s3, "HeadBucket", Bucket="reads")
    oracle.read(s3, "ListObjectsV2", Bucket="reads")
    page = oracle.read(s3, "ListObjectsV2", "truncated", Bucket="reads", MaxKeys=1)
    # the continuation token is a key into a dict on the backend: after a restart it names nothing
    oracle.read(
        s3, "ListObjectsV2", "continued", Bucket="reads", MaxKeys=1, ContinuationToken=page["NextContinuationToken"]
    )
    oracle.read(s3, "GetObject", Bucket="reads", Key="a")["Body"].read()
    oracle.read(s3, "HeadObject", Bucket="reads", Key="a")
    oracle.read(s3, "GetObjectTagging", Bucket="reads", Key="a")
    oracle.read(s3, "GetBucketVersioning", Bucket="reads")

    # a restore completes when something first reads the key's status: a HEAD sends the
    # s3:ObjectRestore:Completed notification, here into SQS
    queue = oracle.write(sqs, "CreateQueue", QueueName="restores")["QueueUrl"]
    oracle.write(s3, "CreateBucket", Bucket="archive")
    oracle.write(s3, "PutObject", Bucket="archive", Key="cold", Body=b"ice", StorageClass="GLACIER")
    notification = {
        "QueueConfigurations": [
            {"QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:restores", "Events": ["s3:ObjectRestore:Completed"]}
        ]
    }
    oracle.write(s3, "PutBucketNotificationConfiguration", Bucket="archive", NotificationConfiguration=notification)
    oracle.write(s3, "RestoreObject", Bucket="archive", Key="cold", RestoreRequest={"Days": 1})
    oracle.read(s3, "HeadObject", "restored object", Bucket="archive", Key="cold")
    delivered = oracle.write(sqs, "ReceiveMessage", QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]).get("Records", [{}])[0].get("eventName") for m in delivered] == [
        None,  # moto's s3:TestEvent, sent when the configuration was put
        "ObjectRestore:Completed",
    ]


def ssm_cases(oracle: Oracle) -> None:
    ssm = oracle.client("ssm")
    oracle.write(ssm, "PutParameter", Name="/app/db", Value="one", Type="String")
    oracle.read(ssm, "GetParameter", Name="/app/db")
    oracle.read(ssm, "GetParameters", Names=["/app/db"])
    oracle.read(ssm, "GetParametersByPath", Path="/app")
    oracle.read(ssm, "DescribeParameters")
    oracle.read(ssm, "GetParameterHistory", Name="/app/db")


def ec2_cases(oracle: Oracle) -> None:
    ec2 = oracle.client("ec2")
    reservation = oracle.write(ec2, "RunInstances", ImageId="ami-12c6146b", MinCount=2, MaxCount=2)
    instance = reservation["Instances"][0]["InstanceId"]
    oracle.read(ec2, "DescribeInstances", InstanceIds=[instance])
    oracle.read(ec2, "DescribeInstances", "all")
    oracle.read(ec2, "DescribeInstanceStatus", IncludeAllInstances=True)
    oracle.read(ec2, "DescribeVpcs")
    oracle.read(ec2, "DescribeSecurityGroupRules")
    # offerings are made on first use, with random prices (outside a recorded call: unseeded)
    oracle.read(ec2, "DescribeReservedInstancesOfferings", InstanceType="t3.micro")
    oracle.read(ec2, "DescribeReservedInstancesOfferings", "again", InstanceType="t3.micro")
    prefix_list = oracle.write(
        ec2, "CreateManagedPrefixList", PrefixListName="office", MaxEntries=2, AddressFamily="IPv4"
    )["PrefixList"]["PrefixListId"]
    oracle.write(ec2, "DeleteManagedPrefixList", PrefixListId=prefix_list)
    # a deleted prefix list shows as delete-complete once, then a describe removes it
    first = oracle.read(ec2, "DescribeManagedPrefixLists", "after delete", PrefixListIds=[prefix_list])
    assert [p["State"] for p in first["PrefixLists"]] == ["delete-complete"]
    second = oracle.read(ec2, "DescribeManagedPrefixLists", "after delete, again", PrefixListIds=[prefix_list])
    assert second["PrefixLists"] == []
    # the first request in a region makes its backend: a default VPC, subnets, security group ...
    oracle.read(oracle.client("ec2", NEW_REGION), "DescribeVpcs", "first touch of a region")


def kinesis_cases(oracle: Oracle) -> None:
    kinesis = oracle.client("kinesis")
    oracle.write(kinesis, "CreateStream", StreamName="events", ShardCount=1)
    oracle.write(kinesis, "PutRecord", StreamName="events", Data=b"x", PartitionKey="p")
    shard = oracle.read(kinesis, "ListShards", StreamName="events")["Shards"][0]["ShardId"]
    oracle.read(kinesis, "DescribeStream", StreamName="events")
    oracle.read(kinesis, "DescribeStreamSummary", StreamName="events")
    iterator = oracle.read(
        kinesis, "GetShardIterator", StreamName="events", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    oracle.read(kinesis, "GetRecords", ShardIterator=iterator["ShardIterator"])


def stepfunctions_cases(oracle: Oracle) -> None:
    sfn = oracle.client("stepfunctions")
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    role = f"arn:aws:iam::{ACCOUNT}:role/sfn"
    machine = oracle.write(sfn, "CreateStateMachine", name="flow", definition=definition, roleArn=role)
    execution = oracle.write(sfn, "StartExecution", stateMachineArn=machine["stateMachineArn"])["executionArn"]
    oracle.read(sfn, "DescribeStateMachine", stateMachineArn=machine["stateMachineArn"])
    oracle.read(sfn, "ListExecutions", stateMachineArn=machine["stateMachineArn"])
    oracle.read(sfn, "DescribeExecution", executionArn=execution)
    oracle.read(sfn, "GetExecutionHistory", executionArn=execution)


def sns_cases(oracle: Oracle) -> None:
    sns = oracle.client("sns")
    topic = oracle.write(sns, "CreateTopic", Name="news")["TopicArn"]
    oracle.write(sns, "Subscribe", TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:dead")
    oracle.read(sns, "ListTopics")
    oracle.read(sns, "GetTopicAttributes", TopicArn=topic)
    oracle.read(sns, "ListSubscriptionsByTopic", TopicArn=topic)


def ecs_cases(oracle: Oracle) -> None:
    ecs = oracle.client("ecs")
    oracle.write(ecs, "CreateCluster", clusterName="c")
    containers = [{"name": "app", "image": "busybox", "memory": 128}]
    oracle.write(ecs, "RegisterTaskDefinition", family="app", containerDefinitions=containers)
    task = oracle.write(ecs, "RunTask", cluster="c", taskDefinition="app", launchType="FARGATE")["tasks"][0]["taskArn"]
    oracle.read(ecs, "ListTasks", cluster="c")
    # every describe moves the task one step on: RUNNING, DEACTIVATING, STOPPING ... STOPPED
    statuses = [
        oracle.read(ecs, "DescribeTasks", f"#{n}", cluster="c", tasks=[task])["tasks"][0]["lastStatus"] for n in (1, 2)
    ]
    assert statuses == ["DEACTIVATING", "STOPPING"]


def cognito_athena_cases(oracle: Oracle) -> None:
    identity = oracle.client("cognito-identity")
    pool = oracle.write(identity, "CreateIdentityPool", IdentityPoolName="pool", AllowUnauthenticatedIdentities=True)
    oracle.read(identity, "DescribeIdentityPool", IdentityPoolId=pool["IdentityPoolId"])
    made = oracle.write(identity, "GetId", IdentityPoolId=pool["IdentityPoolId"])["IdentityId"]
    listed = oracle.read(identity, "ListIdentities", IdentityPoolId=pool["IdentityPoolId"], MaxResults=10)
    assert made in str(listed)

    athena = oracle.client("athena")
    output = {"OutputLocation": "s3://reads/athena/"}
    started = oracle.write(athena, "StartQueryExecution", QueryString="SELECT 1", ResultConfiguration=output)
    oracle.read(athena, "GetQueryExecution", QueryExecutionId=started["QueryExecutionId"])
    oracle.read(athena, "ListQueryExecutions")


def lambda_apigateway_cases(oracle: Oracle) -> None:
    awslambda = oracle.client("lambda")
    principal = {"Service": "lambda.amazonaws.com"}
    trust = json.dumps({"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]})
    role = oracle.write(oracle.client("iam"), "CreateRole", RoleName="lambda", AssumeRolePolicyDocument=trust)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("index.py", "def handler(event, context):\n    return event\n")
    oracle.write(
        awslambda,
        "CreateFunction",
        FunctionName="fn",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="index.handler",
        Code={"ZipFile": archive.getvalue()},
    )
    oracle.read(awslambda, "GetFunction", FunctionName="fn")
    oracle.read(awslambda, "ListFunctions")
    oracle.read(awslambda, "ListVersionsByFunction", FunctionName="fn")

    apigateway = oracle.client("apigateway")
    api = oracle.write(apigateway, "CreateRestApi", name="api")["id"]
    oracle.read(apigateway, "GetRestApis")
    oracle.read(apigateway, "GetResources", restApiId=api)


SCENARIOS: tuple[Callable[[Oracle], None], ...] = (
    sqs_cases,
    sts_iam_cases,
    secretsmanager_cases,
    kms_cases,
    logs_cases,
    dynamodb_cases,
    s3_cases,
    ssm_cases,
    kinesis_cases,
    stepfunctions_cases,
    sns_cases,
    ecs_cases,
    cognito_athena_cases,
    lambda_apigateway_cases,
    ec2_cases,  # last: its state is the largest, and every later fingerprint would dump it
)

# (service as replay names it, boto3 operation, case) -> what moto changed.  "R" marks the changes a
# client can observe after a restart that replays only recorded calls (test_a_restart_loses_them shows
# several); the rest is bookkeeping that comes out the same when the next call re-derives it.
MUTATING: dict[tuple[str, str, str], frozenset[str]] = {
    # (found here and now recorded: SQS ReceiveMessage that moved a message to the DLQ, released a FIFO
    # group or marked a message past retention received; STS AssumeRole, whose session maps the ASIA key
    # to the role's account; Logs StartQuery; Cognito Identity GetId)
    # R: every request signed with a key IAM knows stamps its last use (moto/core/responses.py
    # mark_account_as_visited), whatever the service; the assumed role's key is also held by its session
    ("sts", "GetCallerIdentity", "assumed-role credentials"): frozenset({"sts.assumed_roles", "iam.access_keys"}),
    ("sqs", "ListQueues", "signed by an IAM user's key"): frozenset({"iam.access_keys", "iam.users"}),
    # R: describing the replica writes MultiRegionKeyType=REPLICA into the dict it shares with the primary
    ("kms", "DescribeKey", "multi-Region replica"): frozenset({"kms.keys"}),
    # bookkeeping: first/last event timestamps recomputed from the events (LogStream._update)
    ("logs", "DescribeLogStreams", ""): frozenset({"logs.groups"}),
    # R: iterators are stored server-side (shard_iterators); a stored one fails after a restart
    ("dynamodb", "GetShardIterator", ""): frozenset({"dynamodbstreams.shard_iterators"}),
    ("dynamodb", "GetRecords", ""): frozenset({"dynamodbstreams.shard_iterators"}),
    # bookkeeping: the first DynamoDB Streams call makes the (empty) streams backend
    ("dynamodb", "DescribeStream", ""): frozenset({f"dynamodbstreams[{ACCOUNT}/{REGION}] created"}),
    # R: continuation tokens are keys of S3Backend._pagination_tokens
    ("s3", "ListObjectsV2", "truncated"): frozenset({"s3._pagination_tokens"}),
    ("s3", "ListObjectsV2", "continued"): frozenset({"s3._pagination_tokens"}),
    # bookkeeping: FakeKey is a ManagedState; S3Backend.get_object calls key.advance() (_tick += 1)
    ("s3", "GetObject", ""): frozenset({"s3.buckets"}),
    ("s3", "HeadObject", ""): frozenset({"s3.buckets"}),
    ("s3", "GetObjectTagging", ""): frozenset({"s3.buckets"}),
    # R: reading the status completes the restore and sends s3:ObjectRestore:Completed (into SQS here)
    ("s3", "HeadObject", "restored object"): frozenset({"s3.buckets", "sqs.queues"}),
    # bookkeeping: a defaultdict lookup leaves an empty tag entry (SimpleSystemManagerBackend._resource_tags)
    ("ssm", "GetParametersByPath", ""): frozenset({"ssm._resource_tags"}),
    # R: ecs::task is a ManagedState with manual progression: every DescribeTasks advances it one step
    ("ecs", "DescribeTasks", "#1"): frozenset({"ecs.tasks"}),
    ("ecs", "DescribeTasks", "#2"): frozenset({"ecs.tasks"}),
    # bookkeeping: athena::execution progresses immediately: the first read moves QUEUED to SUCCEEDED
    ("athena", "GetQueryExecution", ""): frozenset({"athena.executions"}),
    # R: offerings are made on first use with random prices (random.randint, unseeded outside recorded calls)
    ("ec2", "DescribeReservedInstancesOfferings", ""): frozenset({"ec2._ri_offerings", "ec2._ri_offerings_generated"}),
    # R: a deleted prefix list is shown once (delete_counter -= 1), then the next describe removes it
    ("ec2", "DescribeManagedPrefixLists", "after delete"): frozenset({"ec2.managed_prefix_lists"}),
    ("ec2", "DescribeManagedPrefixLists", "after delete, again"): frozenset({"ec2.managed_prefix_lists"}),
    # bookkeeping for replay: moto makes a region's backend (default VPC, subnets ...) on first use, and
    # replay.seeding makes it from a stream seeded by (service, account, region): the same ids every time
    ("ec2", "DescribeVpcs", "first touch of a region"): frozenset({f"ec2[{ACCOUNT}/{NEW_REGION}] created"}),
}

CLEAN: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("sqs", "GetQueueAttributes", ""),
        ("sqs", "GetQueueAttributes", "DLQ"),
        ("sqs", "GetQueueAttributes", "FIFO DLQ"),
        ("sqs", "GetQueueUrl", ""),
        ("sqs", "ListDeadLetterSourceQueues", ""),
        ("sqs", "ListQueues", ""),
        ("sqs", "ReceiveMessage", "FIFO group held"),
        ("sqs", "ReceiveMessage", "empty queue"),
        ("sts", "GetCallerIdentity", ""),
        ("sts", "GetSessionToken", ""),
        ("iam", "GetAccessKeyLastUsed", ""),
        ("iam", "GetAccessKeyLastUsed", "after use"),
        ("iam", "GetUser", ""),
        ("iam", "ListAccessKeys", ""),
        ("iam", "ListUsers", ""),
        ("secretsmanager", "BatchGetSecretValue", ""),
        ("secretsmanager", "DescribeSecret", ""),
        ("secretsmanager", "GetSecretValue", ""),  # no LastAccessedDate is kept (moto 5.2)
        ("secretsmanager", "ListSecretVersionIds", ""),
        ("secretsmanager", "ListSecrets", ""),
        ("kms", "Decrypt", ""),
        ("kms", "DescribeKey", ""),
        ("kms", "DescribeKey", "multi-Region primary"),
        ("kms", "DescribeKey", "multi-Region primary, again"),
        ("kms", "Encrypt", ""),
        ("kms", "GenerateDataKey", ""),
        ("kms", "GenerateRandom", ""),
        ("kms", "GetPublicKey", ""),
        ("kms", "ListKeys", ""),
        ("kms", "ReEncrypt", ""),
        ("kms", "Sign", ""),
        ("kms", "Verify", ""),
        ("logs", "DescribeLogGroups", ""),
        ("logs", "DescribeQueries", ""),
        ("logs", "FilterLogEvents", ""),
        ("logs", "GetLogEvents", ""),
        ("logs", "GetQueryResults", ""),
        ("dynamodb", "BatchGetItem", ""),
        ("dynamodb", "DescribeTable", ""),
        ("dynamodb", "GetItem", ""),
        ("dynamodb", "Query", ""),
        ("dynamodb", "Scan", ""),
        ("dynamodb", "TransactGetItems", ""),
        ("s3", "GetBucketVersioning", ""),
        ("s3", "HeadBucket", ""),
        ("s3", "ListBuckets", ""),
        ("s3", "ListObjectsV2", ""),
        ("ssm", "DescribeParameters", ""),
        ("ssm", "GetParameter", ""),
        ("ssm", "GetParameterHistory", ""),
        ("ssm", "GetParameters", ""),
        ("kinesis", "DescribeStream", ""),
        ("kinesis", "DescribeStreamSummary", ""),
        ("kinesis", "GetRecords", ""),
        ("kinesis", "GetShardIterator", ""),  # the iterator encodes its position: nothing stored
        ("kinesis", "ListShards", ""),
        ("states", "DescribeExecution", ""),
        ("states", "DescribeStateMachine", ""),
        ("states", "GetExecutionHistory", ""),
        ("states", "ListExecutions", ""),
        ("sns", "GetTopicAttributes", ""),
        ("sns", "ListSubscriptionsByTopic", ""),
        ("sns", "ListTopics", ""),
        ("ecs", "ListTasks", ""),
        ("cognito-identity", "DescribeIdentityPool", ""),
        ("cognito-identity", "ListIdentities", ""),
        ("athena", "ListQueryExecutions", ""),
        ("lambda", "GetFunction", ""),
        ("lambda", "ListFunctions", ""),
        ("lambda", "ListVersionsByFunction", ""),
        ("apigateway", "GetResources", ""),
        ("apigateway", "GetRestApis", ""),
        ("ec2", "DescribeInstanceStatus", ""),
        ("ec2", "DescribeInstances", ""),  # filtering works on copies of the reservations
        ("ec2", "DescribeInstances", "all"),
        ("ec2", "DescribeReservedInstancesOfferings", "again"),
        ("ec2", "DescribeSecurityGroupRules", ""),  # the -1 ports are set on copies
        ("ec2", "DescribeVpcs", ""),
    }
)

READS_THAT_MUTATE: frozenset[tuple[str, str]] = frozenset(
    {
        ("sts", "GetCallerIdentity"),
        ("sqs", "ListQueues"),  # any call, signed by a key IAM knows
        ("kms", "DescribeKey"),
        ("logs", "DescribeLogStreams"),
        ("dynamodb", "DescribeStream"),
        ("dynamodb", "GetShardIterator"),
        ("dynamodb", "GetRecords"),
        ("s3", "ListObjectsV2"),
        ("s3", "GetObject"),
        ("s3", "HeadObject"),
        ("s3", "GetObjectTagging"),
        ("ssm", "GetParametersByPath"),
        ("ecs", "DescribeTasks"),
        ("athena", "GetQueryExecution"),
        ("ec2", "DescribeReservedInstancesOfferings"),
        ("ec2", "DescribeManagedPrefixLists"),
        ("ec2", "DescribeVpcs"),
    }
)
"""The (service, operation) pairs replay does not record that changed moto's state in some case above."""


# --------------------------------------------------------------------------- the tests


@contextlib.contextmanager
def serving(app: WSGIApplication) -> Iterator[str]:
    """``app`` on a free local port, threaded as moto's own server is; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def oracle(fresh: Emulator) -> Iterator[Oracle]:
    tap = Tap(fresh.app)
    with serving(tap) as url:
        oracle = Oracle(url, tap)
        # moto makes the account's IAM backend on the first request, and one per other partition on the
        # second (moto/iam/models.py get_account_id_from): empty bookkeeping, made before measuring
        sts = oracle.client("sts")
        sts.get_caller_identity()
        sts.get_caller_identity()
        yield oracle


def test_reads_that_change_state(oracle: Oracle) -> None:
    stable = fingerprint(oracle.adapter)
    assert fingerprint(oracle.adapter) == stable  # nothing ran: the dumps are the same bytes
    for scenario in SCENARIOS:
        scenario(oracle)

    expected = {**dict.fromkeys(CLEAN, frozenset()), **MUTATING}
    differences = {
        key: {"expected": sorted(expected.get(key, {"<not measured>"})), "observed": sorted(changed)}
        for key, changed in oracle.observed.items()
        if expected.get(key) != changed
    }
    for key in expected.keys() - oracle.observed.keys():
        differences[key] = {"expected": sorted(expected[key]), "observed": ["<not measured>"]}
    assert not differences, "\n".join(f"{key}: {change}" for key, change in sorted(differences.items()))
    mutating = {(service, operation) for (service, operation, _), changed in oracle.observed.items() if changed}
    assert mutating == READS_THAT_MUTATE


# --------------------------------------------------------------------------- after a restart


def _outcome(read: Callable[[], Any]) -> Any:
    """What a read returns, or the HTTP status of its error."""
    try:
        return read()
    except ClientError as exc:
        return f"error {exc.response['ResponseMetadata']['HTTPStatusCode']}"


def _restart_workload(client: Callable[..., Any]) -> dict[str, Any]:
    """Writes (recorded) and reads (not recorded) whose effects :func:`_look` can see."""
    sqs, s3, ec2 = client("sqs"), client("s3"), client("ec2")
    dlq_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dead"
    sqs.create_queue(QueueName="dead")
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    source = sqs.create_queue(QueueName="source", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    sqs.send_message(QueueUrl=source, MessageBody="poison")
    sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)
    sqs.receive_message(QueueUrl=source)  # empty: moves the message to the DLQ
    role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/deployer"
    assumed = _keys(client("sts").assume_role(RoleArn=role, RoleSessionName="session")["Credentials"])
    client("sqs", credentials=assumed).create_queue(QueueName="made-by-the-role")  # recorded, with the ASIA key
    kms = client("kms")
    primary = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=primary, ReplicaRegion="us-west-2")
    client("kms", "us-west-2").describe_key(KeyId=primary)
    logs = client("logs")
    logs.create_log_group(logGroupName="app")
    query = logs.start_query(logGroupName="app", startTime=0, endTime=10, queryString="fields @message")["queryId"]
    s3.create_bucket(Bucket="pages")
    for name in ("a", "b", "c"):
        s3.put_object(Bucket="pages", Key=name, Body=b"x")
    token = s3.list_objects_v2(Bucket="pages", MaxKeys=1)["NextContinuationToken"]
    ecs = client("ecs")
    ecs.create_cluster(clusterName="c")
    ecs.register_task_definition(family="app", containerDefinitions=[{"name": "a", "image": "busybox", "memory": 128}])
    task = ecs.run_task(cluster="c", taskDefinition="app", launchType="FARGATE")["tasks"][0]["taskArn"]
    ecs.describe_tasks(cluster="c", tasks=[task])
    identity = client("cognito-identity")
    pool = identity.create_identity_pool(IdentityPoolName="pool", AllowUnauthenticatedIdentities=True)["IdentityPoolId"]
    identity.get_id(IdentityPoolId=pool)
    ec2.describe_reserved_instances_offerings()
    client("ec2", NEW_REGION).describe_vpcs()
    return {"assumed": assumed, "primary": primary, "query": query, "token": token, "task": task, "pool": pool}


def _look(client: Callable[..., Any], made: dict[str, Any]) -> dict[str, Any]:
    """What a client sees of the workload's effects."""
    sqs, kms, ec2 = client("sqs"), client("kms"), client("ec2")
    dlq = sqs.get_queue_url(QueueName="dead")["QueueUrl"]
    depth = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    as_role = client("sqs", credentials=made["assumed"])
    role_queue = as_role.get_queue_url(QueueName="made-by-the-role")["QueueUrl"]
    key = kms.describe_key(KeyId=made["primary"])["KeyMetadata"]
    tasks = client("ecs").describe_tasks(cluster="c", tasks=[made["task"]])["tasks"]
    identities = client("cognito-identity").list_identities(IdentityPoolId=made["pool"], MaxResults=10)["Identities"]
    offerings = ec2.describe_reserved_instances_offerings()["ReservedInstancesOfferings"]
    default_vpc = client("ec2", NEW_REGION).describe_vpcs()["Vpcs"][0]["VpcId"]

    def next_page() -> list[str]:
        page = client("s3").list_objects_v2(Bucket="pages", ContinuationToken=made["token"])
        return [item["Key"] for item in page["Contents"]]

    return {
        "DLQ depth": depth,
        "assumed-role account": client("sts", credentials=made["assumed"]).get_caller_identity()["Account"],
        "account of the role's queue": role_queue.split("/")[-2],
        "primary key type": key["MultiRegionConfiguration"]["MultiRegionKeyType"],
        "query results": _outcome(lambda: client("logs").get_query_results(queryId=made["query"])["status"]),
        "next page": _outcome(next_page),
        "task status": tasks[0]["lastStatus"],
        "identities": len(identities),
        "offering prices": [offering["FixedPrice"] for offering in offerings],
        "default VPC of a region first touched by a read": default_vpc,  # kept: replay.seeding makes it
        "queues": sorted(url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]),
    }


LOST_ACROSS_A_RESTART = frozenset(
    {
        "primary key type",  # moto: describing a replica writes into the primary's shared dict
        "next page",  # S3 continuation tokens are kept by moto per process
        "task status",  # ECS tasks advance one step per DescribeTasks
        "offering prices",  # EC2 reserved-instance offerings are priced at random on first read
    }
)
"""What a restart still loses: each is listed in README "Limits"."""


def test_a_restart_loses_only_the_known_limits(fresh: Emulator, tmp_path: Path) -> None:
    """Record through replay, restart (moto emptied, the log replayed), look again: only the known limits differ.

    replay runs as ``replay serve`` does for moto (seeded, with moto's state adapter watching receives),
    without checkpoints: what survives is exactly what the recorded calls make again.
    """
    log = tmp_path / "recorded_api_calls.json"

    def run(look: Callable[[Callable[..., Any]], dict[str, Any]]) -> dict[str, Any]:
        backend = RecordReplayBackend(
            fresh.app, log, seeder=fresh.seeder, adapter=ADAPTER, policy=CheckpointPolicy(percentage=0)
        )
        backend.restore()
        assert backend.report is not None
        assert (backend.report.failed, backend.report.diverged) == (0, 0), backend.report.to_dict()
        try:
            with serving(backend.wrap(fresh.app)) as url:
                return look(functools.partial(aws_client, url))
        finally:
            backend.close()

    made: dict[str, Any] = {}

    def first(client: Callable[..., Any]) -> dict[str, Any]:
        made.update(_restart_workload(client))
        return _look(client, made)

    before = run(first)
    assert fresh.reset is not None
    fresh.reset()
    after = run(lambda client: _look(client, made))
    lost = {key for key in before if before[key] != after[key]}
    assert lost == LOST_ACROSS_A_RESTART, {key: (before[key], after[key]) for key in lost ^ LOST_ACROSS_A_RESTART}
    assert before["assumed-role account"] == after["assumed-role account"] == OTHER_ACCOUNT
    assert after["DLQ depth"] == {"ApproximateNumberOfMessages": "1"}
    assert "made-by-the-role" not in after["queues"]  # it lives in the role's account, as before the restart
    secrets = log.read_bytes()
    assert made["assumed"][1].encode() not in secrets and made["assumed"][2].encode() not in secrets
