"""State driven over real HTTP survives a restart: clean (SIGTERM) and abrupt (SIGKILL)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
BINARY = bytes(range(256))

BUCKET = "e2e-bucket"
OBJECTS: dict[str, bytes] = {
    "dir/ü ñ+x €.bin": BINARY * 64,
    "key with spaces.txt": "plain text, ü and €\n".encode(),
    "plus+sign+key.bin": BINARY * 3,
    "literal %20 and 100% percent.bin": BINARY[::-1],
    "nested//double/slash/empty": b"",
    "big/one-megabyte.bin": BINARY * 4096,
}
META_KEY = "meta/document ü.json"
META_BODY = b'{"hello": "world"}'
COPY_KEY = "copy of plus+sign+key.bin"

TABLE = "e2e-table"
ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "user#1"},
        "sk": {"N": "1"},
        "colour": {"S": "blue"},
        "name": {"S": "Zoë €"},
        "blob": {"B": BINARY},
        "profile": {"M": {"age": {"N": "42"}, "langs": {"L": [{"S": "en"}, {"S": "fr"}]}}},
    },
    {"pk": {"S": "user#1"}, "sk": {"N": "2"}, "colour": {"S": "red"}, "visits": {"N": "0"}},
    {"pk": {"S": "user#2"}, "sk": {"N": "1"}, "colour": {"S": "blue"}, "flag": {"BOOL": True}},
    {"pk": {"S": "user#3"}, "sk": {"N": "1"}, "colour": {"S": "green"}},
]


def key_of(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["N"]


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive every visible message of a queue (keeping them invisible for 10 minutes)."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=600,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def scan_all(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def assert_restored(server: ReplayServer, count: int) -> None:
    """The server's stderr and health endpoint say exactly ``count`` calls were restored, none failed or diverged."""
    stderr = server.stderr()
    assert f"Restored {count} API calls from persistent file: {server.log_path}\n" in stderr, stderr
    assert "0 recorded API calls failed on replay" in stderr, stderr
    assert "0 replayed API calls diverged from their recording" in stderr, stderr
    health = server.health()
    assert health["features"]["persistence"] == "initialized"
    assert health["persistence"]["restored"] == count
    assert (health["persistence"]["failed"], health["persistence"]["diverged"]) == (0, 0)


def make_state(aws: AwsClients, server: ReplayServer) -> dict[str, str]:
    """SQS, S3, DynamoDB and SNS state, through boto3 over HTTP; returns ids the checks need."""
    sqs, s3, dynamodb, sns = (aws(name, server) for name in ("sqs", "s3", "dynamodb", "sns"))

    jobs = sqs.create_queue(
        QueueName="e2e-jobs",
        Attributes={"VisibilityTimeout": "45", "MessageRetentionPeriod": "86400"},
        tags={"team": "e2e"},
    )["QueueUrl"]
    plain = sqs.create_queue(QueueName="e2e-plain")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=plain, Attributes={"VisibilityTimeout": "12"})
    doomed = sqs.create_queue(QueueName="e2e-doomed")["QueueUrl"]
    sqs.delete_queue(QueueUrl=doomed)
    sqs.send_message(
        QueueUrl=jobs,
        MessageBody="hello ü €",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "greeting"},
            "blob": {"DataType": "Binary", "BinaryValue": BINARY},
        },
    )
    sent = sqs.send_message_batch(
        QueueUrl=jobs, Entries=[{"Id": str(i), "MessageBody": f"batch {i} +&=%"} for i in range(3)]
    )
    assert len(sent["Successful"]) == 3
    sqs.send_message(QueueUrl=plain, MessageBody=json.dumps({"n": 1}))

    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "e2e"}]})
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    s3.put_object(
        Bucket=BUCKET, Key=META_KEY, Body=META_BODY, ContentType="application/json", Metadata={"colour": "blue"}
    )
    s3.copy_object(Bucket=BUCKET, Key=COPY_KEY, CopySource={"Bucket": BUCKET, "Key": "plus+sign+key.bin"})
    s3.put_object(Bucket=BUCKET, Key="to delete.txt", Body=b"gone")
    s3.delete_object(Bucket=BUCKET, Key="to delete.txt")
    s3.create_bucket(Bucket="e2e-doomed-bucket")
    s3.delete_bucket(Bucket="e2e-doomed-bucket")

    dynamodb.create_table(
        TableName=TABLE,
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
        BillingMode="PAY_PER_REQUEST",
    )
    for item in ITEMS:
        dynamodb.put_item(TableName=TABLE, Item=item)
    for _ in range(2):
        dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": "user#1"}, "sk": {"N": "2"}},
            UpdateExpression="ADD visits :one SET colour = :blue",
            ExpressionAttributeValues={":one": {"N": "1"}, ":blue": {"S": "blue"}},
        )
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "user#3"}, "sk": {"N": "1"}})

    topic = sns.create_topic(Name="e2e-topic", Attributes={"DisplayName": "E2E topic ü"})["TopicArn"]
    other = sns.create_topic(Name="e2e-other")["TopicArn"]
    sns.set_topic_attributes(TopicArn=other, AttributeName="DisplayName", AttributeValue="Other")
    sns.delete_topic(TopicArn=sns.create_topic(Name="e2e-doomed-topic")["TopicArn"])
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:e2e-jobs",
        Attributes={"RawMessageDelivery": "true"},
    )
    return {"topic": topic, "other": other}


