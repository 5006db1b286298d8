"""(f) Bounded start-up: restore time follows the live state, not the length of the history.

Histories are recorded in-process into moto the way ``replay serve`` records
them (per-call seeds, the mutation gate, automatic checkpoints with the default
triggers, ``REPLAY_CHECKPOINT_PERCENTAGE=100`` and ``REPLAY_CHECKPOINT_MIN_SIZE=1mb``):

* *short*: ``short`` calls (1,000) that build the live state: 5 queues with 300
  messages, a table with 400 items, a bucket with 293 objects;
* *long*: ``long`` calls (100,000): the same calls, spread evenly through churn
  that is undone later (queues created, used and deleted; items and objects
  written, overwritten and deleted), so the live state at the end is the same;
  every entry is also appended to a plain log that is never checkpointed;
* *localstack*: ``localstack`` calls (3,751) of about 3 KB each, the 11 MB
  history that took LocalStack's replay about 190 s (localstack#3464).

A restore is what ``replay serve`` does at start-up: moto reset, then
``RecordReplayBackend.restore()`` (load the checkpoint, replay the calls since).
Restores after the long and the short history are interleaved round by round;
the plain log of the long history is replayed in full once per round too.  The
live state after each restore is compared, and must be the same.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from _harness import BenchmarkError, Result, Spread, rotations, send_ok
from _workload import ACCOUNT, HOST, REGION, json_request, moto_reset, s3_request

from replay.backends.record_replay import CheckpointPolicy, RecordReplayBackend
from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.emulators import Emulator, moto_emulator
from replay.entry import Request
from replay.log import CallLog, LogReader
from replay.middleware import RecordingMiddleware
from replay.replayer import Replayer
from replay.transport import WSGITransport

__all__ = ["Settings", "run"]

RATIO_TARGET = 1.5
LOCALSTACK_TARGET_S = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    short: int = 1_000
    long: int = 100_000
    localstack: int = 3_751
    rounds: int = 3
    seed: int = 20261202


def _sqs(operation: str, document: dict[str, Any]) -> Request:
    return json_request("sqs", f"AmazonSQS.{operation}", document, query_mode=True)


def _dynamodb(operation: str, document: dict[str, Any]) -> Request:
    return json_request("dynamodb", f"DynamoDB_20120810.{operation}", document)


def _queue_url(name: str) -> str:
    return f"http://{HOST}/{ACCOUNT}/{name}"


def _item(key: str, value: str) -> dict[str, Any]:
    return {"pk": {"S": key}, "value": {"S": value}}


def live_calls(total: int) -> list[Request]:
    """``total`` calls that build the live state (queues, messages, a table, items, a bucket, objects)."""
    queues, table, bucket = 5, "live-table", "live-bucket"
    calls: list[Request] = [_sqs("CreateQueue", {"QueueName": f"live-{q}"}) for q in range(queues)]
    calls.append(
        _dynamodb(
            "CreateTable",
            {
                "TableName": table,
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
    )
    calls.append(s3_request("PUT", f"/{bucket}"))
    rest = total - len(calls)
    messages, items = rest * 3 // 10, rest * 4 // 10
    objects = rest - messages - items
    body = {"payload": "m" * 300}
    for number in range(max(messages, items, objects)):
        if number < messages:
            calls.append(
                _sqs(
                    "SendMessage",
                    {"QueueUrl": _queue_url(f"live-{number % queues}"), "MessageBody": f"{number}:{body}"},
                )
            )
        if number < items:
            calls.append(_dynamodb("PutItem", {"TableName": table, "Item": _item(f"item-{number}", "v" * 300)}))
        if number < objects:
            calls.append(s3_request("PUT", f"/{bucket}/object-{number}", b"o" * 700))
    return calls


def churn(rng: random.Random, number: int) -> list[Request]:
    """A few calls whose effects are gone by their end."""
    kind = rng.randrange(3)
    name = f"churn-{number}"
    if kind == 0:
        url = _queue_url(name)
        return [
            _sqs("CreateQueue", {"QueueName": name}),
            _sqs("SendMessage", {"QueueUrl": url, "MessageBody": "x" * 300}),
            _sqs("SendMessage", {"QueueUrl": url, "MessageBody": "y" * 300}),
            _sqs("DeleteQueue", {"QueueUrl": url}),
        ]
    if kind == 1:
        return [
            _dynamodb("PutItem", {"TableName": "live-table", "Item": _item(name, "a" * 300)}),
            _dynamodb("PutItem", {"TableName": "live-table", "Item": _item(name, "b" * 300)}),
            _dynamodb("DeleteItem", {"TableName": "live-table", "Key": {"pk": {"S": name}}}),
        ]
    return [
        s3_request("PUT", f"/live-bucket/{name}", b"a" * 700),
        s3_request("PUT", f"/live-bucket/{name}", b"b" * 700),
        s3_request("DELETE", f"/live-bucket/{name}"),
    ]


def history(total: int, live: list[Request], seed: int) -> Iterator[Request]:
    """``live``, in order, spread evenly through churn: about ``total`` calls in all."""
    rng = random.Random(seed)
    yield from live[:7]  # the queues, the table and the bucket: the churn writes into the last two
    sent, unit, rest = 7, 0, live[7:]
    for index, request in enumerate(rest):
        due = 7 + (index * (total - 7)) // len(rest)
        while sent < due:
            for churned in churn(rng, unit):
                yield churned
                sent += 1
            unit += 1
        yield request
        sent += 1


class _Tee:
    """Appends every entry to the checkpointed log and to a plain one."""

    def __init__(self, first: CallLog, second: CallLog) -> None:
        self.first, self.second = first, second

    def append(self, line: bytes) -> None:
        self.first.append(line)
        self.second.append(line)


def _backend(emulator: Emulator, data: Path, policy: CheckpointPolicy) -> RecordReplayBackend:
    return RecordReplayBackend(
        emulator.app,
        data / LOG_FILE_NAME,
        FsyncPolicy.EVERYSEC,
        seeder=emulator.seeder,
        adapter=emulator.adapter,
        policy=policy,
        reset=emulator.reset,
    )


def record(
    emulator: Emulator, data: Path, calls: Iterator[Request], plain: Path | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """Record ``calls`` as ``replay serve`` would, with automatic checkpoints; what it took."""
    send_ok(WSGITransport(emulator.app), moto_reset())
    backend = _backend(emulator, data, CheckpointPolicy())
    backend.restore()
    assert backend.log is not None
    sink: Any = backend.log
    plain_log = CallLog(plain, FsyncPolicy.NO) if plain is not None else None
    if plain_log is not None:
        sink = _Tee(backend.log, plain_log)
    transport = WSGITransport(RecordingMiddleware(emulator.app, sink, None, emulator.seeder, backend.gate))
    started = time.perf_counter()
    count = 0
    checkpoints: set[str] = set()
    for request in calls:
        send_ok(transport, request)
        count += 1
        if count % 10_000 == 0:
            say(f"    {count:,} calls recorded ({count / (time.perf_counter() - started):.0f} calls/s)")
        if backend.checkpointer is not None and backend.checkpointer.manifest is not None:
            checkpoints.add(backend.checkpointer.manifest.checkpoint)
    elapsed = time.perf_counter() - started
    tail = sum(1 for _ in LogReader(data / LOG_FILE_NAME))
    backend.close()
    if plain_log is not None:
        plain_log.close()
    return {"calls": count, "seconds": elapsed, "checkpoints": len(checkpoints), "tail_calls": tail}


def live_state(emulator: Emulator) -> tuple[Any, ...]:
    """What a client could read back of the live state (queues and bodies, items, objects)."""
    from moto.backends import get_backend

    queues = get_backend("sqs")[ACCOUNT][REGION].queues  # type: ignore[call-overload]
    table = get_backend("dynamodb")[ACCOUNT][REGION].tables["live-table"]  # type: ignore[call-overload]
    bucket = get_backend("s3")[ACCOUNT]["global"].buckets["live-bucket"]  # type: ignore[call-overload]
    return (
        sorted((name, tuple(m.body for m in queue._messages)) for name, queue in queues.items()),
        sorted(orjson.dumps(item.to_json(), option=orjson.OPT_SORT_KEYS) for item in table.all_items()),
        sorted((key, value.etag) for key, value in bucket.keys.items()),
    )


def restore(emulator: Emulator, data: Path) -> tuple[float, Any, dict[str, Any]]:
    send_ok(WSGITransport(emulator.app), moto_reset())
    backend = _backend(emulator, data, CheckpointPolicy(0))
    started = time.perf_counter()
    backend.restore()
    elapsed = time.perf_counter() - started
    assert backend.report is not None
    if backend.report.failures:
        raise BenchmarkError(f"{data}: {backend.report.failed} calls failed on restore")
    facts = {"tail": backend.report.restored, "loaded": backend.loaded}
    backend.close()
    return elapsed, live_state(emulator), facts


def replay_plain(emulator: Emulator, plain: Path) -> tuple[float, Any]:
    send_ok(WSGITransport(emulator.app), moto_reset())
    started = time.perf_counter()
    report = Replayer(WSGITransport(emulator.app), seeder=emulator.seeder).replay(plain)
    elapsed = time.perf_counter() - started
    if report.failures:
        raise BenchmarkError(f"{plain}: {report.failed} calls failed on replay")
    return elapsed, live_state(emulator)


def localstack_calls(total: int) -> Iterator[Request]:
    """``total`` calls of about 3 KB: a table and a bucket filled, some items and objects written over."""
    yield from live_calls(7)[5:7]  # the table and the bucket
    for number in range(total - 2):
        if number % 2:
            yield _dynamodb("PutItem", {"TableName": "live-table", "Item": _item(f"ls-{number % 900}", "d" * 2500)})
        else:
            yield s3_request("PUT", f"/live-bucket/ls-{number % 700}", b"s" * 2500)


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    emulator = moto_emulator()
    live = live_calls(settings.short)
    short_dir, long_dir, ls_dir = workdir / "startup-short", workdir / "startup-long", workdir / "startup-ls"
    plain = workdir / "startup-plain" / LOG_FILE_NAME
    say(f"  recording the short history ({settings.short:,} calls) ...")
    short = record(emulator, short_dir, iter(live), None, say)
    say(f"  recording the long history ({settings.long:,} calls; the same live state) ...")
    long = record(emulator, long_dir, history(settings.long, live, settings.seed), plain, say)
    say(f"  recording a LocalStack-sized history ({settings.localstack:,} calls of about 3 KB) ...")
    ls = record(emulator, ls_dir, localstack_calls(settings.localstack), None, say)

    ratios: list[float] = []
    versus_full: list[float] = []
    long_times: list[float] = []
    short_times: list[float] = []
    full_times: list[float] = []
    ls_times: list[float] = []
    facts: dict[str, Any] = {}
    for order in rotations(["long", "short", "full", "localstack"], settings.rounds):
        times: dict[str, float] = {}
        states: dict[str, Any] = {}
        for arm in order:
            say(f"  restoring after the {arm} history ...")
            if arm == "full":
                times[arm], states[arm] = replay_plain(emulator, plain)
            elif arm == "localstack":
                times[arm], _state, facts[arm] = restore(emulator, ls_dir)
            else:
                times[arm], states[arm], facts[arm] = restore(emulator, long_dir if arm == "long" else short_dir)
        if not states["long"] == states["short"] == states["full"]:
            raise BenchmarkError("the long and the short history did not restore the same live state")
        ratios.append(times["long"] / times["short"])
        versus_full.append(times["long"] / times["full"])
        long_times.append(times["long"])
        short_times.append(times["short"])
        full_times.append(times["full"])
        ls_times.append(times["localstack"])

    def median(values: list[float]) -> float:
        return Spread.of(values).median

    common: dict[str, float | int | str] = {
        "restore_long_s": round(median(long_times), 3),
        "restore_short_s": round(median(short_times), 3),
        "full_replay_s": round(median(full_times), 3),
        "long_calls": long["calls"],
        "long_checkpoints": long["checkpoints"],
        "long_tail_calls": facts["long"]["tail"],
        "short_checkpoints": short["checkpoints"],
        "short_tail_calls": facts["short"]["tail"],
        "record_long_calls_per_s": round(long["calls"] / long["seconds"], 1),
    }
    return [
        Result(
            "f-long-vs-short",
            f"(f) restore after {settings.long:,} calls / after {settings.short:,}, same live state",
            "x",
            Spread.of(ratios),
            RATIO_TARGET,
            False,
            common,
        ),
        Result(
            "f-long-vs-full",
            f"(f) restore after {settings.long:,} calls / plain full replay of them",
            "x",
            Spread.of(versus_full),
            None,
            False,
            common,
        ),
        Result(
            "f-localstack",
            f"(f) restore after a {settings.localstack:,}-call history of about 3 KB calls",
            "s",
            Spread.of(ls_times),
            LOCALSTACK_TARGET_S,
            False,
            {
                "calls": ls["calls"],
                "checkpoints": ls["checkpoints"],
                "tail_calls": facts["localstack"]["tail"],
                "log_mb": round(sum(p.stat().st_size for p in ls_dir.rglob("*.json")) / 1e6, 1),
            },
        ),
    ]
