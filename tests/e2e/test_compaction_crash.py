"""A process killed (SIGKILL) after each step of `replay compact`'s rewrite leaves a log that restores the full state.

A real moto history (queues, messages and objects created, used and deleted) is recorded in-process; a child
process compacts the log in place and kills itself after the chosen step.  Replaying what is left must build
the same state as replaying the original log, and the next open of the log removes what the child left.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replay.config import FsyncPolicy
from replay.record.entry import Request
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.reader import LogReader
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator, moto_emulator
from replay.storage.rewrite import COMPACTION_STEPS

pytestmark = pytest.mark.e2e

LOG_NAME = "recorded_api_calls.json"
ACCOUNT = "123456789012"
SCOPE = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host"

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from replay.config import FsyncPolicy
    from replay.record.log import CallLog
    from replay.storage.rewrite import compact_in_place

    def step(name):
        if name == sys.argv[2]:
            os.kill(os.getpid(), signal.SIGKILL)

    with CallLog(Path(sys.argv[1]), FsyncPolicy.NO) as log:
        compact_in_place(log, step=step)
    """
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = moto_emulator()
    yield emulator
    assert emulator.reset is not None
    emulator.reset()


def send(transport: WSGITransport, service: str, method: str, path: str, body: bytes, **headers: str) -> None:
    all_headers = [("Host", "localhost:4566"), ("Authorization", SCOPE.format(service=service)), *headers.items()]
    answer = transport.send(Request(method, path, "", all_headers, body))
    assert answer.ok, answer.body


def sqs(transport: WSGITransport, operation: str, **document: Any) -> None:
    body = json.dumps(document).encode()
    headers = {"X-Amz-Target": f"AmazonSQS.{operation}", "Content-Type": "application/x-amz-json-1.0"}
    send(transport, "sqs", "POST", "/", body, **headers)


def record(emulator: Emulator, path: Path) -> None:
    assert emulator.reset is not None
    emulator.reset()
    with CallLog(path, FsyncPolicy.NO) as log:
        transport = WSGITransport(RecordingMiddleware(emulator.app, log, seeder=emulator.seeder))
        for number in range(4):
            name = f"q{number}"
            url = f"http://localhost:4566/{ACCOUNT}/{name}"
            sqs(transport, "CreateQueue", QueueName=name)
            sqs(transport, "SendMessage", QueueUrl=url, MessageBody=f"m{number}")
            if number % 2:
                sqs(transport, "DeleteQueue", QueueUrl=url)
        send(transport, "s3", "PUT", "/crash-bucket", b"")
        for version in range(3):
            send(transport, "s3", "PUT", "/crash-bucket/key", f"version {version}".encode())
        send(transport, "s3", "PUT", "/crash-bucket/gone", b"x")
        send(transport, "s3", "DELETE", "/crash-bucket/gone", b"")


def state(emulator: Emulator, path: Path) -> Any:
    """Replay ``path`` into an empty moto and read what a client could see."""
    from moto.backends import get_backend

    assert emulator.reset is not None
    emulator.reset()
    report = Replayer(WSGITransport(emulator.app), seeder=emulator.seeder).replay(path)
    assert report.failures == [] and report.divergences == []
    queues = get_backend("sqs")[ACCOUNT]["us-east-1"].queues  # type: ignore[call-overload]
    bucket = get_backend("s3")[ACCOUNT]["global"].buckets["crash-bucket"]  # type: ignore[call-overload]
    return (
        sorted((name, [(m.id, m.body) for m in queue._messages]) for name, queue in queues.items()),
        sorted((key, value.etag) for key, value in bucket.keys.items()),
    )


@pytest.mark.parametrize("step", COMPACTION_STEPS)
def test_a_kill_after_each_step_of_a_compaction_restores_the_full_state(
    emulator: Emulator, tmp_path: Path, step: str
) -> None:
    original = tmp_path / "original" / LOG_NAME
    original.parent.mkdir()
    record(emulator, original)
    expected = state(emulator, original)
    log = tmp_path / "data" / LOG_NAME
    log.parent.mkdir()
    shutil.copy(original, log)

    child = subprocess.run([sys.executable, "-c", CHILD, str(log), step], capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    left = sorted(p.name for p in log.parent.iterdir())
    assert len(left) == 2 and left[0].startswith(f".{LOG_NAME}.")  # the child's temporary file is still there

    calls = sum(1 for _ in LogReader(log))
    if step == "compacted":
        assert log.read_bytes() == original.read_bytes()  # not rewritten yet
    else:
        assert calls < sum(1 for _ in LogReader(original))  # rewritten, compacted
    assert state(emulator, log) == expected

    with CallLog(log, FsyncPolicy.NO):  # the next process to open the log clears what the dead one left
        pass
    assert [p.name for p in log.parent.iterdir()] == [LOG_NAME]
