"""When persistence fails, state-changing calls are refused (Redis's MISCONF), reads go on, and it heals by itself.

A real ``replay serve`` keeps its data dir on a small tmpfs (mounted here: the tests run as root, and are
skipped where mounting is not allowed); the disk fills up, or is remounted read-only, while clients call.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import tmpfs

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

FILLER = "filler.bin"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs, unmounted at the end."""
    with tmpfs(tmp_path / "disk", "3m") as mount:
        yield mount


def fill(disk: Path, leave: int) -> None:
    """Take all of the disk's free space but ``leave`` bytes, in a file that can be removed to free it."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / FILLER).write_bytes(b"\0" * max(0, free - leave))


def health(server: ReplayServer) -> dict[str, Any]:
    document: dict[str, Any] = requests.get(server.endpoint + "/_localstack/health", timeout=5).json()
    return document


def refused(call: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable", caught.value.response
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    return caught.value


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_full_disk_refuses_state_changes_keeps_reads_and_heals_when_space_returns(
    servers: Servers, aws: AwsClients, small_disk: Path
) -> None:
    data = small_disk / "volume"
    server = servers.start(data, "--fsync", "always")
    s3, sqs = aws("s3", server), aws("sqs", server)
    s3.create_bucket(Bucket="docs")
    fill(small_disk, leave=300_000)
    acknowledged = []
    with contextlib.suppress(ClientError):
        for number in range(40):
            s3.put_object(Bucket="docs", Key=f"doc-{number}", Body=("x" * 100_000).encode())
            acknowledged.append(f"doc-{number}")
    assert 0 < len(acknowledged) < 40, "the disk never filled up"
    failed_key = f"doc-{len(acknowledged)}"

    # refused before they reach the emulator: the queue is not made
    error = refused(lambda: sqs.create_queue(QueueName="later"))
    assert str(small_disk / "volume") in error.response["Error"]["Message"]
    refused(lambda: s3.put_object(Bucket="docs", Key="tiny", Body=b"1"))
    assert "QueueUrls" not in sqs.list_queues()  # reads go on
    assert len(s3.list_objects_v2(Bucket="docs")["Contents"]) >= len(acknowledged)
    document = health(server)
    assert document["features"]["persistence"] == "error"
    assert "No space left on device" in document["persistence"]["error"]["cause"]

    (small_disk / FILLER).unlink()  # space comes back: accepted again, without a restart
    wait_for(lambda: health(server)["features"]["persistence"] == "initialized")
    sqs.create_queue(QueueName="later")
    s3.put_object(Bucket="docs", Key="after", Body=b"after")
    stderr = server.stop()
    assert stderr.count("persistence failed for") == 1 and stderr.count("persistence works again") == 1, stderr
    assert "Traceback" not in stderr

    again = servers.start(data)
    s3 = aws("s3", again)
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="docs")["Contents"]}
    assert set(acknowledged) | {"after"} <= keys  # nothing acknowledged is lost
    assert failed_key not in keys and "tiny" not in keys  # nothing refused is there
    assert aws("sqs", again).get_queue_url(QueueName="later")["QueueUrl"].endswith("/later")


def test_a_write_error_other_than_a_full_disk_is_refused_the_same_way_and_heals(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    """EFBIG, through a file size limit set on the running server (``prlimit``): any error writing the log."""
    data = tmp_path / "volume"
    server = servers.start(data, "--fsync", "always")
    sqs = aws("sqs", server)
    sqs.create_queue(QueueName="before")
    limit = (data / "recorded_api_calls.json").stat().st_size + 100
    subprocess.run(["prlimit", f"--pid={server.proc.pid}", f"--fsize={limit}:unlimited"], check=True)
    try:
        refused(lambda: sqs.create_queue(QueueName="during"))
        refused(lambda: sqs.create_queue(QueueName="during-too"))
        document = health(server)
        assert document["features"]["persistence"] == "error"
        assert "File too large" in document["persistence"]["error"]["cause"]
        assert [url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]] == ["before", "during"]
    finally:
        subprocess.run(["prlimit", f"--pid={server.proc.pid}", "--fsize=unlimited:unlimited"], check=True)
    wait_for(lambda: health(server)["features"]["persistence"] == "initialized")
    sqs.create_queue(QueueName="after")
    server.stop()
    again = servers.start(data)
    names = sorted(url.rsplit("/", 1)[1] for url in aws("sqs", again).list_queues()["QueueUrls"])
    assert names == ["after", "before"]  # "during" took effect in memory only, and was never acknowledged


def test_the_snapshot_backend_refuses_state_changes_while_it_cannot_save(
    servers: Servers, aws: AwsClients, small_disk: Path
) -> None:
    data = small_disk / "volume"
    server = servers.start(data, "--backend", "snapshot", env={"SNAPSHOT_SAVE_STRATEGY": "ON_REQUEST"})
    sqs = aws("sqs", server)
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    fill(small_disk, leave=4096)
    refused(lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * 200_000))
    refused(lambda: sqs.send_message(QueueUrl=url, MessageBody="small"))
    document = health(server)
    assert (
        document["features"]["persistence"] == "error"
        and "could not save sqs" in document["persistence"]["error"]["cause"]
    )
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]  # reads go on
    (small_disk / FILLER).unlink()
    wait_for(lambda: health(server)["features"]["persistence"] == "initialized")
    sqs.send_message(QueueUrl=url, MessageBody="after")
    stderr = server.stop()
    assert "Traceback" not in stderr
