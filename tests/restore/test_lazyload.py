"""Saved state loaded on first use: a start checks a checkpoint's snapshots and loads each service when needed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from replay.backends.record_replay import CheckpointPolicy, RecordReplayBackend
from replay.config import FsyncPolicy
from replay.record.entry import Request
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator
from replay.storage.checkpoint import Checkpoint, read_manifest

ACCOUNT = "123456789012"
QUEUE = f"http://localhost:4566/{ACCOUNT}/jobs"


def scope(service: str) -> str:
    credential = f"AKIDEXAMPLE/20240101/us-east-1/{service}/aws4_request"
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=0"


def call(app: Any, service: str, target: str, expect_ok: bool = True, **document: Any) -> Any:
    headers = [
        ("Host", "localhost:4566"),
        ("Authorization", scope(service)),
        ("X-Amz-Target", target),
        ("Content-Type", "application/x-amz-json-1.0"),
    ]
    response = WSGITransport(app).send(Request("POST", "/", "", headers, json.dumps(document).encode()))
    if expect_ok:
        assert response.ok, response.body
    return response.status, json.loads(response.body or b"{}")


def sqs(app: Any, operation: str, **document: Any) -> Any:
    return call(app, "sqs", f"AmazonSQS.{operation}", **document)[1]


def dynamodb(app: Any, operation: str, **document: Any) -> Any:
    return call(app, "dynamodb", f"DynamoDB_20120810.{operation}", **document)[1]


def persisted(emulator: Emulator, data: Path, lazy: bool = True) -> RecordReplayBackend:
    backend = RecordReplayBackend(
        emulator.app,
        data / "recorded_api_calls.json",
        FsyncPolicy.NO,
        seeder=emulator.seeder,
        adapter=emulator.adapter,
        policy=CheckpointPolicy(0),
        reset=emulator.reset,
        lazy=lazy,
    )
    backend.restore()
    return backend


def restart(emulator: Emulator, data: Path, backend: RecordReplayBackend, lazy: bool = True) -> RecordReplayBackend:
    backend.close()
    assert emulator.reset is not None
    emulator.reset()
    return persisted(emulator, data, lazy)


def pending(backend: RecordReplayBackend) -> list[str]:
    return sorted(backend.pending.services()) if backend.pending is not None else []


def item(key: str) -> dict[str, Any]:
    return {"pk": {"S": key}, "payload": {"S": "x" * 100}}


def with_state(emulator: Emulator, data: Path) -> tuple[RecordReplayBackend, Any]:
    """A queue with one message and a table (with a stream) with one item, folded into a checkpoint."""
    backend = persisted(emulator, data)
    app = backend.wrap(emulator.app)
    sqs(app, "CreateQueue", QueueName="jobs")
    sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="first")
    dynamodb(
        app,
        "CreateTable",
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    dynamodb(app, "PutItem", TableName="orders", Item=item("a"))
    backend.checkpoint()
    return backend, app


def test_a_start_checks_the_snapshots_and_loads_each_service_on_its_first_call(
    fresh: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        backend = restart(fresh, data, backend)
    assert "checkpoints: saves run in a forked child (REPLAY_BGSAVE=fork)" in caplog.text
    assert {"sqs", "dynamodb"} <= set(pending(backend))
    assert backend.status()["loaded"]["pending"] == pending(backend)  # type: ignore[index]
    assert backend.status()["checkpoint"]["saves"] == "fork"  # type: ignore[index]
    app = backend.wrap(fresh.app)
    assert sqs(app, "ReceiveMessage", QueueUrl=QUEUE)["Messages"][0]["Body"] == "first"
    assert "sqs" not in pending(backend) and "dynamodb" in pending(backend)  # only what was needed
    assert "sqs" not in backend.status()["loaded"]["pending"]  # type: ignore[index]
    assert dynamodb(app, "GetItem", TableName="orders", Key={"pk": {"S": "a"}})["Item"] == item("a")
    assert "dynamodb" not in pending(backend)
    backend.close()


def test_another_service_reading_a_pending_one_loads_it_first(fresh: Emulator, tmp_path: Path) -> None:
    """DynamoDB Streams reads DynamoDB's tables: the adapter's hooks load DynamoDB before it does."""
    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    backend = restart(fresh, data, backend)
    app = backend.wrap(fresh.app)
    assert "dynamodb" in pending(backend)
    _status, streams = call(app, "dynamodb", "DynamoDBStreams_20120810.ListStreams", TableName="orders")
    assert [stream["TableName"] for stream in streams["Streams"]] == ["orders"]
    assert "dynamodb" not in pending(backend)
    backend.close()


def test_a_checkpoint_keeps_the_state_of_services_never_loaded(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    for _ in range(2):  # twice: the second checkpoint links from one that linked too
        backend = restart(fresh, data, backend)
        app = backend.wrap(fresh.app)
        sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="more")
        assert "dynamodb" in pending(backend)
        previous = read_manifest(data)
        result = backend.checkpoint()
        assert previous is not None and "dynamodb" in result.services
        old, new = Checkpoint(data, previous.checkpoint), Checkpoint(data, result.name)
        assert not old.directory.exists()  # the old checkpoint is gone ...
        assert new.state("dynamodb").read_bytes().startswith(b"REPLAY-SNAPSHOT\n")  # ... its file lives on
        assert backend.pending is not None and "dynamodb" in backend.pending.services()
    # still pending after two checkpoints: loaded from the newest one's file
    assert dynamodb(app, "GetItem", TableName="orders", Key={"pk": {"S": "a"}})["Item"] == item("a")
    backend = restart(fresh, data, backend)
    app = backend.wrap(fresh.app)
    assert dynamodb(app, "GetItem", TableName="orders", Key={"pk": {"S": "a"}})["Item"] == item("a")
    assert [m["Body"] for m in sqs(app, "ReceiveMessage", QueueUrl=QUEUE, MaxNumberOfMessages=10)["Messages"]] == [
        "first",
        "more",
        "more",
    ]
    backend.close()


def test_a_reset_drops_what_is_still_pending(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    backend = restart(fresh, data, backend)
    app = backend.wrap(fresh.app)
    reset = WSGITransport(app).send(Request("POST", "/moto-api/reset", "", [("Host", "localhost:4566")], b""))
    assert reset.ok and pending(backend) == []
    assert sqs(app, "ListQueues").get("QueueUrls", []) == []  # the reset state, not the saved one
    backend.checkpoint()
    backend = restart(fresh, data, backend)
    app = backend.wrap(fresh.app)
    assert sqs(app, "ListQueues").get("QueueUrls", []) == []
    status, answer = call(app, "dynamodb", "DynamoDB_20120810.DescribeTable", expect_ok=False, TableName="orders")
    assert status == 400 and "ResourceNotFoundException" in json.dumps(answer)
    backend.close()


def test_a_snapshot_changed_after_the_start_is_refused_never_served_empty(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    backend = restart(fresh, data, backend)
    app = backend.wrap(fresh.app)
    manifest = read_manifest(data)
    assert manifest is not None
    state = Checkpoint(data, manifest.checkpoint).state("dynamodb")
    state.write_bytes(state.read_bytes()[:-1] + b"!")
    status, answer = call(app, "dynamodb", "DynamoDB_20120810.GetItem", expect_ok=False, TableName="orders", Key={})
    assert status == 500 and "refused (corrupt)" in answer["message"] and str(state) in answer["message"]
    assert "dynamodb" in pending(backend)  # still pending: a fixed file would load
    backend.close()


def test_load_strategy_on_startup_loads_every_service_at_start(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    backend = restart(fresh, data, backend, lazy=False)
    assert backend.pending is None
    from moto.backends import get_backend

    tables = get_backend("dynamodb")[ACCOUNT]["us-east-1"].tables  # type: ignore[call-overload]
    assert "orders" in tables
    backend.close()


def test_a_stopped_backend_leaves_nothing_to_load_later(fresh: Emulator, tmp_path: Path) -> None:
    """Closing hands nothing of its data dir to later users of the process's moto (tests, the plugin)."""
    from replay.adapters import moto as moto_adapter

    data = tmp_path / "data"
    backend, _app = with_state(fresh, data)
    backend = restart(fresh, data, backend)
    assert pending(backend)
    backend.close()
    assert moto_adapter._DEFERRED == {}
    assert os.listdir(data / "checkpoints")  # what is pending was folded into the shutdown's checkpoint
