"""The moto state adapter: every service's state dumps and loads back in place."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend

from replay.adapters import moto as moto_adapter
from replay.adapters.moto import ASSET_THRESHOLD, DATA_PLANE_ATTRIBUTES, MotoAdapter

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield lambda service: boto3.client(service, region_name=REGION)


def restart(adapter: MotoAdapter, services: list[str]) -> None:
    """Dump, wipe (as a new process would start), load back."""
    dumps = {service: adapter.dump(service) for service in services}
    for service in services:
        get_backend(service).reset()  # type: ignore[call-overload]
    for service, data in dumps.items():
        adapter.load(service, data)


def test_state_plain_pickle_refuses_round_trips_in_place(aws: Any) -> None:
    sqs, ssm, kms, s3 = aws("sqs"), aws("ssm"), aws("kms"), aws("s3")
    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    ssm.put_parameter(Name="p", Value="one", Type="String")
    ssm.put_parameter(Name="p", Value="two", Type="String", Overwrite=True)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    ciphertext = kms.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    s3.create_bucket(Bucket="versions")
    s3.put_bucket_versioning(Bucket="versions", VersioningConfiguration={"Status": "Enabled"})
    versions = [s3.put_object(Bucket="versions", Key="k", Body=body)["VersionId"] for body in (b"1", b"2", b"3")]
    live_sqs = get_backend("sqs")

    restart(MotoAdapter(), ["sqs", "ssm", "kms", "s3"])

    assert get_backend("sqs") is live_sqs  # the live dict was updated, not replaced
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "hello"  # locks rebuilt
    assert [p["Value"] for p in ssm.get_parameter_history(Name="p")["Parameters"]] == ["one", "two"]
    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"before"  # key material kept
    verified = kms.verify(KeyId=signing, Message=b"m", Signature=signature, SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert verified["SignatureValid"]
    listed = s3.list_object_versions(Bucket="versions")["Versions"]
    assert [v["VersionId"] for v in listed] == versions[::-1]  # every version, not only the latest
    assert [s3.get_object(Bucket="versions", Key="k", VersionId=v)["Body"].read() for v in versions] == [
        b"1",
        b"2",
        b"3",
    ]
    assert get_backend("s3").bucket_accounts["versions"]  # type: ignore[call-overload]

    for service in ("sqs", "s3"):  # moto's own reset still clears restored state
        get_backend(service).reset()  # type: ignore[call-overload]
    assert sqs.list_queues().get("QueueUrls") is None
    assert s3.list_buckets()["Buckets"] == []


ENUMERATE = """
import json, pickle, sys
from moto import mock_aws
from moto.backends import get_backend
from replay.adapters.moto import MotoAdapter

def shape(value, seen):
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    if id(value) in seen:
        return "<seen>"
    seen.add(id(value))
    if isinstance(value, dict):
        return (type(value).__name__, sorted((repr(k), shape(v, seen)) for k, v in dict.items(value)))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [shape(item, seen) for item in value]
        return (type(value).__name__, sorted(map(repr, items)) if isinstance(value, (set, frozenset)) else items)
    attributes = getattr(value, "__dict__", None)
    if attributes is None:
        return type(value).__name__
    return (type(value).__name__, sorted((k, shape(v, seen)) for k, v in attributes.items()))

adapter, report = MotoAdapter(), {}
with mock_aws():
    for service in adapter.services():
        try:
            regions = get_backend(service)["123456789012"]
            regions[("us-east-1" if "us-east-1" in regions.regions else (regions.regions or ["aws"])[0])]
            adapter.dump(service, data_plane=False)  # every class listed in DATA_PLANE_ATTRIBUTES still fits
            first = adapter.dump(service)
            adapter.load(service, first)
            second = adapter.dump(service)
            assert shape(pickle.loads(second), set()) == shape(pickle.loads(first), set()), "state changed"
            adapter.load(service, second)
            report[service] = "ok"
        except Exception as exc:
            report[service] = f"{type(exc).__name__}: {exc}"[:160]
