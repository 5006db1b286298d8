"""Per-call seeded random streams: same seed, same ids; other threads untouched."""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import threading
import time
import uuid
from pathlib import Path

import orjson

from replay.record.entry import Request
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.reader import LogReader
from replay.record.seeding import ThreadSeeder, moto_seeder
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport


def draws(generator: random.Random) -> tuple[int, float, bytes, str, bytes]:
    return (
        generator.getrandbits(64),
        generator.random(),
        generator.randbytes(8),
        generator.choice("abcdefghijklmnop") + str(generator.randint(0, 10**9)),
        os.urandom(16),
    )


def test_same_seed_same_draws_and_unseeded_work_is_untouched() -> None:
    generator = random.Random(1)
    seeder = ThreadSeeder([generator], urandom=True)
    with seeder.seeded(42):
        first = draws(generator)
        first_uuid = uuid.uuid4()
    with seeder.seeded(42):
        assert draws(generator) == first
        assert uuid.uuid4() == first_uuid  # uuid4 draws from os.urandom
    with seeder.seeded(43):
        assert draws(generator) != first
    unseeded = random.Random(1)
    assert generator.getrandbits(64) == unseeded.getrandbits(64)  # the shared stream went on where it was
    assert os.urandom(16) != os.urandom(16)


def test_streams_are_per_thread() -> None:
    generator = random.Random()
    seeder = ThreadSeeder([generator])
    with seeder.seeded(7):
        expected = [generator.getrandbits(32) for _ in range(200)]
    barrier = threading.Barrier(8)
    results: dict[int, list[int]] = {}

    def worker(number: int) -> None:
        barrier.wait()
        if number % 2:  # half the threads draw unseeded, interleaved with the seeded ones
            results[number] = [generator.getrandbits(32) for _ in range(200)]
            return
        with seeder.seeded(7):
            values = []
            for _ in range(200):
                values.append(generator.getrandbits(32))
            results[number] = values

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[number] == expected for number in range(0, 8, 2))
    assert all(results[number] != expected for number in range(1, 8, 2))


def auth(service: str) -> tuple[str, str]:
    return (
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/{service}/aws4_request, SignedHeaders=h",
    )