def check_state(aws: AwsClients, server: ReplayServer, ids: dict[str, str]) -> None:
    """Everything :func:`make_state` did is there, read back through boto3 from ``server``."""
    sqs, s3, dynamodb, sns = (aws(name, server) for name in ("sqs", "s3", "dynamodb", "sns"))

    # SQS: queues (by their new URLs), attributes, tags, every message body and attribute
    names = {url.rsplit("/", 1)[1] for url in sqs.list_queues().get("QueueUrls", [])}
    assert names == {"e2e-jobs", "e2e-plain"}
    jobs = sqs.get_queue_url(QueueName="e2e-jobs")["QueueUrl"]
    plain = sqs.get_queue_url(QueueName="e2e-plain")["QueueUrl"]
    assert jobs == f"{server.endpoint}/{ACCOUNT}/e2e-jobs"
    attributes = sqs.get_queue_attributes(QueueUrl=jobs, AttributeNames=["All"])["Attributes"]
    assert (attributes["VisibilityTimeout"], attributes["MessageRetentionPeriod"]) == ("45", "86400")
    assert sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "12"
    }
    assert sqs.list_queue_tags(QueueUrl=jobs)["Tags"] == {"team": "e2e"}
    messages = drain(sqs, jobs)
    assert sorted(m["Body"] for m in messages) == sorted(["hello ü €"] + [f"batch {i} +&=%" for i in range(3)])
    [greeting] = [m for m in messages if m["Body"] == "hello ü €"]
    assert greeting["MessageAttributes"]["kind"]["StringValue"] == "greeting"
    assert greeting["MessageAttributes"]["blob"]["BinaryValue"] == BINARY
    assert [json.loads(m["Body"]) for m in drain(sqs, plain)] == [{"n": 1}]

    # S3: buckets, tags, every key and its exact bytes, metadata, the copy; deleted things stay deleted
    buckets = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert buckets == {BUCKET}
    assert s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": "team", "Value": "e2e"}]
    listed = s3.list_objects_v2(Bucket=BUCKET)
    assert {obj["Key"] for obj in listed["Contents"]} == {*OBJECTS, META_KEY, COPY_KEY}
    for key, body in OBJECTS.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
    assert s3.get_object(Bucket=BUCKET, Key=COPY_KEY)["Body"].read() == OBJECTS["plus+sign+key.bin"]
    head = s3.head_object(Bucket=BUCKET, Key=META_KEY)
    assert (head["ContentType"], head["Metadata"]) == ("application/json", {"colour": "blue"})
    assert s3.get_object(Bucket=BUCKET, Key=META_KEY)["Body"].read() == META_BODY

    # DynamoDB: the table with its GSI, items after put/update/delete, a query on the GSI
    table = dynamodb.describe_table(TableName=TABLE)["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-colour"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    expected = {key_of(item): item for item in ITEMS[:3]}
    expected[("user#1", "2")] = {**ITEMS[1], "colour": {"S": "blue"}, "visits": {"N": "2"}}
    assert {key_of(item): item for item in scan_all(dynamodb, TABLE)} == expected
    blue = dynamodb.query(
        TableName=TABLE,
        IndexName="by-colour",
        KeyConditionExpression="colour = :c",
        ExpressionAttributeValues={":c": {"S": "blue"}},
    )["Items"]
    assert sorted(key_of(item) for item in blue) == [("user#1", "1"), ("user#1", "2"), ("user#2", "1")]

    # SNS: topics with their attributes, the subscription with its attribute
    assert {topic["TopicArn"] for topic in sns.list_topics()["Topics"]} == {ids["topic"], ids["other"]}
    assert sns.get_topic_attributes(TopicArn=ids["topic"])["Attributes"]["DisplayName"] == "E2E topic ü"
    assert sns.get_topic_attributes(TopicArn=ids["other"])["Attributes"]["DisplayName"] == "Other"
    [subscription] = sns.list_subscriptions_by_topic(TopicArn=ids["topic"])["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("sqs", f"arn:aws:sqs:us-east-1:{ACCOUNT}:e2e-jobs")
    sub_attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])["Attributes"]
    assert sub_attributes["RawMessageDelivery"] == "true"


