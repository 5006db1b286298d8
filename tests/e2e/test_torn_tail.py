"""A log cut short by a crash still starts; a log corrupt in the middle refuses to, untouched."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = pytest.mark.e2e

LOG_NAME = "recorded_api_calls.json"
BINARY = bytes(range(256))
MESSAGES = ["first ü", "second €", "third +&="]
OBJECTS = {"a ü+b.bin": BINARY * 8, "plain.txt": b"plain"}


@pytest.fixture(scope="module")
def recorded_log(module_servers: Servers, module_aws: AwsClients, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a call log written by a real server: a queue with messages, a bucket with objects."""
    data = tmp_path_factory.mktemp("recorded") / "data"
    server = module_servers.start(data)
    sqs, s3 = module_aws("sqs", server), module_aws("s3", server)
    queue = sqs.create_queue(QueueName="e2e-torn")["QueueUrl"]
    for body in MESSAGES:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    s3.create_bucket(Bucket="e2e-torn")
    for key, body in OBJECTS.items():
        s3.put_object(Bucket="e2e-torn", Key=key, Body=body)
    server.stop()
    log = server.log_path.read_bytes()
    assert log.count(b"\n") == 7 and log.endswith(b"\n")
    return log


def write_log(tmp_path: Path, content: bytes) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / LOG_NAME).write_bytes(content)
    (data / LOG_NAME).chmod(0o600)
    return data


def messages_and_objects(aws: AwsClients, server: ReplayServer) -> tuple[list[str], dict[str, bytes]]:
    """The bodies in queue e2e-torn and the objects in bucket e2e-torn, read from ``server``."""
    sqs, s3 = aws("sqs", server), aws("s3", server)
    queue = sqs.get_queue_url(QueueName="e2e-torn")["QueueUrl"]
    bodies = [
        m["Body"]
        # VisibilityTimeout=0: looking leaves them visible (the receive is recorded: it returned messages)
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    ]
    objects = {
        obj["Key"]: s3.get_object(Bucket="e2e-torn", Key=obj["Key"])["Body"].read()
        for obj in s3.list_objects_v2(Bucket="e2e-torn").get("Contents", [])
    }
    return sorted(bodies), objects


def test_torn_last_entry_is_set_aside_and_appends_continue(
    servers: Servers, aws: AwsClients, tmp_path: Path, recorded_log: bytes
) -> None:
    lines = recorded_log.splitlines(keepends=True)
    torn = lines[-1][: len(lines[-1]) // 2]  # half an entry, no newline: a crash in mid-write
    assert not torn.endswith(b"\n")
    data = write_log(tmp_path, recorded_log + torn)
    log = data / LOG_NAME

    first = servers.start(data)
    stderr = first.stderr()
    assert f"Restored {len(lines)} API calls from persistent file: {log}\n" in stderr
    warnings = [line for line in stderr.splitlines() if " WARNING " in line and "torn" in line]
    assert any(f"{log}:{len(lines) + 1}:" in line for line in warnings), stderr
    # the torn bytes are moved aside (kept, private), the log itself is back to its complete entries
    [aside] = data.glob(LOG_NAME + ".torn-*")
    assert aside.read_bytes() == torn
    assert stat.S_IMODE(aside.stat().st_mode) == 0o600
    assert log.read_bytes() == recorded_log
    assert messages_and_objects(aws, first) == (sorted(MESSAGES), OBJECTS)

    sqs, s3 = aws("sqs", first), aws("s3", first)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="e2e-torn")["QueueUrl"], MessageBody="after the crash")
    s3.put_object(Bucket="e2e-torn", Key="after.bin", Body=BINARY[::-1])
    first.stop()
    after = log.read_bytes()
    assert after.startswith(recorded_log) and after.endswith(b"\n")
    appended = [json.loads(line)["operation"] for line in after.splitlines()[len(lines) :]]
    assert appended == ["ReceiveMessage", "SendMessage", "PutObject"]

    second = servers.start(data)
    stderr = second.stderr()
    assert f"Restored {len(lines) + 3} API calls from persistent file: {log}\n" in stderr
    assert "0 recorded API calls failed on replay" in stderr
    assert " WARNING " not in stderr
    assert messages_and_objects(aws, second) == (
        sorted([*MESSAGES, "after the crash"]),
        {**OBJECTS, "after.bin": BINARY[::-1]},
    )
    assert len(list(data.glob(LOG_NAME + ".torn-*"))) == 1


def test_complete_last_entry_without_newline_is_kept(
    servers: Servers, aws: AwsClients, tmp_path: Path, recorded_log: bytes
) -> None:
    lines = recorded_log.splitlines(keepends=True)
    data = write_log(tmp_path, recorded_log.removesuffix(b"\n"))  # the crash hit just before the newline
    log = data / LOG_NAME

    server = servers.start(data, env={"REPLAY_FSYNC": "no", "PERSISTENCE_BACKEND": "replay"})
    stderr = server.stderr()
    assert "backend replay, fsync no" in stderr
    assert f"Restored {len(lines)} API calls from persistent file: {log}\n" in stderr
    assert " WARNING " not in stderr
    assert not list(data.glob(LOG_NAME + ".torn-*"))
    sqs = aws("sqs", server)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="e2e-torn")["QueueUrl"], MessageBody="next")
    server.stop()
    after = log.read_bytes()
    assert after.startswith(recorded_log)  # a newline was put back before the next entry
    assert [json.loads(line)["operation"] for line in after.splitlines()[len(lines) :]] == ["SendMessage"]


@pytest.mark.parametrize(
    "damage",
    ["garbage", "torn-entry-in-the-middle", "json-but-not-an-entry", "missing-version"],
)
def test_malformed_line_in_the_middle_refuses_to_start_and_changes_nothing(
    servers: Servers, tmp_path: Path, recorded_log: bytes, damage: str
) -> None:
    lines = recorded_log.splitlines(keepends=True)
    bad = {
        "garbage": b"this is not JSON\n",
        "torn-entry-in-the-middle": lines[2][: len(lines[2]) // 2] + b"\n",
        "json-but-not-an-entry": b'{"v": 1, "service": "sqs", "operation": "SendMessage"}\n',
        "missing-version": json.dumps({k: v for k, v in json.loads(lines[2]).items() if k != "v"}).encode() + b"\n",
    }[damage]
    content = b"".join([*lines[:3], bad, *lines[3:]])  # the bad line is line 4 of 8
    data = write_log(tmp_path, content)
    log = data / LOG_NAME

    done = servers.run(data)
    assert done.returncode != 0
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("replay: error: "), done.stderr
    assert f"{log}:4:" in error, done.stderr
    assert "Restored" not in done.stderr
    assert log.read_bytes() == content
    assert sorted(path.name for path in data.iterdir()) == [LOG_NAME]
