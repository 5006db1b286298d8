"""The snapshot backend in-process on moto: strategies, lazy loading, per-service locks, refusals."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from replay.backends.snapshot import SnapshotBackend
from replay.config import LoadStrategy, SaveStrategy
from replay.errors import SnapshotError
from replay.record.entry import Request, Response
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator


def call(service: str, target: str, body: dict[str, object]) -> Request:
    scope = f"AK/20240101/us-east-1/{service}/aws4_request"
    headers = [
        ("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", target),
    ]
    return Request("POST", "/", "", headers, orjson.dumps(body))


def create_queue(name: str) -> Request:
    return call("sqs", "AmazonSQS.CreateQueue", {"QueueName": name})


LIST_QUEUES = call("sqs", "AmazonSQS.ListQueues", {})
LIST_TABLES = call("dynamodb", "DynamoDB_20120810.ListTables", {})


def queues(transport: WSGITransport) -> list[str]:
    answer = transport.send(LIST_QUEUES)
    assert answer.ok
    return [url.rsplit("/", 1)[1] for url in orjson.loads(answer.body).get("QueueUrls", [])]


def serve(emulator: Emulator, data_dir: Path, **strategies: object) -> tuple[SnapshotBackend, WSGITransport]:
    assert emulator.adapter is not None
    backend = SnapshotBackend(emulator.adapter, data_dir, **strategies)  # type: ignore[arg-type]
    backend.restore()
    return backend, WSGITransport(backend.wrap(emulator.app))


def restart(emulator: Emulator) -> None:
    """What a new process would see: moto empty."""
    assert emulator.reset is not None
    emulator.reset()


def test_on_request_saves_before_answering_and_loads_lazily(fresh: Emulator, tmp_path: Path) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.ON_REQUEST)
    assert transport.send(create_queue("kept")).ok
    assert backend.path("sqs").exists()  # on disk before the answer was returned
    assert not backend.path("dynamodb").exists()
    backend.close()

    restart(fresh)
    backend, transport = serve(fresh, tmp_path)
    assert backend.loaded == set()  # nothing loaded until asked
    assert queues(transport) == ["kept"]
    assert backend.loaded == {"sqs"}  # only the service that was asked for
    assert transport.send(LIST_TABLES).ok and backend.loaded == {"sqs", "dynamodb"}
    backend.close()


def test_scheduled_saves_only_dirty_services(fresh: Emulator, tmp_path: Path) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.SCHEDULED, interval=0.1)
    assert transport.send(LIST_TABLES).ok  # a read: loads dynamodb, dirties nothing
    assert transport.send(create_queue("scheduled")).ok
    assert "sqs" in backend.dirty
    deadline = time.monotonic() + 5
    while not backend.path("sqs").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.path("sqs").exists()
    assert not backend.path("dynamodb").exists()
    saved = backend.path("sqs").stat().st_mtime_ns
    time.sleep(0.3)  # more intervals pass with nothing dirty
    assert backend.path("sqs").stat().st_mtime_ns == saved
    assert backend.dirty.isdisjoint({"sqs", "dynamodb"})
    backend.close()


def test_on_shutdown_and_manual(fresh: Emulator, tmp_path: Path) -> None:
    manual, transport = serve(fresh, tmp_path / "manual", save=SaveStrategy.MANUAL)
    assert transport.send(create_queue("m")).ok
    manual.close()
    assert not manual.path("sqs").exists()  # manual: nothing is saved unless asked
    assert [r["status"] for r in manual.save(["sqs"])] == ["ok"]
    assert manual.path("sqs").exists()

    shutdown, transport = serve(fresh, tmp_path / "shutdown", save=SaveStrategy.ON_SHUTDOWN)
    assert transport.send(create_queue("s")).ok
    assert not shutdown.path("sqs").exists()
    shutdown.close()
    assert shutdown.path("sqs").exists()


def test_on_startup_loads_everything_before_the_first_request(fresh: Emulator, tmp_path: Path) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.ON_REQUEST)
    assert transport.send(create_queue("early")).ok
    backend.close()
    restart(fresh)
    backend, transport = serve(fresh, tmp_path, load=LoadStrategy.ON_STARTUP)
    assert "sqs" in backend.loaded
    assert queues(WSGITransport(fresh.app)) == ["early"]  # there without passing through the backend
    backend.close()


def test_a_save_holds_requests_to_its_service_only(fresh: Emulator, tmp_path: Path) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert transport.send(create_queue("locked")).ok and transport.send(LIST_TABLES).ok
    answers: dict[str, Response] = {}
    with backend.lock("sqs").write():  # as a save of sqs does
        sqs = threading.Thread(target=lambda: answers.update(sqs=transport.send(LIST_QUEUES)))
        dynamodb = threading.Thread(target=lambda: answers.update(dynamodb=transport.send(LIST_TABLES)))
        sqs.start()
        dynamodb.start()
        dynamodb.join(5)
        assert "dynamodb" in answers  # other services keep serving
        sqs.join(0.3)
        assert "sqs" not in answers  # this one waits for the save
    sqs.join(5)
    assert answers["sqs"].ok
    backend.close()


def test_tampered_snapshots_are_refused_and_named(fresh: Emulator, tmp_path: Path) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.ON_REQUEST)
    assert transport.send(create_queue("secret")).ok
    backend.close()
    path = backend.path("sqs")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    restart(fresh)

    with pytest.raises(SnapshotError, match=str(path)):
        serve(fresh, tmp_path, load=LoadStrategy.ON_STARTUP)

    lazy, transport = serve(fresh, tmp_path)
    answer = transport.send(LIST_QUEUES)
    assert answer.status == 500
    assert str(path) in orjson.loads(answer.body)["message"]
    assert "sqs" not in lazy.loaded  # and it is not served from empty state
    lazy.close()


def test_large_s3_bodies_are_asset_files_outside_the_snapshot(fresh: Emulator, tmp_path: Path) -> None:
    from replay.adapters.moto import ASSET_THRESHOLD

    def s3(method: str, path: str, body: bytes = b"") -> Request:
        scope = "AK/20240101/us-east-1/s3/aws4_request"
        return Request(
            method, path, "", [("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=h")], body
        )

    big, other = bytes(range(256)) * (ASSET_THRESHOLD // 256 + 1), b"x" * (ASSET_THRESHOLD * 2)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.ON_REQUEST)
    for request in (
        s3("PUT", "/assets"),
        s3("PUT", "/assets/big.bin", big),
        s3("PUT", "/assets/copy-of-big.bin", big),
        s3("PUT", "/assets/small.txt", b"small"),
    ):
        assert transport.send(request).ok
    files = sorted(p.name for p in backend.assets("s3").iterdir())
    assert files == [__import__("hashlib").sha256(big).hexdigest()]  # one file for two objects, none for small
    assert backend.path("s3").stat().st_size < len(big)  # the body is not inside the snapshot

    assert transport.send(s3("PUT", "/assets/big.bin", other)).ok
    assert transport.send(s3("DELETE", "/assets/copy-of-big.bin")).ok
    files = sorted(p.name for p in backend.assets("s3").iterdir())
    assert files == [__import__("hashlib").sha256(other).hexdigest()]  # what nothing refers to is gone
    backend.close()

    restart(fresh)
    backend, transport = serve(fresh, tmp_path)
    assert transport.send(s3("GET", "/assets/big.bin")).body == other
    assert transport.send(s3("GET", "/assets/small.txt")).body == b"small"
    backend.close()

    restart(fresh)
    asset = next(backend.assets("s3").iterdir())
    asset.write_bytes(b"swapped")  # an asset that does not match its digest is refused too
    backend, transport = serve(fresh, tmp_path)
    assert transport.send(s3("GET", "/assets/big.bin")).status == 500
    backend.close()


def test_a_receive_that_changed_nothing_saves_nothing_and_one_that_redrove_is_saved(
    fresh: Emulator, tmp_path: Path
) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.ON_REQUEST)
    assert transport.send(create_queue("dead")).ok
    policy = orjson.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dead", "maxReceiveCount": 1})
    created = call(
        "sqs", "AmazonSQS.CreateQueue", {"QueueName": "jobs", "Attributes": {"RedrivePolicy": policy.decode()}}
    )
    assert transport.send(created).ok
    url = "http://localhost/123456789012/jobs"
    receive = call("sqs", "AmazonSQS.ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 0, "VisibilityTimeout": 0})
    saved = backend.path("sqs").stat().st_mtime_ns
    assert b"Messages" not in transport.send(receive).body
    assert backend.path("sqs").stat().st_mtime_ns == saved  # an empty receive changed nothing: no save
    assert transport.send(call("sqs", "AmazonSQS.SendMessage", {"QueueUrl": url, "MessageBody": "poison"})).ok
    assert b"Messages" in transport.send(receive).body
    saved = backend.path("sqs").stat().st_mtime_ns
    time.sleep(0.01)
    assert b"Messages" not in transport.send(receive).body  # moved the message to the dead-letter queue
    assert backend.path("sqs").stat().st_mtime_ns != saved
    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.ON_REQUEST)
    dead = call("sqs", "AmazonSQS.ReceiveMessage", {"QueueUrl": "http://localhost/123456789012/dead"})
    assert b"poison" in transport.send(dead).body


@pytest.mark.parametrize("how", ["fork", "inline"])
def test_one_image_saves_every_dirty_service_and_a_failing_one_stays_dirty(
    fresh: Emulator, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_BGSAVE", how)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert backend.status()["saves"] == how
    assert transport.send(create_queue("q1")).ok
    assert transport.send(call("dynamodb", "DynamoDB_20120810.CreateTable", TABLE)).ok
    assert {"sqs", "dynamodb"} <= backend.dirty
    assert backend.save_services(["sqs", "dynamodb"]) == {}
    assert backend.path("sqs").exists() and backend.path("dynamodb").exists()
    assert backend.last_saves["sqs"]["forked"] is (how == "fork")
    assert backend.last_saves["sqs"]["held"] == backend.last_saves["dynamodb"]["held"]  # one image, one hold
    assert not ({"sqs", "dynamodb"} & backend.dirty)

    real_dump = backend.adapter.dump

    def dump(service: str, *args: object, **kwargs: object) -> bytes:
        if service == "dynamodb":
            raise OSError(28, "No space left on device")
        return real_dump(service, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(backend.adapter, "dump", dump)  # inherited by the child: it fails there
    assert transport.send(create_queue("q2")).ok
    assert transport.send(call("dynamodb", "DynamoDB_20120810.DeleteTable", {"TableName": "t"})).ok
    results = list(backend.save(["sqs", "dynamodb"]))
    assert results[0] == {"service": "sqs", "status": "ok"}
    assert results[1]["status"] == "error" and "No space left on device" in results[1]["message"]
    assert "dynamodb" in backend.dirty and "sqs" not in backend.dirty
    assert backend.persistence == "error"  # writes are refused until a save works (Redis's MISCONF)
    monkeypatch.setattr(backend.adapter, "dump", real_dump)
    backend.close()
    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert queues(transport) == ["q1", "q2"]  # saved from the image the failing service shared
    backend.close()


def test_a_save_whose_child_dies_fails_every_service_in_it(
    fresh: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    monkeypatch.setenv("REPLAY_BGSAVE", "fork")
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert transport.send(create_queue("q1")).ok
    monkeypatch.setattr(backend.adapter, "dump", lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL))
    results = list(backend.save(["sqs"]))
    assert results == [
        {
            "service": "sqs",
            "status": "error",
            "message": "could not save sqs: the save's child process was killed by SIGKILL before it finished",
        }
    ]
    assert "sqs" in backend.dirty and not backend.path("sqs").exists()
    backend.close()


TABLE = {
    "TableName": "t",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def sns(transport: WSGITransport, action: str, **params: str) -> Response:
    from urllib.parse import urlencode

    scope = "AK/20240101/us-east-1/sns/aws4_request"
    headers = [
        ("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]
    body = urlencode({"Action": action, "Version": "2010-03-31", **params}).encode()
    answer = transport.send(Request("POST", "/", "", headers, body))
    assert answer.ok, answer.body
    return answer


def messages(transport: WSGITransport, queue: str) -> list[str]:
    url = f"http://localhost:4566/123456789012/{queue}"
    answer = transport.send(
        call("sqs", "AmazonSQS.ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 0})
    )
    assert answer.ok, answer.body
    return [message["Body"] for message in orjson.loads(answer.body).get("Messages", [])]


def test_another_services_call_loads_what_it_reaches_first(fresh: Emulator, tmp_path: Path) -> None:
    """SNS delivering to a queue loads SQS's snapshot first (the adapter's hook), never delivers into nothing,
    and SQS marked changed by a publish it was not loaded for is not saved empty over its snapshot."""
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert transport.send(create_queue("inbox")).ok
    assert transport.send(create_queue("other")).ok
    topic = "arn:aws:sns:us-east-1:123456789012:news"
    quiet = "arn:aws:sns:us-east-1:123456789012:quiet"
    sns(transport, "CreateTopic", Name="news")
    sns(transport, "CreateTopic", Name="quiet")
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:inbox"
    sns(
        transport,
        "Subscribe",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        **{"Attributes.entry.1.key": "RawMessageDelivery", "Attributes.entry.1.value": "true"},
    )
    assert backend.save_services(["sqs", "sns"]) == {}
    backend.close()

    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)  # ON_REQUEST: nothing loaded yet
    sns(transport, "Publish", TopicArn=quiet, Message="nobody listens")  # marks SQS changed, reaches nothing
    assert "sqs" in backend.dirty and "sqs" not in backend.loaded
    assert backend.save_services(sorted(backend.dirty)) == {}  # SQS not loaded: its file stays its state
    sns(transport, "Publish", TopicArn=topic, Message="hello")  # delivers into SQS: loads it first
    assert "sqs" in backend.loaded
    assert backend.save_services(sorted(backend.dirty)) == {}
    backend.close()

    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert queues(transport) == ["inbox", "other"]
    assert messages(transport, "inbox") == ["hello"]
    backend.close()


def test_a_reset_is_not_undone_by_a_later_lazy_load(fresh: Emulator, tmp_path: Path) -> None:
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert transport.send(create_queue("kept")).ok
    assert backend.save_services(["sqs"]) == {}
    backend.close()
    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert transport.send(Request("POST", "/moto-api/reset", "", [], b"")).ok
    assert queues(transport) == []  # the reset state, not the snapshot loaded after it
    assert backend.save_services(sorted(backend.dirty)) == {}
    backend.close()
    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert queues(transport) == []  # the reset was saved
    backend.close()


def test_a_service_changed_only_through_another_is_saved_every_time(fresh: Emulator, tmp_path: Path) -> None:
    """A service no request named (changed by moto for another service's call, as SNS delivering to SQS)
    has no snapshot at first: each save writes its state, not only the first one."""
    backend, _transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    plain = WSGITransport(fresh.app)  # straight to moto: the backend sees no request to SQS
    for name in ("first", "second"):
        assert plain.send(create_queue(name)).ok
        backend.dirty.add("sqs")  # as a fan-out marks it
        assert backend.save_services(["sqs"]) == {}
    backend.close()
    restart(fresh)
    backend, transport = serve(fresh, tmp_path, save=SaveStrategy.MANUAL)
    assert queues(transport) == ["first", "second"]
    backend.close()
