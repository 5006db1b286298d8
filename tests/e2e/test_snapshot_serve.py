"""`replay serve --backend snapshot` over real HTTP: restarts, strategies, kill -9, refusals."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from conftest import AwsClients, Servers

pytestmark = pytest.mark.e2e

SNAPSHOT = {"PERSISTENCE_BACKEND": "snapshot"}


def test_default_strategies_survive_a_restart_on_another_port(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = servers.start(data, env=SNAPSHOT)
    health = first.health()
    assert health["features"] == {"persistence": "initialized", "initScripts": "initialized"}
    assert (health["persistence"]["backend"], health["persistence"]["save_strategy"]) == ("snapshot", "SCHEDULED")
    sqs, s3, ddb = aws("sqs", first), aws("s3", first), aws("dynamodb", first)
    queue = sqs.create_queue(QueueName="snap")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="kept")
    s3.create_bucket(Bucket="snap-bucket")
    s3.put_bucket_versioning(Bucket="snap-bucket", VersioningConfiguration={"Status": "Enabled"})
    versions = [s3.put_object(Bucket="snap-bucket", Key="k ü", Body=body)["VersionId"] for body in (b"1", b"2")]
    ddb.create_table(
        TableName="snap",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="snap", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    first.stop()  # SIGTERM: the scheduled strategy saves what is dirty on the way out
    assert (data / "state" / "api_states" / "sqs" / "backend.state").exists()

    second = servers.start(data, env=SNAPSHOT, avoid_ports=[first.port])
    assert second.health()["persistence"]["loaded"] == []  # lazy: nothing loaded yet
    sqs, s3, ddb = aws("sqs", second), aws("s3", second), aws("dynamodb", second)
    assert (
        sqs.receive_message(QueueUrl=sqs.get_queue_url(QueueName="snap")["QueueUrl"])["Messages"][0]["Body"] == "kept"
    )
    listed = s3.list_object_versions(Bucket="snap-bucket")["Versions"]
    assert [v["VersionId"] for v in listed] == versions[::-1]
    assert s3.get_object(Bucket="snap-bucket", Key="k ü", VersionId=versions[0])["Body"].read() == b"1"
    assert ddb.get_item(TableName="snap", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    assert set(second.health()["persistence"]["loaded"]) >= {"sqs", "s3", "dynamodb"}


def test_on_request_loses_no_acknowledged_call_to_kill_9(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = servers.start(data, env={**SNAPSHOT, "SNAPSHOT_SAVE_STRATEGY": "ON_REQUEST"})
    sqs = aws("sqs", first)
    queue = sqs.create_queue(QueueName="acked")["QueueUrl"]
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        number = 0
        while not stop.is_set():
            body = f"m{number}"
            try:
                sqs.send_message(QueueUrl=queue, MessageBody=body)
            except (BotoCoreError, ClientError):
                return
            acknowledged.append(body)
            number += 1

    sender = threading.Thread(target=send)
    sender.start()
    while len(acknowledged) < 20:
        threading.Event().wait(0.05)
    first.kill()
    stop.set()
    sender.join(30)

    second = servers.start(data, env=SNAPSHOT, avoid_ports=[first.port])
    sqs = aws("sqs", second)
    queue = sqs.get_queue_url(QueueName="acked")["QueueUrl"]
    restored: set[str] = set()
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
        "Messages", []
    ):
        restored.update(m["Body"] for m in batch)
    assert set(acknowledged) <= restored


def test_on_shutdown_survives_sigterm_and_a_foreign_snapshot_is_refused(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {**SNAPSHOT, "SNAPSHOT_SAVE_STRATEGY": "ON_SHUTDOWN", "SNAPSHOT_LOAD_STRATEGY": "ON_STARTUP"}
    first = servers.start(data, env=env)
    aws("sqs", first).create_queue(QueueName="shutdown")
    assert not (data / "state" / "api_states" / "sqs").exists()  # nothing written before the shutdown
    first.stop()
    second = servers.start(data, env=env, avoid_ports=[first.port])
    assert "sqs" in second.health()["persistence"]["loaded"]  # loaded before the first request
    assert aws("sqs", second).get_queue_url(QueueName="shutdown")["QueueUrl"].endswith("/shutdown")
    second.stop()

    other = tmp_path / "other"
    shutil.copytree(data / "state" / "api_states", other / "state" / "api_states")  # signed by data's key
    refused = servers.run(other, env=env)
    assert refused.returncode == 1
    assert "refused (foreign)" in refused.stderr
    assert str(other / "state" / "api_states" / "sqs" / "backend.state") in refused.stderr


def test_state_endpoints_save_load_and_reset(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    import orjson
    import requests

    data = tmp_path / "data"
    server = servers.start(data, env={**SNAPSHOT, "SNAPSHOT_SAVE_STRATEGY": "MANUAL"})
    base = f"{server.endpoint}/_localstack/state"
    sqs = aws("sqs", server)
    sqs.create_queue(QueueName="endpoint")
    aws("s3", server).create_bucket(Bucket="endpoint-bucket")
    assert not (data / "state" / "api_states" / "sqs").exists()  # MANUAL: nothing yet

    answer = requests.post(f"{base}/save", timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in answer.content.splitlines()]
    assert {"service": "sqs", "status": "ok"} in lines and {"service": "s3", "status": "ok"} in lines
    assert all(line["status"] == "ok" for line in lines)
    one = requests.post(f"{base}/sqs/save", timeout=30)
    assert [orjson.loads(line) for line in one.content.splitlines()] == [{"service": "sqs", "status": "ok"}]

    unknown = requests.post(f"{base}/no-such-service/save", timeout=30)
    assert unknown.status_code == 404 and "unknown service 'no-such-service'" in unknown.json()["message"]
    assert requests.get(f"{base}/save", timeout=30).status_code == 405

    assert requests.post(f"{base}/reset", timeout=30).json() == {"status": "ok"}
    assert sqs.list_queues().get("QueueUrls") is None  # emptied
    loaded = requests.post(f"{base}/sqs/load", timeout=30)
    assert [orjson.loads(line) for line in loaded.content.splitlines()] == [{"service": "sqs", "status": "ok"}]
    assert sqs.get_queue_url(QueueName="endpoint")["QueueUrl"].endswith("/endpoint")  # back from the snapshot


def test_state_endpoints_on_the_replay_backend(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    import orjson
    import requests

    data = tmp_path / "data"
    first = servers.start(data)
    base = f"{first.endpoint}/_localstack/state"
    aws("sqs", first).create_queue(QueueName="before-reset")
    saved = [orjson.loads(line) for line in requests.post(f"{base}/save", timeout=30).content.splitlines()]
    # with moto's state adapter, saving takes a checkpoint: one line per service in it
    assert {"service": "sqs", "status": "ok"} in saved and all(line["status"] == "ok" for line in saved)
    assert (data / "checkpoints" / "MANIFEST.json").exists()
    [loaded] = [orjson.loads(line) for line in requests.post(f"{base}/load", timeout=30).content.splitlines()]
    assert loaded["status"] == "error" and "replaying its call log" in loaded["message"]
    assert requests.post(f"{base}/reset", timeout=30).json() == {"status": "ok"}
    aws("sqs", first).create_queue(QueueName="after-reset")
    first.stop()
    second = servers.start(data, avoid_ports=[first.port])  # the reset was recorded, and replayed in order
    urls = aws("sqs", second).list_queues()["QueueUrls"]
    assert [url.rsplit("/", 1)[1] for url in urls] == ["after-reset"]