def test_state_survives_sigterm_and_restart_on_another_port(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = servers.start(data)
    assert first.health()["features"]["persistence"] == "initialized"
    ids = make_state(aws, first)
    first.stop()
    recorded = len(first.log_lines())
    # one line per mutation (SQS 8, S3 14, DynamoDB 8, SNS 6); no line for any read
    assert recorded == 36

    second = servers.start(data)
    assert second.port != first.port
    assert_restored(second, recorded)
    check_state(aws, second, ids)
    # the replay was not recorded again, nor were the reads above, except the receives that took messages
    assert {entry["operation"] for entry in second.log_entries()[recorded:]} == {"ReceiveMessage"}
    recorded = len(second.log_lines())

    # and the restored server keeps recording
    sqs = aws("sqs", second)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="e2e-plain")["QueueUrl"], MessageBody="after restart")
    second.stop()
    assert len(second.log_lines()) == recorded + 1
    assert second.log_entries()[-1]["operation"] == "SendMessage"


def test_sigkill_with_fsync_always_loses_no_acknowledged_call(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = servers.start(data, "--fsync", "always")
    assert "fsync always" in first.stderr()
    setup_sqs, setup_dynamodb = aws("sqs", first), aws("dynamodb", first)
    queue = setup_sqs.create_queue(QueueName="e2e-kill")["QueueUrl"]
    setup_dynamodb.create_table(
        TableName="e2e-kill",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    lock = threading.Lock()
    attempted: set[str] = set()
    acknowledged: set[str] = set()
    enough = threading.Event()
    killed = threading.Event()
    unexpected: list[BaseException] = []
    workers = 4
    clients = [(aws("sqs", first), aws("dynamodb", first)) for _ in range(workers)]  # made here: not thread-safe

    def work(number: int) -> None:
        sqs, dynamodb = clients[number]
        for i in range(10_000):
            for kind in ("message", "item"):
                name = f"{kind}-{number}-{i}"
                with lock:
                    attempted.add(name)
                try:
                    if kind == "message":
                        sqs.send_message(QueueUrl=queue, MessageBody=name)
                    else:
                        dynamodb.put_item(TableName="e2e-kill", Item={"id": {"S": name}, "n": {"N": str(i)}})
                except (BotoCoreError, ClientError) as exc:
                    if not killed.is_set():
                        unexpected.append(exc)
                    enough.set()  # never leave the main thread waiting
                    return
                with lock:
                    acknowledged.add(name)
                    if len(acknowledged) >= 120:
                        enough.set()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    assert enough.wait(120), "the workers never got 120 calls acknowledged"
    killed.set()
    first.kill()  # SIGKILL while the workers are still sending
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert first.proc.returncode == -9
    assert not unexpected, unexpected
    assert "stopped; state is on disk" not in first.stderr()  # no clean shutdown happened
    assert acknowledged

    second = servers.start(data)
    lines = len(second.log_lines())
    assert_restored(second, lines)
    sqs, dynamodb = aws("sqs", second), aws("dynamodb", second)
    bodies = [m["Body"] for m in drain(sqs, sqs.get_queue_url(QueueName="e2e-kill")["QueueUrl"])]
    items = [item["id"]["S"] for item in scan_all(dynamodb, "e2e-kill")]
    restored = set(bodies) | set(items)
    assert len(bodies) + len(items) == len(restored)  # nothing restored twice
    assert acknowledged <= restored, f"acknowledged but lost: {sorted(acknowledged - restored)}"
    assert restored <= attempted
    assert lines == 2 + len(restored)  # CreateQueue, CreateTable, then one line per restored call


@pytest.fixture(scope="module")
def server_generated_ids(
    module_servers: Servers, module_aws: AwsClients, tmp_path_factory: pytest.TempPathFactory
) -> ReplayServer:
    """Calls that refer to ids the emulator made up (receipt handles, subscription ARNs, upload ids), restarted.

    moto draws those ids at random, so the replayed calls that created them get new ids and the
    recorded calls naming the old ones no longer find anything.
    """
    data = tmp_path_factory.mktemp("ids") / "data"
    first = module_servers.start(data)
    sqs, sns, s3 = (module_aws(name, first) for name in ("sqs", "sns", "s3"))

    queue = sqs.create_queue(QueueName="e2e-ids")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="keep")
    sqs.send_message(QueueUrl=queue, MessageBody="consumed")
    [consumed] = [m for m in drain(sqs, queue) if m["Body"] == "consumed"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=consumed["ReceiptHandle"])

    topic = sns.create_topic(Name="e2e-ids")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:kept")
    gone = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:gone")
    sns.unsubscribe(SubscriptionArn=gone["SubscriptionArn"])

    s3.create_bucket(Bucket="e2e-ids")
    upload = s3.create_multipart_upload(Bucket="e2e-ids", Key="multipart.bin")["UploadId"]
    part = s3.upload_part(Bucket="e2e-ids", Key="multipart.bin", UploadId=upload, PartNumber=1, Body=BINARY * 8)
    s3.complete_multipart_upload(
        Bucket="e2e-ids",
        Key="multipart.bin",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    # before the restart all three are as the client left them
    assert [m["Body"] for m in drain(sqs, queue)] == []
    assert len(sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]) == 1
    assert s3.get_object(Bucket="e2e-ids", Key="multipart.bin")["Body"].read() == BINARY * 8
    first.stop()
    return module_servers.start(data)


def test_deleted_sqs_message_stays_deleted(server_generated_ids: ReplayServer, module_aws: AwsClients) -> None:
    sqs = module_aws("sqs", server_generated_ids)
    queue = sqs.get_queue_url(QueueName="e2e-ids")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    # "consumed" stays deleted; "keep" was received with a 10-minute visibility timeout and is still in flight
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "1",
    )
    assert "0 recorded API calls failed on replay" in server_generated_ids.stderr()


def test_unsubscribed_sns_subscription_stays_gone(server_generated_ids: ReplayServer, module_aws: AwsClients) -> None:
    sns = module_aws("sns", server_generated_ids)
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:e2e-ids")
    assert [s["Endpoint"] for s in subscriptions["Subscriptions"]] == [f"arn:aws:sqs:us-east-1:{ACCOUNT}:kept"]


def test_multipart_uploaded_object_is_restored(server_generated_ids: ReplayServer, module_aws: AwsClients) -> None:
    s3 = module_aws("s3", server_generated_ids)
    assert s3.get_object(Bucket="e2e-ids", Key="multipart.bin")["Body"].read() == BINARY * 8
