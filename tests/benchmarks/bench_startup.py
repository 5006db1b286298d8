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
Each history's data dir is restored twice: as a ``kill -9`` left it (the calls
since the last automatic checkpoint are replayed, up to the trigger's size)
and as a SIGTERM left it (a last checkpoint was taken on the way out, so only
that is loaded; as that takes milliseconds, each round takes the median of
``repeat`` such restores).  The restores are interleaved round by round with a full
replay of the plain log of the long history.  The live state after each
restore is compared, and must be the same.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from _harness import BenchmarkError, Result, Spread, rotations, send_ok
from _workload import ACCOUNT, HOST, REGION, json_request, moto_reset, s3_request

from replay.backends.record_replay import CheckpointPolicy, RecordReplayBackend
from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.entry import Request
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.reader import LogReader
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport
from replay.serve.emulators import Emulator, moto_emulator

__all__ = ["Settings", "run"]

RATIO_TARGET = 1.5
LOCALSTACK_TARGET_S = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    short: int = 1_000
    long: int = 100_000
    localstack: int = 3_751
    rounds: int = 3
    repeat: int = 7
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
    """Record ``calls`` as ``replay serve`` would, with automatic checkpoints; what it took.

    The data dir is left as a ``kill -9`` leaves it (the calls since the last checkpoint in the log);
    :func:`stop` makes a copy as SIGTERM would have left it.
    """
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
    backend.close(checkpoint=False)  # what is on disk is what a kill -9 would leave
    if plain_log is not None:
        plain_log.close()
    tail = sum(1 for _ in LogReader(data / LOG_FILE_NAME))
    return {"calls": count, "seconds": elapsed, "checkpoints": len(checkpoints), "tail_calls": tail}


def stop(emulator: Emulator, killed: Path, stopped: Path) -> None:
    """``stopped``: the data dir ``killed`` as a server stopped with SIGTERM leaves it (a last checkpoint)."""
    shutil.copytree(killed, stopped)
    send_ok(WSGITransport(emulator.app), moto_reset())
    backend = _backend(emulator, stopped, CheckpointPolicy())
    backend.restore()
    backend.close()


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
    state = live_state(emulator)  # while the backend is open: services not used yet load on first use
    backend.close()
    return elapsed, state, facts


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
    dirs = {name: workdir / f"startup-{name}" for name in ("short", "long", "localstack")}
    plain = workdir / "startup-plain" / LOG_FILE_NAME
    say(f"  recording the short history ({settings.short:,} calls) ...")
    short = record(emulator, dirs["short"], iter(live), None, say)
    say(f"  recording the long history ({settings.long:,} calls; the same live state) ...")
    long = record(emulator, dirs["long"], history(settings.long, live, settings.seed), plain, say)
    say(f"  recording a LocalStack-sized history ({settings.localstack:,} calls of about 3 KB) ...")
    ls = record(emulator, dirs["localstack"], localstack_calls(settings.localstack), None, say)
    for name in ("short", "long"):
        stop(emulator, dirs[name], workdir / f"startup-{name}-stopped")

    arms = ["long, kill -9", "short, kill -9", "long, sigterm", "short, sigterm", "full", "localstack"]
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    ratios: dict[str, list[float]] = {"kill -9": [], "sigterm": [], "full": []}
    tails: dict[str, int] = {}
    for order in rotations(arms, settings.rounds):
        took: dict[str, float] = {}
        states: dict[str, Any] = {}
        for arm in order:
            say(f"  restoring: {arm} ...")
            if arm == "full":
                took[arm], states[arm] = replay_plain(emulator, plain)
                continue
            history_name, _, how = arm.partition(", ")
            directory = dirs[history_name] if how != "sigterm" else workdir / f"startup-{history_name}-stopped"
            samples = []
            for _ in range(settings.repeat if how == "sigterm" else 1):  # ~10 ms each: one sample is noise
                seconds, states[arm], facts = restore(emulator, directory)
                samples.append(seconds)
            took[arm] = Spread.of(samples).median
            tails[arm] = facts["tail"]
        if len({repr(state) for arm, state in states.items() if arm != "localstack"}) != 1:
            raise BenchmarkError("the histories did not restore the same live state")
        for arm in arms:
            times[arm].append(took[arm])
        for how in ("kill -9", "sigterm"):
            ratios[how].append(took[f"long, {how}"] / took[f"short, {how}"])
        ratios["full"].append(took["long, kill -9"] / took["full"])

    seconds = {arm: round(Spread.of(values).median, 3) for arm, values in times.items()}
    common: dict[str, float | int | str] = {
        **{f"restore_s[{arm}]": value for arm, value in seconds.items() if arm != "localstack"},
        **{f"calls_replayed[{arm}]": tail for arm, tail in tails.items() if arm != "localstack"},
        "long_calls": long["calls"],
        "long_checkpoints": long["checkpoints"],
        "short_checkpoints": short["checkpoints"],
        "record_long_calls_per_s": round(long["calls"] / long["seconds"], 1),
    }
    title = f"(f) restore after {settings.long:,} calls / after {settings.short:,}, same live state"
    return [
        Result(
            "f-long-vs-short-sigterm",
            f"{title}, stopped",
            "x",
            Spread.of(ratios["sigterm"]),
            RATIO_TARGET,
            False,
            common,
        ),
        Result("f-long-vs-short-kill", f"{title}, killed", "x", Spread.of(ratios["kill -9"]), RATIO_TARGET, False),
        Result(
            "f-long-vs-full",
            f"(f) restore after {settings.long:,} calls, killed / plain full replay of them",
            "x",
            Spread.of(ratios["full"]),
            None,
            False,
        ),
        Result(
            "f-localstack",
            f"(f) restore after a {settings.localstack:,}-call history of about 3 KB calls, killed",
            "s",
            Spread.of(times["localstack"]),
            LOCALSTACK_TARGET_S,
            False,
            {
                "calls": ls["calls"],
                "checkpoints": ls["checkpoints"],
                "calls_replayed": tails["localstack"],
                "log_mb": round(sum(p.stat().st_size for p in dirs["localstack"].rglob("*.json")) / 1e6, 1),
            },
        ),
    ]
