"""What reaches the call log, and what never does: reads, failed calls, secrets."""

from __future__ import annotations

import re
import signal
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import AwsClients, Servers

pytestmark = pytest.mark.e2e

BINARY = bytes(range(256))


def fails(call: Any, *args: Any, **kwargs: Any) -> int:
    """Make a call that must fail; returns its HTTP status."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    status: int = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert status >= 400
    return status


def test_only_successful_mutations_are_recorded(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    server = servers.start(tmp_path / "data")
    sqs, s3, dynamodb, sns, iam = (aws(name, server) for name in ("sqs", "s3", "dynamodb", "sns", "iam"))

    queue = sqs.create_queue(QueueName="e2e-rec")["QueueUrl"]
    assert sqs.list_queues()["QueueUrls"] == [queue]
    assert sqs.get_queue_url(QueueName="e2e-rec")["QueueUrl"] == queue
    sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])
    sqs.send_message(QueueUrl=queue, MessageBody="one")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]] == ["one"]
    fails(sqs.get_queue_url, QueueName="e2e-missing")
    fails(sqs.delete_queue, QueueUrl=f"{server.endpoint}/123456789012/e2e-missing")
    fails(sqs.send_message, QueueUrl=f"{server.endpoint}/123456789012/e2e-missing", MessageBody="lost")

    s3.create_bucket(Bucket="e2e-rec")
    assert fails(s3.create_bucket, Bucket="ab") == 400  # InvalidBucketName: too short
    s3.put_object(Bucket="e2e-rec", Key="k ü+.bin", Body=BINARY)
    assert [obj["Key"] for obj in s3.list_objects_v2(Bucket="e2e-rec")["Contents"]] == ["k ü+.bin"]
    assert s3.get_object(Bucket="e2e-rec", Key="k ü+.bin")["Body"].read() == BINARY
    assert s3.head_object(Bucket="e2e-rec", Key="k ü+.bin")["ContentLength"] == 256
    s3.head_bucket(Bucket="e2e-rec")
    s3.list_buckets()
    s3.get_bucket_location(Bucket="e2e-rec")
    assert fails(s3.get_object, Bucket="e2e-rec", Key="missing") == 404
    assert fails(s3.delete_bucket, Bucket="e2e-missing-bucket") == 404
    assert fails(s3.put_object, Bucket="e2e-missing-bucket", Key="k", Body=b"x") == 404
    assert fails(s3.delete_bucket, Bucket="e2e-rec") == 409  # BucketNotEmpty

    dynamodb.create_table(
        TableName="e2e-rec",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="e2e-rec", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    assert dynamodb.scan(TableName="e2e-rec")["Count"] == 1
    assert dynamodb.get_item(TableName="e2e-rec", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    dynamodb.describe_table(TableName="e2e-rec")
    dynamodb.list_tables()
    dynamodb.query(TableName="e2e-rec", KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "a"}})
    fails(dynamodb.delete_table, TableName="e2e-missing")
    fails(dynamodb.put_item, TableName="e2e-missing", Item={"pk": {"S": "a"}})
    fails(  # ConditionalCheckFailedException
        dynamodb.update_item,
        TableName="e2e-rec",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET n = :two",
        ConditionExpression="n = :zero",
        ExpressionAttributeValues={":two": {"N": "2"}, ":zero": {"N": "0"}},
    )
    dynamodb.update_item(
        TableName="e2e-rec",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET n = :two",
        ConditionExpression="n = :one",
        ExpressionAttributeValues={":two": {"N": "2"}, ":one": {"N": "1"}},
    )

    # SNS and IAM use the query protocol: reads are POSTs with Action=List..., Action=Get...
    topic = sns.create_topic(Name="e2e-rec")["TopicArn"]
    assert [t["TopicArn"] for t in sns.list_topics()["Topics"]] == [topic]
    sns.get_topic_attributes(TopicArn=topic)
    sns.list_subscriptions()
    fails(sns.publish, TopicArn="arn:aws:sns:us-east-1:123456789012:e2e-missing", Message="lost")
    fails(sns.get_topic_attributes, TopicArn="arn:aws:sns:us-east-1:123456789012:e2e-missing")
    iam.create_user(UserName="e2e-rec")
    iam.get_user(UserName="e2e-rec")
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["e2e-rec"]
    fails(iam.delete_user, UserName="e2e-missing")
    fails(iam.create_user, UserName="e2e-rec")  # EntityAlreadyExists

    server.stop()
    assert server.log_operations() == [
        ("sqs", "CreateQueue"),
        ("sqs", "SendMessage"),
        ("sqs", "ReceiveMessage"),  # it returned a message: it issued a receipt handle
        ("s3", "CreateBucket"),
        ("s3", "PutObject"),
        ("dynamodb", "CreateTable"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "UpdateItem"),
        ("sns", "CreateTopic"),
        ("iam", "CreateUser"),
    ]
    for entry in server.log_entries():
        assert entry["v"] == 1
        assert 200 <= entry["response"]["status"] < 300
        assert entry["request"]["method"] in ("POST", "PUT")


def assert_private_and_secret_free(data_dir: Path, token: str) -> None:
    """Every file under ``data_dir`` is 0600 (the dir 0700) and holds no signature or session token."""
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert files, "no files under the data dir"
    for path in data_dir.rglob("*"):
        assert path.is_file(), f"unexpected directory {path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        text = path.read_bytes().decode("utf-8", "replace")
        lower = text.lower()
        assert token.lower() not in lower, f"{path} holds the session token"
        assert "signature=" not in lower, f"{path} holds a signature"
        assert "x-amz-signature" not in lower, f"{path} holds a presigned URL signature"
        assert "securitytoken" not in lower, f"{path} holds a SigV2 security token parameter"
        # a SigV4 SignedHeaders list may *name* the token header (it holds no secret); nothing else may
        unsigned = re.sub(r"signedheaders=[^,\"&\s]*", "", lower)
        assert "x-amz-security-token" not in unsigned, f"{path} holds a security token header or parameter"


def test_no_secret_reaches_disk_and_presigned_uploads_survive_restart(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    token = aws.session_token
    first = servers.start(data)
    sqs, s3, dynamodb, sns = (aws(name, first) for name in ("sqs", "s3", "dynamodb", "sns"))
    s3v4 = aws("s3", first, signature_version="s3v4")

    # header-signed calls, each carrying X-Amz-Security-Token
    sqs.send_message(QueueUrl=sqs.create_queue(QueueName="e2e-secret")["QueueUrl"], MessageBody="m")
    dynamodb.create_table(
        TableName="e2e-secret",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sns.create_topic(Name="e2e-secret")
    s3.create_bucket(Bucket="e2e-secret")
    s3.put_object(Bucket="e2e-secret", Key="signed header.bin", Body=BINARY)

    # presigned PUT URLs: SigV2 (boto3's default for S3 presigning) and SigV4; both carry the token
    uploads: dict[str, bytes] = {"presigned v2 ü+.bin": BINARY * 2, "presigned/v4 € key.bin": BINARY[::-1] * 3}
    for (key, body), client in zip(uploads.items(), (s3, s3v4), strict=True):
        url = client.generate_presigned_url("put_object", Params={"Bucket": "e2e-secret", "Key": key}, ExpiresIn=600)
        assert token in url
        assert "Signature=" in url
        answer = requests.put(url, data=body, timeout=30)
        assert answer.status_code == 200, answer.text
    # a presigned GET is a read: it works and is not recorded
    get_url = s3v4.generate_presigned_url("get_object", Params={"Bucket": "e2e-secret", "Key": "signed header.bin"})
    assert requests.get(get_url, timeout=30).content == BINARY

    # an S3 streaming upload with per-chunk signatures, as the Java and Go SDKs send it
    chunked = b"chunked payload \x00\xff" * 500
    chunk_signature = "0" * 64
    framed = (
        f"{len(chunked):x};chunk-signature={chunk_signature}\r\n".encode()
        + chunked
        + f"\r\n0;chunk-signature={chunk_signature}\r\n\r\n".encode()
    )
    answer = requests.put(
        f"{first.endpoint}/e2e-secret/streamed%20chunks.bin",
        data=framed,
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, "
            "SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
            "x-amz-security-token, Signature=" + "f" * 64,
            "X-Amz-Security-Token": token,
            "X-Amz-Date": "20240101T000000Z",
            "X-Amz-Content-Sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "X-Amz-Decoded-Content-Length": str(len(chunked)),
            "Content-Encoding": "aws-chunked",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    # a form-encoded query-protocol call carrying SigV2-style Signature and SecurityToken parameters
    answer = requests.post(
        first.endpoint + "/",
        data={
            "Action": "CreateTopic",
            "Name": "e2e-form-topic",
            "Version": "2010-03-31",
            "Signature": "c2lnbmF0dXJl+/=",
            "SecurityToken": token,
        },
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/sns/aws4_request, "
            "SignedHeaders=content-type;host, Signature=" + "e" * 64
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    stderr = first.stop(signal.SIGINT)
    assert "SIGINT received; stopping" in stderr
    assert ("s3", "PutObject") in first.log_operations()
    assert len(first.log_lines()) == 10
    assert_private_and_secret_free(data, token)
    for entry in first.log_entries():
        names = {name.lower() for name, _ in entry["request"]["headers"]}
        assert "x-amz-security-token" not in names
        for name, value in entry["request"]["headers"]:
            if name.lower() == "authorization":
                assert "signature=" not in value.lower()

    second = servers.start(data)
    assert f"Restored 10 API calls from persistent file: {second.log_path}\n" in second.stderr()
    s3 = aws("s3", second)
    for key, body in uploads.items():
        assert s3.get_object(Bucket="e2e-secret", Key=key)["Body"].read() == body, key
    assert s3.get_object(Bucket="e2e-secret", Key="streamed chunks.bin")["Body"].read() == chunked
    assert s3.get_object(Bucket="e2e-secret", Key="signed header.bin")["Body"].read() == BINARY
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in aws("sns", second).list_topics()["Topics"]}
    assert topics == {"e2e-secret", "e2e-form-topic"}
    second.stop()
    assert_private_and_secret_free(data, token)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--no-persistence",), {}),
        ((), {"PERSISTENCE": "0"}),
        (("--no-persistence",), {"PERSISTENCE": "1"}),  # the flag wins over the environment
    ],
    ids=["flag", "env", "flag-over-env"],
)
def test_persistence_off_records_nothing(
    servers: Servers, aws: AwsClients, tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    server = servers.start(data, *args, env=env)
    assert server.health()["features"]["persistence"] == "disabled"
    sqs = aws("sqs", server)
    queue = sqs.create_queue(QueueName="e2e-off")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="not kept")
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "not kept"  # the emulator works
    stderr = server.stop()
    assert "persistence off" in stderr
    assert "Restored" not in stderr
    assert not server.log_path.exists()
    assert not data.exists() or not any(data.iterdir())


@pytest.mark.parametrize(
    ("args", "env", "name", "valid"),
    [
        ((), {"REPLAY_FSYNC": "sometimes"}, "REPLAY_FSYNC", ("always", "everysec", "no")),
        (("--fsync", "never"), {"REPLAY_FSYNC": "always"}, "--fsync", ("always", "everysec", "no")),
        ((), {"PERSISTENCE": "maybe"}, "PERSISTENCE", ("1", "true", "yes", "on", "0", "false", "no", "off")),
        ((), {"PERSISTENCE_BACKEND": "sqlite"}, "PERSISTENCE_BACKEND", ("replay", "snapshot")),
        (("--backend", "pickle"), {}, "--backend", ("replay", "snapshot")),
        (
            (),
            {"SNAPSHOT_SAVE_STRATEGY": "hourly"},
            "SNAPSHOT_SAVE_STRATEGY",
            ("ON_REQUEST", "ON_SHUTDOWN", "SCHEDULED", "MANUAL"),
        ),
    ],
    ids=["REPLAY_FSYNC", "--fsync", "PERSISTENCE", "PERSISTENCE_BACKEND", "--backend", "SNAPSHOT_SAVE_STRATEGY"],
)
def test_invalid_configuration_exits_2_with_one_line(
    servers: Servers,
    tmp_path: Path,
    args: tuple[str, ...],
    env: dict[str, str],
    name: str,
    valid: tuple[str, ...],
) -> None:
    data = tmp_path / "data"
    done = servers.run(data, *args, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"replay: error: invalid value for {name}: ")
    listed = lines[0].split("valid values:", 1)[1]
    assert [value.strip(" )") for value in listed.split(",")] == list(valid)
    assert not data.exists()