json.dump(report, sys.stdout)
"""


def test_every_moto_service_round_trips() -> None:
    """Each service's backend (with the defaults moto creates) dumps, loads, and dumps the same state again.

    It runs in a fresh interpreter: making every backend unseeded would leave this process's moto
    caches in a state the seeding tests do not expect.
    """
    done = subprocess.run([sys.executable, "-c", ENUMERATE], capture_output=True, text=True, timeout=300, check=True)
    report: dict[str, str] = json.loads(done.stdout)
    failing = {service: outcome for service, outcome in report.items() if outcome != "ok"}
    print(f"{len(report) - len(failing)} of {len(report)} moto services round-trip; failing: {failing}")
    assert len(report) > 100
    assert failing == {}


def test_infrastructure_dumps_leave_the_data_plane_out_and_the_live_state_alone(aws: Any) -> None:
    sqs, s3, ddb, kinesis, logs, sns = (aws(name) for name in ("sqs", "s3", "dynamodb", "kinesis", "logs", "sns"))
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    queue = sqs.create_queue(
        QueueName="jobs", Attributes={"VisibilityTimeout": "45", "RedrivePolicy": redrive}, tags={"team": "a"}
    )["QueueUrl"]
    fifo = sqs.create_queue(
        QueueName="jobs.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for body in ("one", "two", "three"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
        sqs.send_message(QueueUrl=fifo, MessageBody=body, MessageGroupId="g")
    in_flight = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=600)["Messages"][0]
    sqs.receive_message(QueueUrl=fifo, VisibilityTimeout=600)  # holds group g pending
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=in_flight["ReceiptHandle"])

    s3.create_bucket(Bucket="bucket")
    s3.put_bucket_versioning(Bucket="bucket", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket="bucket", Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    s3.put_bucket_cors(
        Bucket="bucket", CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
    )
    rule = {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}
    s3.put_bucket_lifecycle_configuration(Bucket="bucket", LifecycleConfiguration={"Rules": [rule]})
    s3.put_bucket_notification_configuration(
        Bucket="bucket",
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": dlq_arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/*"}
            ],
        }
    )
    s3.put_bucket_policy(Bucket="bucket", Policy=policy)
    for body in (b"v1", b"v2" * 40_000):  # the second is large enough to be an asset
        s3.put_object(Bucket="bucket", Key="k", Body=body, Tagging="kind=object")
    s3.create_multipart_upload(Bucket="bucket", Key="unfinished")

    ddb.create_table(
        TableName="table",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "colour", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-colour",
                "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        BillingMode="PAY_PER_REQUEST",
        Tags=[{"Key": "team", "Value": "a"}],
    )
    ddb.update_time_to_live(TableName="table", TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    for number in range(5):
        ddb.put_item(TableName="table", Item={"pk": {"S": "p"}, "sk": {"N": str(number)}, "colour": {"S": "blue"}})

    kinesis.create_stream(StreamName="stream", ShardCount=2)
    for number in range(4):
        kinesis.put_record(StreamName="stream", Data=b"record", PartitionKey=str(number))
    now = int(time.time() * 1000)
    logs.create_log_group(logGroupName="group")
    logs.put_retention_policy(logGroupName="group", retentionInDays=7)
    logs.create_log_stream(logGroupName="group", logStreamName="stream")
    logs.put_log_events(logGroupName="group", logStreamName="stream", logEvents=[{"timestamp": now, "message": "m"}])
    topic = sns.create_topic(Name="topic")["TopicArn"]
    sns.publish(TopicArn=topic, Message="published")

    adapter = MotoAdapter()
    services = ["sqs", "s3", "dynamodb", "kinesis", "logs", "sns"]
    full = {service: adapter.dump(service) for service in services}
    bare = {service: adapter.dump(service, data_plane=False) for service in services}
    assert len(bare["s3"]) < 10_000 < len(full["s3"])  # no body, not even the small one, is in it

    # the dump changed nothing live
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "2"
    assert len(s3.list_object_versions(Bucket="bucket")["Versions"]) == 2
    assert s3.get_object_tagging(Bucket="bucket", Key="k")["TagSet"] == [{"Key": "kind", "Value": "object"}]
    assert ddb.scan(TableName="table")["Count"] == 5
    assert logs.get_log_events(logGroupName="group", logStreamName="stream")["events"]

    for service in services:
        get_backend(service).reset()  # type: ignore[call-overload]
    for service in services:
        adapter.load(service, bare[service])

    # SQS: the queues with every attribute, tag and redrive setting; no message, none in flight or pending
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (attributes["VisibilityTimeout"], json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]) == (
        "45",
        dlq_arn,
    )
    counts = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    assert [attributes[name] for name in counts] == ["0", "0"]
    assert sqs.list_queue_tags(QueueUrl=queue)["Tags"] == {"team": "a"}
    assert "Messages" not in sqs.receive_message(QueueUrl=fifo)
    sqs.send_message(QueueUrl=fifo, MessageBody="one", MessageGroupId="g")  # not a duplicate any more
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=fifo)["Messages"]] == ["one"]  # group g not held

    # S3: the bucket with its configuration; no object, version, object tag or upload
    assert s3.get_bucket_versioning(Bucket="bucket")["Status"] == "Enabled"
    assert s3.get_bucket_tagging(Bucket="bucket")["TagSet"] == [{"Key": "team", "Value": "a"}]
    assert s3.get_bucket_cors(Bucket="bucket")["CORSRules"][0]["AllowedMethods"] == ["GET"]
    assert s3.get_bucket_lifecycle_configuration(Bucket="bucket")["Rules"][0]["ID"] == "expire"
    notified = s3.get_bucket_notification_configuration(Bucket="bucket")["QueueConfigurations"]
    assert notified[0]["QueueArn"] == dlq_arn
    assert json.loads(s3.get_bucket_policy(Bucket="bucket")["Policy"]) == json.loads(policy)
    assert "Versions" not in s3.list_object_versions(Bucket="bucket")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="bucket")
    backend = get_backend("s3")[ACCOUNT]["aws"]  # type: ignore[call-overload]
    assert list(backend.tagger.tags) == ["arn:aws:s3:::bucket"]
    s3.put_object(Bucket="bucket", Key="k", Body=b"new")
    assert s3.get_object(Bucket="bucket", Key="k")["Body"].read() == b"new"

    # DynamoDB: the table with its keys, index, stream, TTL and tags; no item, no stream record
    table = ddb.describe_table(TableName="table")["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-colour"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert table["ItemCount"] == 0
    assert ddb.describe_time_to_live(TableName="table")["TimeToLiveDescription"]["AttributeName"] == "ttl"
    assert ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"] == [{"Key": "team", "Value": "a"}]
    assert ddb.scan(TableName="table")["Count"] == 0
    assert get_backend("dynamodb")[ACCOUNT][REGION].tables["table"].stream_shard.items == []  # type: ignore[call-overload]
    ddb.put_item(TableName="table", Item={"pk": {"S": "p"}, "sk": {"N": "9"}})
    assert ddb.scan(TableName="table")["Count"] == 1

    # Kinesis: the stream with its shards, no record; Logs: the group and stream, no event; SNS: no notification
    shards = kinesis.list_shards(StreamName="stream")["Shards"]
    assert len(shards) == 2
    iterator = kinesis.get_shard_iterator(
        StreamName="stream", ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert kinesis.get_records(ShardIterator=iterator)["Records"] == []
    assert logs.describe_log_groups()["logGroups"][0]["retentionInDays"] == 7
    assert [s["logStreamName"] for s in logs.describe_log_streams(logGroupName="group")["logStreams"]] == ["stream"]
    assert logs.get_log_events(logGroupName="group", logStreamName="stream")["events"] == []
    assert get_backend("sns")[ACCOUNT][REGION].topics[topic].sent_notifications == []  # type: ignore[call-overload]

    # and a full dump still has it all
    for service in services:
        adapter.load(service, full[service])
    assert ddb.scan(TableName="table")["Count"] == 5
    assert len(s3.list_object_versions(Bucket="bucket")["Versions"]) == 2


def test_infrastructure_dumps_leave_out_notifications_emails_metrics_archived_events_and_executions(aws: Any) -> None:
    sns, ses, cloudwatch, events, sfn = (aws(name) for name in ("sns", "ses", "cloudwatch", "events", "stepfunctions"))
    application = sns.create_platform_application(Name="app", Platform="GCM", Attributes={"PlatformCredential": "k"})
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=application["PlatformApplicationArn"], Token="t")
    sns.publish(TargetArn=endpoint["EndpointArn"], Message="to a device")
    sns.publish(PhoneNumber="+15555550100", Message="to a phone")
    ses.verify_email_identity(EmailAddress="from@example.com")
    message = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
    ses.send_email(Source="from@example.com", Destination={"ToAddresses": ["to@example.com"]}, Message=message)
    cloudwatch.put_metric_data(Namespace="app", MetricData=[{"MetricName": "latency", "Value": 1.0}])
    cloudwatch.put_metric_alarm(
        AlarmName="slow",
        MetricName="latency",
        Namespace="app",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    bus = events.describe_event_bus()["Arn"]
    events.create_archive(ArchiveName="all", EventSourceArn=bus)
    events.put_events(Entries=[{"Source": "app", "DetailType": "d", "Detail": "{}"}])
    definition = json.dumps({"StartAt": "done", "States": {"done": {"Type": "Succeed"}}})
    machine = sfn.create_state_machine(name="m", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/r")[
        "stateMachineArn"
    ]
    sfn.start_execution(stateMachineArn=machine)

    adapter = MotoAdapter()
    services = ["sns", "ses", "cloudwatch", "events", "stepfunctions"]
    bare = {service: adapter.dump(service, data_plane=False) for service in services}
    for service in services:
        get_backend(service).reset()  # type: ignore[call-overload]
    for service in services:
        adapter.load(service, bare[service])

    sns_backend = get_backend("sns")[ACCOUNT][REGION]  # type: ignore[call-overload]
    assert [e.messages for e in sns_backend.platform_endpoints.values()] == [{}]
    assert sns_backend.sms_messages == {}
    assert ses.list_identities()["Identities"] == ["from@example.com"]
    assert get_backend("ses")[ACCOUNT][REGION].sent_messages == []  # type: ignore[call-overload]
    assert ses.get_send_quota()["SentLast24Hours"] == 0
    assert [alarm["AlarmName"] for alarm in cloudwatch.describe_alarms()["MetricAlarms"]] == ["slow"]
    assert cloudwatch.list_metrics()["Metrics"] == []
    assert events.describe_archive(ArchiveName="all")["EventCount"] == 0
    assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]] == ["m"]
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_the_dispatch_table_writes_what_asking_about_every_object_writes(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pickler that finds its handlers by type in a dispatch table writes the same bytes as the one that asks
    about every object it meets, with and without the data plane, S3 bodies as assets or inline."""
    sqs, s3, ssm, dynamodb = aws("sqs"), aws("s3"), aws("ssm"), aws("dynamodb")
    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="kept")
    s3.create_bucket(Bucket="bucket")
    s3.put_bucket_versioning(Bucket="bucket", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"first", b"x" * (ASSET_THRESHOLD + 1)):
        s3.put_object(Bucket="bucket", Key="k", Body=body)
    ssm.put_parameter(Name="/p", Value="v", Type="String")
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="t", Item={"id": {"S": "1"}, "n": {"N": "2"}})
    adapter = MotoAdapter()

    def every_dump() -> list[bytes]:
        return [
            adapter.dump(service, assets, data_plane)
            for service in ("sqs", "s3", "ssm", "dynamodb")
            for assets in (None, tmp_path / service)
            for data_plane in (True, False)
        ]

    table = every_dump()
    assert moto_adapter._kinds_now(True) is not None and moto_adapter._kinds_now(False) is not None
    monkeypatch.setattr(moto_adapter, "_kinds_now", lambda _data_plane: None)  # the learning pickler only
    assert every_dump() == table


