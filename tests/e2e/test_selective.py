"""`replay serve --services ... --scope infrastructure` over real HTTP: what comes back after a restart, and what not.

Each test makes the same state with boto3 (an SQS queue with messages, one of them in flight, an S3
bucket with objects, a DynamoDB table with items), stops the server (kill -9, or SIGTERM with the
checkpoint or the snapshot save it takes), starts it again and checks that the queue and the bucket
are back with their configuration but empty, and that the table, of a service not persisted, is gone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from replay.record.reader import LogReader
from replay.storage.checkpoint import Checkpoint, read_manifest

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = pytest.mark.e2e

INFRASTRUCTURE = ("--scope", "infrastructure")
LARGE = bytes(range(256)) * 400  # 100 KiB: a full dump would keep it as an asset file
KEPT_OPERATIONS = {
    ("sqs", "CreateQueue"),
    ("sqs", "TagQueue"),
    ("s3", "CreateBucket"),
    ("s3", "PutBucketVersioning"),
    ("s3", "PutBucketTagging"),
}


def make_state(aws: AwsClients, server: ReplayServer) -> None:
    sqs, s3, dynamodb = aws("sqs", server), aws("s3", server), aws("dynamodb", server)
    queue = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    sqs.tag_queue(QueueUrl=queue, Tags={"team": "e2e"})
    for number in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=f"message {number}")
    assert sqs.receive_message(QueueUrl=queue, VisibilityTimeout=600)["Messages"]  # one in flight

    s3.create_bucket(Bucket="files")
    s3.put_bucket_versioning(Bucket="files", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket="files", Tagging={"TagSet": [{"Key": "team", "Value": "e2e"}]})
    s3.put_object(Bucket="files", Key="small.txt", Body=b"small")
    s3.put_object(Bucket="files", Key="large.bin", Body=LARGE)
    s3.put_object(Bucket="files", Key="small.txt", Body=b"second version")

    dynamodb.create_table(
        TableName="things",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="things", Item={"pk": {"S": "a"}})
    # served as usual meanwhile
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "2",
        "1",
    )
    assert len(s3.list_object_versions(Bucket="files")["Versions"]) == 3


def check_infrastructure_only(aws: AwsClients, server: ReplayServer) -> None:
    """The queue and the bucket with their configuration, without messages or objects; no table."""
    sqs, s3, dynamodb = aws("sqs", server), aws("s3", server), aws("dynamodb", server)
    queue = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "0",
    )
    assert sqs.list_queue_tags(QueueUrl=queue)["Tags"] == {"team": "e2e"}
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)

    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["files"]
    assert s3.get_bucket_versioning(Bucket="files")["Status"] == "Enabled"
    assert s3.get_bucket_tagging(Bucket="files")["TagSet"] == [{"Key": "team", "Value": "e2e"}]
    assert "Versions" not in s3.list_object_versions(Bucket="files")

    assert dynamodb.list_tables()["TableNames"] == []
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        dynamodb.describe_table(TableName="things")


def logged(path: Path) -> set[tuple[str, str]]:
    return {(entry.service, entry.operation) for _, entry in LogReader(path)} if path.exists() else set()


def test_replay_killed_keeps_only_infrastructure_of_selected_services(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = ("--services", "sqs,s3", *INFRASTRUCTURE, "--fsync", "always")
    first = servers.start(data, *settings)
    make_state(aws, first)
    first.kill()  # nothing at shutdown: what is there is what was recorded
    assert logged(first.log_path) == KEPT_OPERATIONS  # no SendMessage, ReceiveMessage, PutObject, no dynamodb

    second = servers.start(data, *settings, avoid_ports=[first.port])
    assert f"Restored {len(KEPT_OPERATIONS)} API calls from persistent file" in second.stderr()
    assert "persisting s3, sqs only, infrastructure only" in second.stderr()
    check_infrastructure_only(aws, second)
    second.stop()


def test_replay_checkpoint_at_shutdown_holds_no_data_plane_and_no_excluded_service(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = ("--services=-dynamodb", *INFRASTRUCTURE, "--checkpoint-percentage", "100")
    first = servers.start(data, *settings)
    make_state(aws, first)
    first.stop()  # SIGTERM: a checkpoint of the live state, which holds the messages and objects

    manifest = read_manifest(data)
    assert manifest is not None and {"sqs", "s3"} <= set(manifest.services)
    assert "dynamodb" not in manifest.services
    checkpoint = Checkpoint(data, manifest.checkpoint)
    assert not checkpoint.state("dynamodb").exists()
    assets = checkpoint.assets("s3")
    assert not assets.exists() or list(assets.iterdir()) == []  # the large body is not in it
    assert logged(checkpoint.base_log) == KEPT_OPERATIONS
    assert logged(data / "recorded_api_calls.json") == set()  # every call folded into the checkpoint

    second = servers.start(data, *settings, avoid_ports=[first.port])
    assert f"Loaded checkpoint {manifest.checkpoint} (" in second.stderr()
    check_infrastructure_only(aws, second)
    second.stop()


def test_snapshot_backend_saves_only_infrastructure_of_selected_services(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = ("--backend", "snapshot", "--services=-dynamodb", *INFRASTRUCTURE)
    first = servers.start(data, *settings)
    make_state(aws, first)
    first.stop()  # SIGTERM: the scheduled strategy saves what is dirty

    states = data / "state" / "api_states"
    assert {"sqs", "s3"} <= {path.name for path in states.iterdir()}
    assert not (states / "dynamodb").exists()
    assert not (data / "state" / "s3").exists() or list((data / "state" / "s3").iterdir()) == []

    second = servers.start(data, *settings, avoid_ports=[first.port])
    check_infrastructure_only(aws, second)
    second.stop()


def test_snapshot_on_request_killed_keeps_the_queue_empty(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = ("--backend", "snapshot", "--save-strategy", "ON_REQUEST", "--services", "sqs", *INFRASTRUCTURE)
    first = servers.start(data, *settings)
    sqs = aws("sqs", first)
    queue = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    saved = (data / "state" / "api_states" / "sqs" / "backend.state").stat().st_mtime_ns
    sqs.send_message(QueueUrl=queue, MessageBody="gone after the kill")
    assert (data / "state" / "api_states" / "sqs" / "backend.state").stat().st_mtime_ns == saved  # not saved for
    first.kill()

    second = servers.start(data, *settings, avoid_ports=[first.port])
    sqs = aws("sqs", second)
    queue = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (attributes["VisibilityTimeout"], attributes["ApproximateNumberOfMessages"]) == ("45", "0")
    second.stop()


def test_an_unknown_service_name_stops_the_start_with_close_names(servers: Servers, tmp_path: Path) -> None:
    done = servers.run(tmp_path / "data", "--services", "sqs,dynamdb")
    assert done.returncode == 2, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "invalid value" in line]
    assert "invalid value for --services: 'sqs,dynamdb' (unknown service 'dynamdb'; did you mean dynamodb" in line
    assert not (tmp_path / "data" / "recorded_api_calls.json").exists()


def test_scope_all_records_the_data_plane_as_before(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    first = servers.start(tmp_path / "data", "--scope", "all")
    sqs = aws("sqs", first)
    sqs.send_message(QueueUrl=sqs.create_queue(QueueName="q")["QueueUrl"], MessageBody="kept")
    first.stop()
    assert [json.loads(line)["operation"] for line in first.log_lines()] == ["CreateQueue", "SendMessage"]
    assert "persisting" not in first.stderr()
