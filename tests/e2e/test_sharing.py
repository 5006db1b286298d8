"""Portable archives end to end: real `replay serve` processes, boto3 over HTTP, moto as the S3 endpoint.

A state made on one server is exported (while it runs, or after it stopped), carried as one file or through
an S3 bucket, imported into a fresh data dir and served by another server on another port: boto3 reads the
same queues, messages, objects, items and topics back.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ACCESS_KEY, SECRET_KEY, AwsClients, ReplayServer, Servers
from conftest import replay_cli as run_replay

pytestmark = pytest.mark.e2e

KEY = "team-key-0123456789abcdef"
BODY = os.urandom(100_000)  # above the 64 KiB asset threshold: travels as an asset file


def replay_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m replay ARGS`` with the test credentials (for S3 transfers)."""
    return run_replay(
        *args, cwd=cwd, env={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, **(env or {})}
    )


def make_state(aws: AwsClients, server: ReplayServer) -> None:
    sqs, s3, dynamodb, sns = (aws(name, server) for name in ("sqs", "s3", "dynamodb", "sns"))
    queue = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    for body in ("first", "second"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    s3.create_bucket(Bucket="assets")
    s3.put_object(Bucket="assets", Key="big.bin", Body=BODY)
    s3.put_object(Bucket="assets", Key="dir/small ü.txt", Body=b"small")
    dynamodb.create_table(
        TableName="users",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="users", Item={"id": {"S": "u1"}, "name": {"S": "Ada"}})
    sns.create_topic(Name="events")


def fingerprint(aws: AwsClients, server: ReplayServer) -> dict[str, Any]:
    sqs, s3, dynamodb, sns = (aws(name, server) for name in ("sqs", "s3", "dynamodb", "sns"))
    queue = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    objects = s3.list_objects_v2(Bucket="assets")["Contents"]
    return {
        "queues": [url.rsplit("/", 1)[-1] for url in sqs.list_queues()["QueueUrls"]],
        "visibility": attributes["VisibilityTimeout"],
        "messages": attributes["ApproximateNumberOfMessages"],
        "objects": sorted((item["Key"], item["Size"], item["ETag"]) for item in objects),
        "big": s3.get_object(Bucket="assets", Key="big.bin")["Body"].read() == BODY,
        "items": dynamodb.scan(TableName="users")["Items"],
        "topics": [topic["TopicArn"] for topic in sns.list_topics()["Topics"]],
    }


def test_replay_state_shared_through_s3_from_a_running_server(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    endpoint = servers.start(tmp_path / "s3-endpoint", "--no-persistence")  # moto, as the team's S3
    aws("s3", endpoint).create_bucket(Bucket="team-state")
    mine = servers.start(tmp_path / "mine")
    make_state(aws, mine)
    expected = fingerprint(aws, mine)

    exported = replay_cli(
        "export", "s3://team-state/main.replay", "--data-dir", str(mine.data_dir), "--endpoint-url",
        endpoint.endpoint, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert f'"source":"{mine.endpoint}"' in exported.stdout and '"kind":"replay"' in exported.stdout
    mine.stop()

    theirs = tmp_path / "elsewhere" / "volume"
    imported = replay_cli(
        "import", "s3://team-state/main.replay", "--data-dir", str(theirs), "--endpoint-url", endpoint.endpoint,
        cwd=tmp_path,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert f"serve it with: replay serve --data-dir {theirs}" in imported.stdout
    restored = servers.start(theirs, avoid_ports=[mine.port])
    assert restored.port != mine.port
    assert fingerprint(aws, restored) == expected
    health = restored.health()["persistence"]
    assert health["failed"] == 0 and health["diverged"] == 0


def test_snapshot_state_exported_live_survives_a_kill_and_imports_with_the_key(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    mine = servers.start(tmp_path / "mine", "--backend", "snapshot", "--save-strategy", "MANUAL")
    make_state(aws, mine)
    expected = fingerprint(aws, mine)
    archive = tmp_path / "team.replay"
    exported = replay_cli("export", str(archive), "--data-dir", str(mine.data_dir), cwd=tmp_path, env={
        "REPLAY_ARCHIVE_KEY": KEY})  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "(snapshot archive: " in exported.stdout and ", signed) to " in exported.stdout
    mine.kill()  # MANUAL never saved: the archive holds the live state the files do not
    assert not (mine.data_dir / "state" / "api_states").exists()

    untrusted = replay_cli("import", str(archive), "--data-dir", str(tmp_path / "nokey"), cwd=tmp_path)
    assert untrusted.returncode == 1 and "(untrusted)" in untrusted.stderr
    assert untrusted.stderr.count("\n") == 1 and not (tmp_path / "nokey").exists()

    theirs = tmp_path / "theirs"
    imported = replay_cli("import", str(archive), "--data-dir", str(theirs), cwd=tmp_path, env={
        "REPLAY_ARCHIVE_KEY": KEY})  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    restored = servers.start(theirs, "--backend", "snapshot", "--load-strategy", "ON_STARTUP")
    assert fingerprint(aws, restored) == expected


def test_a_checkpointed_data_dir_exports_offline_after_a_stop(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    mine = servers.start(tmp_path / "mine", "--checkpoint-percentage", "100")
    make_state(aws, mine)
    expected = fingerprint(aws, mine)
    mine.stop()  # takes a checkpoint at shutdown: the log holds only its header now
    assert (mine.data_dir / "checkpoints" / "MANIFEST.json").exists()

    archive = tmp_path / "offline.replay"
    exported = replay_cli("export", str(archive), "--data-dir", str(mine.data_dir), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"exported {mine.data_dir} (replay archive: ")
    assert not (mine.data_dir / ".replay.lock").exists()
    described = replay_cli("inspect", str(archive), cwd=tmp_path)
    assert described.returncode == 0 and "replay archive: " in described.stdout

    theirs = tmp_path / "theirs"
    assert replay_cli("import", str(archive), "--data-dir", str(theirs), cwd=tmp_path).returncode == 0
    restored = servers.start(theirs)
    assert fingerprint(aws, restored) == expected
