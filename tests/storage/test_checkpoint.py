"""Checkpoints: the manifest, where the calls since a checkpoint start, and checkpoints of moto in-process."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replay.backends.record_replay import CheckpointPolicy, RecordReplayBackend
from replay.config import FsyncPolicy
from replay.errors import CheckpointError, QuiesceTimeoutError
from replay.record.entry import Request
from replay.record.log import encode_header, read_header
from replay.record.reader import LogReader, Segment
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator
from replay.storage.checkpoint import (
    MANIFEST_NAME,
    Checkpoint,
    Manifest,
    history,
    read_manifest,
    remove_stale,
    tail_start,
    write_manifest,
)

ACCOUNT = "123456789012"
SCOPE = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"


def manifest(name: str = "000002", after: str | None = "000001", offset: int = 10) -> Manifest:
    return Manifest(name, ("sqs",), 3, 7, 100, 1.0, {"moto": "5"}, after, offset)


# --- the manifest and the log's tail --------------------------------------------------------


def test_manifest_round_trips_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    write_manifest(tmp_path, manifest())
    assert read_manifest(tmp_path) == manifest()
    path = tmp_path / "checkpoints" / MANIFEST_NAME
    document = json.loads(path.read_bytes())
    for broken, match in (
        (b"{nope", "not JSON"),
        (json.dumps({**document, "format": 99}).encode(), "format 99"),
        (json.dumps({**document, "checkpoint": "../x"}).encode(), "malformed manifest"),
        (json.dumps({k: v for k, v in document.items() if k != "services"}).encode(), "malformed manifest"),
    ):
        path.write_bytes(broken)
        with pytest.raises(CheckpointError, match=match):
            read_manifest(tmp_path)


def test_tail_start_finds_the_calls_since_the_checkpoint_in_either_log(tmp_path: Path) -> None:
    log = tmp_path / "recorded_api_calls.json"
    assert tail_start(None, log) == 0  # no checkpoint, no log
    log.write_bytes(b'{"v":1}\n' * 3)
    assert tail_start(None, log) == 0
    # the checkpoint was written, the log not rewritten yet: its calls since start at the captured offset
    assert tail_start(manifest(after=None, offset=8), log) == 8
    # the log was rewritten: they start after its header
    log.write_bytes(encode_header("000002") + b'{"v":1}\n')
    assert tail_start(manifest(), log) == len(encode_header("000002"))
    log.write_bytes(encode_header("000001") + b"x" * 20)
    assert tail_start(manifest(offset=10), log) == 10
    log.unlink()
    assert tail_start(manifest(), log) == 0  # no calls since


@pytest.mark.parametrize(
    ("content", "given", "match"),
    [
        (encode_header("000005"), None, "continues checkpoint 000005, but the data dir has no checkpoints"),
        (encode_header("000009"), manifest(), "continues checkpoint 000009, but the data dir's checkpoint is 000002"),
        (b'{"v":1}\n', manifest(), r"continues checkpoint \(none: a whole history\)"),
        (encode_header("000001"), manifest(offset=500), "shorter than the 500"),
    ],
)
def test_tail_start_refuses_a_log_that_does_not_fit(
    tmp_path: Path, content: bytes, given: Manifest | None, match: str
) -> None:
    log = tmp_path / "recorded_api_calls.json"
    log.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        tail_start(given, log)
    assert log.read_bytes() == content


def test_remove_stale_keeps_only_the_named_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for name in ("000001", "000002", "000003"):
        (root / name / "state").mkdir(parents=True)
    (root / ".MANIFEST.json.77.tmp").write_bytes(b"half")
    write_manifest(tmp_path, manifest())
    assert remove_stale(tmp_path, manifest()) == ["000001", "000003"]
    assert sorted(p.name for p in root.iterdir()) == ["000002", MANIFEST_NAME]


def test_history_is_the_checkpoint_calls_then_the_log_since(tmp_path: Path) -> None:
    log = tmp_path / "recorded_api_calls.json"
    log.write_bytes(encode_header("000002"))
    write_manifest(tmp_path, manifest())
    assert history(log) == [
        Segment(Checkpoint(tmp_path, "000002").base_log),
        Segment(log, len(encode_header("000002"))),
    ]
    assert history(tmp_path / "elsewhere" / "calls.json") == [Segment(tmp_path / "elsewhere" / "calls.json")]


# --- checkpoints of moto, in-process ---------------------------------------------------------


def persisted(emulator: Emulator, data: Path) -> RecordReplayBackend:
    backend = RecordReplayBackend(
        emulator.app,
        data / "recorded_api_calls.json",
        FsyncPolicy.NO,
        seeder=emulator.seeder,
        adapter=emulator.adapter,
        policy=CheckpointPolicy(0),
        reset=emulator.reset,
    )
    backend.restore()
    return backend


def sqs(app: Any, operation: str, **document: Any) -> Any:
    headers = [
        ("Host", "localhost:4566"),
        ("Authorization", SCOPE),
        ("X-Amz-Target", f"AmazonSQS.{operation}"),
        ("Content-Type", "application/x-amz-json-1.0"),
    ]
    response = WSGITransport(app).send(Request("POST", "/", "", headers, json.dumps(document).encode()))
    assert response.ok, response.body
    return json.loads(response.body)


QUEUE = f"http://localhost:4566/{ACCOUNT}/jobs"


def bodies(emulator: Emulator) -> list[str]:
    from moto.backends import get_backend

    queues = get_backend("sqs")[ACCOUNT]["us-east-1"].queues  # type: ignore[call-overload]
    return [message.body for message in queues["jobs"]._messages] if "jobs" in queues else []


def restart(emulator: Emulator, data: Path, backend: RecordReplayBackend) -> RecordReplayBackend:
    backend.close()
    assert emulator.reset is not None
    emulator.reset()
    return persisted(emulator, data)


def with_queue(emulator: Emulator, data: Path) -> tuple[RecordReplayBackend, Any]:
    """A backend restored from ``data``, its wrapped app, and the queue ``jobs`` made through it."""
    backend = persisted(emulator, data)
    app = backend.wrap(emulator.app)
    sqs(app, "CreateQueue", QueueName="jobs")
    return backend, app


def test_a_checkpoint_folds_the_log_and_a_start_replays_only_what_came_after(
    fresh: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    backend, app = with_queue(fresh, data)
    for number in range(5):
        sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody=f"m{number}")
    result = backend.checkpoint()
    assert result.name == "000001" and "sqs" in result.services and result.base is not None
    assert result.base.read == 6 and result.pause < 5
    assert list(result.timings) == ["captured", "snapshots", "base", "manifest", "log", "cleaned"]
    sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="after")

    written = read_manifest(data)
    assert written is not None and written.checkpoint == "000001" and written.folded == 6
    checkpoint = Checkpoint(data, "000001")
    assert checkpoint.state("sqs").read_bytes().startswith(b"REPLAY-SNAPSHOT\n")
    assert next(entry.operation for _, entry in LogReader(checkpoint.base_log)) == "CreateQueue"
    reader = LogReader(data / "recorded_api_calls.json")
    assert [entry.operation for _, entry in reader] == ["SendMessage"] and reader.checkpoint == "000001"

    expected = bodies(fresh)
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        backend = restart(fresh, data, backend)
    assert bodies(fresh) == expected == ["m0", "m1", "m2", "m3", "m4", "after"]
    assert "Loaded checkpoint 000001 (" in caplog.text
    assert "Restored 7 API calls from persistent file" in caplog.text  # the 6 folded into it, and 1 since
    assert "6 from checkpoint 000001" in caplog.text and "1 replayed from the log since it" in caplog.text
    assert "state restored in " in caplog.text and ": checkpoint 000001 loaded, 1 calls replayed (" in caplog.text
    status = backend.status()
    assert status["loaded"]["from"] == "snapshots"  # type: ignore[index]
    assert status["checkpoint"]["current"] == "000001"  # type: ignore[index]
    backend.close()


@pytest.mark.parametrize("spoil", ["another moto", "tampered snapshot"])
def test_a_checkpoint_whose_snapshots_cannot_be_used_restores_from_its_calls(
    fresh: Emulator, tmp_path: Path, spoil: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    backend, app = with_queue(fresh, data)
    sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="kept")
    backend.checkpoint()
    sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="since")
    expected = bodies(fresh)
    written = read_manifest(data)
    assert written is not None
    if spoil == "another moto":
        document = json.loads((data / "checkpoints" / MANIFEST_NAME).read_bytes())
        document["meta"]["moto"] = "4.0.0"
        (data / "checkpoints" / MANIFEST_NAME).write_text(json.dumps(document))
    else:
        state = Checkpoint(data, written.checkpoint).state("sqs")
        state.write_bytes(state.read_bytes()[:-1] + b"!")
    with caplog.at_level(logging.WARNING, logger="replay.replayer"):
        backend = restart(fresh, data, backend)
    assert bodies(fresh) == expected == ["kept", "since"]
    assert backend.loaded is not None and backend.loaded["from"] == "calls"
    assert f"checkpoint {written.checkpoint}: " in caplog.text and "replaying its 2 calls" in caplog.text
    backend.close()


def test_recording_goes_on_during_checkpoints_and_nothing_is_lost_or_doubled(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend, app = with_queue(fresh, data)
    sent: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            number = 0
            while not stop.is_set():
                sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody=f"m{number}")
                sent.append(f"m{number}")  # acknowledged
                number += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=sender) for _ in range(1)]
    for worker in workers:
        worker.start()
    names = [backend.checkpoint().name for _ in range(4)]
    stop.set()
    for worker in workers:
        worker.join()
    assert errors == [] and names == ["000001", "000002", "000003", "000004"]
    assert bodies(fresh) == sent and len(sent) > 4
    backend = restart(fresh, data, backend)
    assert bodies(fresh) == sent
    backend.close()


def test_large_bodies_are_linked_from_the_previous_checkpoint_not_written_again(
    fresh: Emulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    backend = persisted(fresh, data)
    app = backend.wrap(fresh.app)
    scope = SCOPE.replace("/sqs/", "/s3/")
    transport = WSGITransport(app)
    for path, body in (("/bucket", b""), ("/bucket/big", b"B" * 100_000)):
        assert transport.send(Request("PUT", path, "", [("Host", "localhost"), ("Authorization", scope)], body)).ok
    backend.checkpoint()
    [first] = list(Checkpoint(data, "000001").assets("s3").iterdir())
    inode = first.stat().st_ino
    backend.checkpoint()
    [second] = list(Checkpoint(data, "000002").assets("s3").iterdir())
    assert second.name == first.name and second.stat().st_ino == inode  # linked, not written again
    backend = restart(fresh, data, backend)
    answer = WSGITransport(fresh.app).send(
        Request("GET", "/bucket/big", "", [("Host", "localhost"), ("Authorization", scope)], b"")
    )
    assert answer.ok and answer.body == b"B" * 100_000
    backend.close()


def test_a_service_whose_first_call_ends_while_the_checkpoint_waits_is_in_it(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend = persisted(fresh, data)
    assert fresh.adapter is not None and list(fresh.adapter.active()) == []
    go = threading.Event()

    def held(environ: Any, start_response: Any) -> Any:
        go.wait(10)  # the call is in flight, inside the gate, when the checkpoint starts
        return fresh.app(environ, start_response)

    app = backend.wrap(held)
    call = threading.Thread(target=sqs, args=(app, "CreateQueue"), kwargs={"QueueName": "jobs"})
    call.start()
    results: list[Any] = []
    taker = threading.Thread(target=lambda: results.append(backend.checkpoint()))
    taker.start()
    taker.join(0.2)
    assert taker.is_alive()  # waiting for the call in flight
    go.set()
    call.join(10)
    taker.join(10)
    [result] = results
    assert "sqs" in result.services  # SQS had no state when the checkpoint was asked for
    backend = restart(fresh, data, backend)
    assert sqs(fresh.app, "GetQueueUrl", QueueName="jobs")["QueueUrl"].endswith("/jobs")
    backend.close()


def test_a_checkpoint_that_cannot_quiesce_leaves_nothing_behind(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend, _app = with_queue(fresh, data)
    backend.checkpoint()
    assert backend.checkpointer is not None and backend.gate is not None
    backend.checkpointer.quiesce_timeout = 0.05
    backend.gate.enter()  # a call that never ends
    with pytest.raises(QuiesceTimeoutError):
        backend.checkpoint()
    backend.gate.leave()
    assert sorted(p.name for p in (data / "checkpoints").iterdir()) == ["000001", MANIFEST_NAME]
    assert backend.checkpoint().name == "000002"
    backend.close()


def test_checkpoints_are_taken_when_the_log_grows_past_the_trigger(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend = RecordReplayBackend(
        fresh.app,
        data / "recorded_api_calls.json",
        FsyncPolicy.NO,
        seeder=fresh.seeder,
        adapter=fresh.adapter,
        policy=CheckpointPolicy(percentage=100, min_size=4096, interval=0.02),
    )
    backend.restore()
    app = backend.wrap(fresh.app)
    sqs(app, "CreateQueue", QueueName="jobs")
    assert read_manifest(data) is None
    for number in range(200):
        sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody=f"{number:04d}" * 50)
        if backend.last_checkpoint is not None:  # set once the checkpoint is done
            break
    written = read_manifest(data)
    assert written is not None  # the 4 KB of calls (more than 100% of nothing) made one
    assert backend.last_checkpoint is not None and backend.last_checkpoint.name == written.checkpoint
    status = backend.status()["checkpoint"]
    assert status["current"] == written.checkpoint  # type: ignore[index]
    assert status["next_at_bytes"] == max(4096, written.size)  # type: ignore[index]
    backend.close()


PERSIST_SCRIPT = """
import json, sys
import replay
from replay.serve.emulators import moto_emulator
from replay.record.entry import Request
from replay.restore.transport import WSGITransport

