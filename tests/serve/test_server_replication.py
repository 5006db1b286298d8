"""A server replicating while it serves: what reaches S3 (no secrets; large bodies; checkpoints), and a restore.

The server runs in this process over moto; the S3 store is a real ``moto_server`` process.
"""

from __future__ import annotations

import gzip
import io
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

from replay.config import Config
from replay.errors import ConfigError
from replay.serve.emulators import Emulator, moto_emulator
from replay.serve.server import Server
from replay.share.recovery import restore_replica

SESSION_TOKEN = "FwoGZXIvYXdzEReplicaTokenQ7vX9kLmN3pR5tW8yZ0bC2dF4gH6jK"
BIG = bytes(range(256)) * 8192  # 2 MiB: kept as a body file, shipped as an object of its own


def client(endpoint: str, service: str) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDREPLICA",
        aws_secret_access_key="replica-secret",
        aws_session_token=SESSION_TOKEN,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}),
    )


class Running:
    def __init__(self, config: Config, emulator: Emulator) -> None:
        self.server = Server(config, emulator)
        self.endpoint = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while requests.get(self.endpoint + "/_localstack/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def replication(self) -> dict[str, Any]:
        document: dict[str, Any] = requests.get(self.endpoint + "/_localstack/health", timeout=5).json()
        return dict(document["replication"] or {})

    def wait_shipped(self) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while True:
            state = self.replication()
            if state["state"] == "ok" and state["pending"] == 0 and state["uploaded"] > 0:
                time.sleep(0.3)  # one more round: nothing cut since
                again = self.replication()
                if again["pending"] == 0:
                    return again
            assert time.monotonic() < deadline, state
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def s3(replica_store: Any) -> Any:
    return replica_store


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emulator = moto_emulator()
    assert emulator.reset is not None
    emulator.reset()
    yield emulator
    emulator.reset()


def everything_in(s3: Any, prefix: str) -> dict[str, bytes]:
    """Every object of the replica, decompressed (segments) or unpacked (archives), by key."""
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="replicas", Prefix=prefix):
        for item in page.get("Contents", []):
            data = s3.get_object(Bucket="replicas", Key=item["Key"])["Body"].read()
            if item["Key"].endswith(".jsonl.gz"):
                data = gzip.decompress(data)
            elif item["Key"].endswith(".tar.gz"):
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    data = b"".join(
                        tar.extractfile(member).read()  # type: ignore[union-attr]
                        for member in tar.getmembers()
                        if member.isfile()
                    )
            found[item["Key"]] = data
    return found


def test_a_served_state_reaches_s3_without_secrets_and_comes_back(
    tmp_path: Path, s3: Any, s3_endpoint: str, emulator: Emulator
) -> None:
    url = "s3://replicas/served"
    config = Config.load(
        {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / "live",
            "checkpoint_percentage": 0,
            "replicate": url,
            "replicate_interval": "0.2s",
            "endpoint_url": s3_endpoint,
        }
    )
    live = Running(config, emulator)
    sqs, bucket = client(live.endpoint, "sqs"), client(live.endpoint, "s3")
    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="first")
    bucket.create_bucket(Bucket="photos")
    bucket.put_object(Bucket="photos", Key="big.bin", Body=BIG)
    shipped = live.wait_shipped()
    assert shipped["url"] == url and shipped["lag_seconds"] < 1.0
    live.server.backend.compact()  # a checkpoint: its calls go up as an archive
    bucket.put_object(Bucket="photos", Key="later.bin", Body=BIG[::-1])
    sqs.send_message(QueueUrl=queue, MessageBody="second")
    live.wait_shipped()
    info = requests.get(live.endpoint + "/_replay/info", timeout=5).json()
    assert info["replication"]["generation"] == shipped["generation"]
    live.stop()

    stored = everything_in(s3, "served/")
    kinds = {key.split("/")[3] for key in stored if key.count("/") >= 3}
    assert {"segments", "snapshots", "bodies"} <= kinds, sorted(stored)
    assert BIG in stored.values() and BIG[::-1] in stored.values()  # the large bodies, as objects of their own
    for key, data in stored.items():
        for secret in (SESSION_TOKEN.encode(), b"replica-secret", b"Signature="):
            assert secret not in data, (key, secret)

    restored = restore_replica(url, tmp_path / "restored", endpoint_url=s3_endpoint)
    assert restored.snapshot is not None and restored.segments >= 1
    assert emulator.reset is not None
    emulator.reset()
    again = Running(Config.load({"host": "127.0.0.1", "port": 0, "data_dir": tmp_path / "restored"}), emulator)
    try:
        sqs, bucket = client(again.endpoint, "sqs"), client(again.endpoint, "s3")
        assert bucket.get_object(Bucket="photos", Key="big.bin")["Body"].read() == BIG
        assert bucket.get_object(Bucket="photos", Key="later.bin")["Body"].read() == BIG[::-1]
        url_again = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url_again, MaxNumberOfMessages=10)["Messages"]]
        assert sorted(bodies) == ["first", "second"]
        assert again.replication() == {}  # not replicating: the health document says null
    finally:
        again.stop()


def test_replicating_into_the_server_itself_is_refused(tmp_path: Path, emulator: Emulator) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = Config.load(
        {
            "host": "127.0.0.1",
            "port": port,
            "data_dir": tmp_path / "live",
            "replicate": "s3://replicas/self",
            "endpoint_url": f"http://localhost:{port}",
        }
    )
    with pytest.raises(ConfigError, match="replicating into this one would record its own uploads"):
        Server(config, emulator)
    assert not (tmp_path / "live" / ".replay.lock").exists()  # nothing held after the refusal