def form(service: str, body: str) -> Request:
    headers = [auth(service), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    return Request("POST", "/", "", headers, body.encode())


def json_call(service: str, target: str, body: dict[str, object]) -> Request:
    headers = [auth(service), ("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-1.1")]
    return Request("POST", "/", "", headers, orjson.dumps(body))


def test_moto_ids_are_the_same_after_a_replay(tmp_path: Path) -> None:
    from replay.serve.emulators import moto_emulator

    emulator = moto_emulator()
    app, seeder = emulator.app, moto_seeder()
    direct = WSGITransport(app)
    reset = Request("POST", "/moto-api/reset", "", [], b"")
    direct.send(reset)
    log = CallLog(tmp_path / "recorded_api_calls.json")
    recorder = WSGITransport(RecordingMiddleware(app, log, seeder=seeder))
    calls = [
        json_call("sqs", "AmazonSQS.CreateQueue", {"QueueName": "seeded"}),
        json_call(
            "sqs",
            "AmazonSQS.SendMessage",
            {"QueueUrl": "http://localhost/123456789012/seeded", "MessageBody": "hello"},
        ),
        json_call("kms", "TrentService.CreateKey", {"Description": "k"}),
        form("sns", "Action=CreateTopic&Name=seeded"),
        form(
            "sns",
            "Action=Subscribe&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Aseeded&Protocol=sqs"
            "&Endpoint=arn%3Aaws%3Asqs%3Aus-east-1%3A123456789012%3Aseeded",
        ),
        form("ec2", "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&Version=2016-11-15"),
        Request("PUT", "/seeded-bucket", "", [auth("s3")], b""),
        Request("POST", "/seeded-bucket/in-progress.bin", "uploads", [auth("s3")], b""),
    ]
    recorded = []
    for call in calls:
        interleaved_read = direct.send(json_call("sqs", "AmazonSQS.ListQueues", {}))  # draws ids, unseeded
        assert interleaved_read.ok
        response = recorder.send(call)
        assert response.ok, response.body
        recorded.append(response.body)
    log.close()

    direct.send(reset)
    report = Replayer(direct, seeder=seeder, mapping=False).replay(log.path)
    assert (report.restored, report.failed) == (len(calls), 0)
    entries = [entry for _, entry in LogReader(log.path)]
    assert all(entry.seed is not None for entry in entries)
    # replaying each call in its recorded stream regenerated byte-identical answers
    # (message id, key id and ARN, subscription ARN, instance and reservation ids, upload id)
    # (message id, key id, ARN and creation date, subscription ARN, instance, reservation and volume ids,
    # launch and attach times, upload id): byte for byte
    direct.send(reset)
    for entry, body in zip(entries, recorded, strict=True):
        with seeder.seeded(entry.seed, entry.time):  # type: ignore[arg-type]
            again = direct.send(entry.request)
        assert again.body == body, entry.operation


def test_a_frozen_clock_is_seen_by_moto_and_time_and_only_inside(tmp_path: Path) -> None:
    import datetime
    import time

    from moto.core.utils import utcnow

    seeder = moto_seeder()
    with seeder.seeded(1, clock=1_700_000_000.25):
        assert time.time() == 1_700_000_000.25
        assert utcnow() == datetime.datetime(2023, 11, 14, 22, 13, 20, 250000)
        assert type(utcnow()) is datetime.datetime  # real datetimes, not stand-ins
    assert abs(time.time() - datetime.datetime.now().timestamp()) < 5
    assert utcnow().year >= 2024


def _draw_everything() -> dict[str, object]:
    """Every source, read through this module's globals (a function-local ``import datetime`` is not hooked)."""
    return {
        "time": time.time(),
        "time_ns": time.time_ns(),
        "now": dt.datetime.now().isoformat(),
        "utcnow": dt.datetime.utcnow().isoformat(),
        "today": dt.date.today().isoformat(),
        "random": random.random(),
        "randint": random.randint(0, 10**9),
        "getrandbits": random.getrandbits(64),
        "system": random.SystemRandom().random(),
        "token": secrets.token_hex(8),
        "below": secrets.randbelow(10**9),
        "bits": secrets.randbits(32),
        "urandom": os.urandom(8).hex(),
        "uuid1": str(uuid.uuid1()),
        "uuid4": str(uuid.uuid4()),
    }


def test_the_generic_seeder_makes_every_stdlib_source_reproducible_inside_a_call_only() -> None:
    from replay.record.seeding import generic_seeder

    seeder = generic_seeder()
    clock = 1_700_000_000.25
    with seeder.seeded(11, clock):
        first = _draw_everything()
    with seeder.seeded(11, clock):
        again = _draw_everything()
    with seeder.seeded(12, clock):
        other = _draw_everything()
    assert first == again
    assert first["time"] == clock and first["time_ns"] == int(clock * 1e9)
    assert first["now"] == dt.datetime.fromtimestamp(clock).isoformat()
    assert first["today"] == dt.date.fromtimestamp(clock).isoformat()
    assert uuid.UUID(str(first["uuid1"])).time == int(str(first["time_ns"])) // 100 + 0x01B21DD213814000
    changed = {key for key in first if first[key] != other[key]}
    assert changed == set(first) - {"time", "time_ns", "now", "utcnow", "today"}
    outside = _draw_everything(), _draw_everything()
    assert outside[0]["urandom"] != outside[1]["urandom"] and outside[0]["token"] != outside[1]["token"]
    assert abs(float(outside[0]["time"]) - time.time()) < 5  # real time outside a call


def test_generic_streams_are_per_thread_and_concurrent_calls_do_not_mix() -> None:
    from replay.record.seeding import generic_seeder

    seeder = generic_seeder()
    expected = {}
    for seed in range(8):
        with seeder.seeded(seed, 1_700_000_000.0):
            expected[seed] = [_draw_everything() for _ in range(3)]
    found: dict[int, list[dict[str, object]]] = {}
    barrier = threading.Barrier(8)

    def run(seed: int) -> None:
        barrier.wait()
        with seeder.seeded(seed, 1_700_000_000.0):
            found[seed] = [_draw_everything() for _ in range(3)]

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == expected