data, mode, scope = sys.argv[1:]
emulator = moto_emulator()
app = replay.persist(emulator.app, data, seeder=emulator.seeder, adapter=emulator.adapter)
try:
    replay.persist(emulator.app, data, adapter=emulator.adapter)
except replay.DataDirInUseError as exc:
    print(json.dumps({"second": str(exc)}))
target = "AmazonSQS.CreateQueue" if mode == "create" else "AmazonSQS.ListQueues"
headers = [("Authorization", scope), ("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-1.0")]
body = b'{"QueueName": "kept"}' if mode == "create" else b"{}"
answer = WSGITransport(app).send(Request("POST", "/", "", headers, body))
assert answer.ok, answer.body
print(json.dumps({"answer": json.loads(answer.body)}))
"""


def test_persist_with_an_adapter_owns_the_data_dir_and_checkpoints_at_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data"

    def run(mode: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", PERSIST_SCRIPT, str(data), mode, SCOPE], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        printed: dict[str, Any] = {}
        for line in done.stdout.splitlines():
            printed.update(json.loads(line))
        return printed

    first = run("create")
    assert "is in use by another replay (pid " in first["second"] and "command replay.persist" in first["second"]
    written = read_manifest(data)
    assert written is not None and written.checkpoint == "000001"  # taken at exit
    log = data / "recorded_api_calls.json"
    assert read_header(log) == ("000001", LogReader(log).size)  # the log holds its header only
    assert run("list")["answer"]["QueueUrls"][0].endswith("/kept")
    assert not (data / ".replay.lock").exists()


def test_without_an_adapter_the_log_is_compacted_in_place_when_it_grows(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend = RecordReplayBackend(
        fresh.app,
        data / "recorded_api_calls.json",
        FsyncPolicy.NO,
        seeder=fresh.seeder,
        policy=CheckpointPolicy(percentage=50, min_size=4096, interval=0.02),
    )
    backend.restore()
    app = backend.wrap(fresh.app)
    sqs(app, "CreateQueue", QueueName="jobs")
    calls = 1
    for number in range(60):  # queues that come and go: compaction drops them
        url = f"http://localhost:4566/{ACCOUNT}/tmp-{number}"
        sqs(app, "CreateQueue", QueueName=f"tmp-{number}")
        sqs(app, "DeleteQueue", QueueUrl=url)
        calls += 2
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(1 for _ in LogReader(data / "recorded_api_calls.json")) >= calls:
        time.sleep(0.02)
    kept = [entry.operation for _, entry in LogReader(data / "recorded_api_calls.json")]
    assert len(kept) < calls and kept[0] == "CreateQueue"  # compacted while recording, the live queue kept
    assert read_manifest(data) is None  # no checkpoint: there is no adapter
    backend.close()
    backend = restart(fresh, data, backend)
    assert list(sqs(fresh.app, "ListQueues")["QueueUrls"]) == [QUEUE]
    backend.close()


def tree(data: Path) -> dict[str, bytes]:
    return {str(path.relative_to(data)): path.read_bytes() for path in sorted(data.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("damage", ["checkpoint directory missing", "snapshot torn and calls missing"])
def test_a_data_dir_whose_checkpoint_is_gone_refuses_to_start_and_keeps_the_evidence(
    fresh: Emulator, tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    backend, app = with_queue(fresh, data)
    sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="kept")
    backend.checkpoint()
    sqs(app, "SendMessage", QueueUrl=QUEUE, MessageBody="since")
    backend.close()
    written = read_manifest(data)
    assert written is not None
    checkpoint = Checkpoint(data, written.checkpoint)
    if damage == "checkpoint directory missing":
        shutil.rmtree(checkpoint.directory)
    else:
        state = checkpoint.state("sqs")
        state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])
        checkpoint.base_log.unlink()
    before = tree(data)
    assert fresh.reset is not None
    fresh.reset()
    with pytest.raises(CheckpointError) as refused:
        persisted(fresh, data)
    message = str(refused.value)
    assert str(checkpoint.directory) in message and "restore that directory from a backup" in message
    assert "\n" not in message
    assert tree(data) == before  # nothing moved, nothing replaced, no later checkpoint over the evidence
    assert bodies(fresh) == []  # and nothing was served from half a state


def s3(app: Any, method: str, path: str, body: bytes = b"") -> Any:
    scope = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
    )
    headers = [("Host", "localhost:4566"), ("Authorization", scope), ("Content-Length", str(len(body)))]
    response = WSGITransport(app).send(Request(method, path, "", headers, body))
    assert response.ok, response.body
    return response


def test_a_checkpoint_stores_each_s3_object_once(fresh: Emulator, tmp_path: Path) -> None:
    """An object put whole is one file shared by the snapshot's asset and the body ``calls.json`` names."""
    import hashlib
    import os

    data = tmp_path / "data"
    backend = persisted(fresh, data)
    app = backend.wrap(fresh.app)
    s3(app, "PUT", "/bucket")
    objects = {"small": b"s" * 10_000, "medium": os.urandom(300_000), "large": os.urandom(2 * 1024 * 1024 + 7)}
    for key, body in objects.items():
        s3(app, "PUT", f"/bucket/{key}", body)
    result = backend.checkpoint()
    checkpoint = Checkpoint(data, result.name)
    encodings = {entry.request.path: (entry.request.file is not None) for _, entry in LogReader(checkpoint.base_log)}
    assert encodings == {"/bucket": False, "/bucket/small": False, "/bucket/medium": True, "/bucket/large": True}
    for key in ("medium", "large"):
        digest = hashlib.sha256(objects[key]).hexdigest()
        body, asset = checkpoint.directory / "bodies" / digest, checkpoint.assets("s3") / digest
        assert body.stat().st_ino == asset.stat().st_ino  # one file on disk
    seen: set[int] = set()
    size = 0
    for path in data.rglob("*"):
        status = path.stat()
        if path.is_file() and status.st_ino not in seen:
            seen.add(status.st_ino)
            size += status.st_size
    manifest = read_manifest(data)
    assert manifest is not None and size <= 1.5 * manifest.size  # issue 16: at most 1.5x the live state

    # the calls alone (snapshots refused) bring every object back, byte for byte
    state = checkpoint.state("s3")
    state.write_bytes(state.read_bytes()[:-1] + b"!")
    backend = restart(fresh, data, backend)
    assert backend.loaded is not None and backend.loaded["from"] == "calls"
    app = backend.wrap(fresh.app)
    for key, body in objects.items():
        assert s3(app, "GET", f"/bucket/{key}").body == body
    backend.close()
