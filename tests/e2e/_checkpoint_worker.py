"""A process that records into a data dir and takes checkpoints; the crash tests kill it at a chosen step.

Usage::

    python _checkpoint_worker.py record DATA_DIR KILL_STEP   # prints the state fingerprint, then dies at KILL_STEP
    python _checkpoint_worker.py restore DATA_DIR            # prints the fingerprint after a restore, then
                                                             # checkpoints, restores again and prints it again

Calls go in-process through the recording middleware into moto (WSGI, no HTTP), as ``replay serve`` sends
them.  The fingerprint reads state without changing it: SQS queue attributes and message bodies (from moto's
queue objects: a receive would change them), S3 object versions and bodies, DynamoDB items.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from replay.backends.record_replay import CheckpointPolicy, RecordReplayBackend
from replay.config import FsyncPolicy
from replay.record.entry import Request
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator, moto_emulator

ACCOUNT = "123456789012"
SCOPE = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
)


class Client:
    def __init__(self, app: Any) -> None:
        self.transport = WSGITransport(app)

    def send(self, service: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        all_headers = [("Host", "localhost:4566"), ("Authorization", SCOPE.format(service=service)), *headers.items()]
        query = ""
        if "?" in path:
            path, query = path.split("?", 1)
        response = self.transport.send(Request(method, path, query, all_headers, body))
        assert response.ok, (service, path, response.status, response.body[:300])
        return response.body

    def json(self, service: str, target: str, document: dict[str, Any]) -> Any:
        body = self.send(
            service,
            "POST",
            "/",
            {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"},
            json.dumps(document).encode(),
        )
        return json.loads(body) if body else {}


def sqs(client: Client, operation: str, **document: Any) -> Any:
    return client.json("sqs", f"AmazonSQS.{operation}", document)


def dynamodb(client: Client, operation: str, **document: Any) -> Any:
    return client.json("dynamodb", f"DynamoDB_20120810.{operation}", document)


def workload(client: Client, phase: int) -> None:
    """Deterministic calls: phase 0 builds, phase 1 changes and deletes some of it."""
    if phase == 0:
        for name in ("jobs", "scratch"):
            sqs(client, "CreateQueue", QueueName=name)
        for number in range(6):
            sqs(client, "SendMessage", QueueUrl=f"http://localhost:4566/{ACCOUNT}/jobs", MessageBody=f"job-{number}")
        client.send("s3", "PUT", "/bucket", {})
        client.send("s3", "PUT", "/bucket/big", {}, b"B" * (100 * 1024))  # an asset file in snapshots
        client.send("s3", "PUT", "/bucket/small", {}, b"small")
        dynamodb(
            client,
            "CreateTable",
            TableName="items",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for number in range(10):
            dynamodb(client, "PutItem", TableName="items", Item={"id": {"S": f"i{number}"}, "n": {"N": str(number)}})
        return
    url = f"http://localhost:4566/{ACCOUNT}/jobs"
    received = sqs(client, "ReceiveMessage", QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=0)
    for message in received.get("Messages", []):
        sqs(client, "DeleteMessage", QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs(client, "DeleteQueue", QueueUrl=f"http://localhost:4566/{ACCOUNT}/scratch")
    client.send("s3", "PUT", "/bucket/small", {}, b"small, overwritten")
    client.send("s3", "PUT", "/bucket/big2", {}, b"C" * (80 * 1024))
    client.send("s3", "DELETE", "/bucket/big", {})
    for number in range(0, 10, 3):
        dynamodb(client, "DeleteItem", TableName="items", Key={"id": {"S": f"i{number}"}})
    dynamodb(client, "PutItem", TableName="items", Item={"id": {"S": "i1"}, "n": {"N": "100"}})


def fingerprint(client: Client) -> dict[str, Any]:
    from moto.backends import get_backend

    queues = {}
    for name, queue in sorted(get_backend("sqs")[ACCOUNT]["us-east-1"].queues.items()):  # type: ignore[call-overload]
        queues[name] = {
            "messages": [(m.id, m.body, m.receipt_handle) for m in queue._messages],
            "arn": queue.queue_arn,
            "created": queue.created_timestamp,
        }
    listing = client.send("s3", "GET", "/bucket?versions", {}).decode()
    objects = {
        key: hashlib.sha256(client.send("s3", "GET", f"/bucket/{key}", {})).hexdigest() for key in ("small", "big2")
    }
    items = dynamodb(client, "Scan", TableName="items")["Items"]
    return {
        "sqs": queues,
        "s3": {"listing": listing, "objects": objects},
        "dynamodb": sorted(items, key=lambda item: item["id"]["S"]),
    }


def backend(emulator: Emulator, data_dir: Path, step: Any = None) -> RecordReplayBackend:
    return RecordReplayBackend(
        emulator.app,
        data_dir / "recorded_api_calls.json",
        FsyncPolicy.ALWAYS,
        seeder=emulator.seeder,
        adapter=emulator.adapter,
        policy=CheckpointPolicy(0),  # checkpoints only when the worker says
        reset=emulator.reset,
        step=step,
    )


def emit(label: str, document: Any) -> None:
    sys.stdout.write(json.dumps({label: document}, sort_keys=True) + "\n")
    sys.stdout.flush()


def record(data_dir: Path, kill_step: str) -> None:
    emulator = moto_emulator()
    seen: list[str] = []

    def step(name: str) -> None:
        seen.append(name)
        if name == kill_step and seen.count(name) == 2:  # in the second checkpoint
            os.kill(os.getpid(), signal.SIGKILL)

    persisted = backend(emulator, data_dir, step)
    persisted.restore()
    client = Client(persisted.wrap(emulator.app))
    workload(client, 0)
    persisted.checkpoint()  # a first checkpoint, so the killed one has a predecessor to replace
    workload(client, 1)
    emit("fingerprint", fingerprint(Client(emulator.app)))
    persisted.checkpoint()
    emit("finished", True)
    persisted.close()


def restore(data_dir: Path) -> None:
    emulator = moto_emulator()
    persisted = backend(emulator, data_dir)
    persisted.restore()
    emit("fingerprint", fingerprint(Client(emulator.app)))
    emit("loaded", persisted.loaded)
    persisted.checkpoint()  # the data dir the crash left is one a checkpoint can be taken from
    persisted.close()
    emulator.reset()
    again = backend(emulator, data_dir)
    again.restore()
    emit("again", fingerprint(Client(emulator.app)))
    again.close()


if __name__ == "__main__":
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "record":
        record(directory, sys.argv[3])
    else:
        restore(directory)