def test_a_type_the_table_does_not_know_yet_is_learned(aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A cryptography key is met by the table's pickler as a type it cannot pickle: the state is pickled again,
    type by type, which learns it, and the next dump's table has it."""
    kms = aws("kms")
    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    key = get_backend("kms")[ACCOUNT][REGION].keys[signing].private_key.private_key  # type: ignore[call-overload]
    kind = type(key)
    moto_adapter._HANDLERS.pop(kind, None)  # as in a process that never pickled one
    assert kind not in moto_adapter._kinds_now(True)  # type: ignore[operator]
    adapter = MotoAdapter()
    with caplog.at_level(logging.DEBUG, logger="replay.adapters.moto"):
        first = adapter.dump("kms")
    assert "pickling again, type by type" in caplog.text
    assert kind in moto_adapter._kinds_now(True)  # type: ignore[operator]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="replay.adapters.moto"):
        assert adapter.dump("kms") == first
    assert "pickling again" not in caplog.text
    get_backend("kms").reset()  # type: ignore[call-overload]
    adapter.load("kms", first)
    verified = kms.verify(KeyId=signing, Message=b"m", Signature=signature, SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert verified["SignatureValid"]


def test_every_class_without_its_data_plane_is_found_by_name() -> None:
    """The dispatch table finds each class of DATA_PLANE_ATTRIBUTES by its name once its module is imported."""
    import importlib

    for name in DATA_PLANE_ATTRIBUTES:
        importlib.import_module(name.rpartition(".")[0])
        found = moto_adapter._class_named(name)
        assert found is not None and f"{found.__module__}.{found.__qualname__}" == name
    assert moto_adapter._kinds_now(False) is not None
