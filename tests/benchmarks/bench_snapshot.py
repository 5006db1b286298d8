"""(d) The snapshot backend: save cost, restore vs replay, and serving other services during a save.

* *save*: ``SnapshotBackend.save_service("dynamodb")`` (moto adapter pickling,
  SHA-256, HMAC, atomic write with fsync) vs plain ``pickle.dumps`` of the same
  backends plus writing the bytes to a file, on a table of ``items`` items;
  target <= 1.3x.
* *restore*: loading that snapshot into an empty moto vs replaying the
  ``items`` recorded PutItems (plus CreateTable) into an empty moto; the ratio,
  and the absolute restore time (target < 50 ms for 2,000 items).
* *latency*: SQS ListQueues latency while DynamoDB is being saved over and
  over vs with no save running (per-service locks: other services keep serving).
"""

from __future__ import annotations

import dataclasses
import pickle
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread, now_ns, quiet_gc, rotations, send_ok
from _workload import TABLE, create_table, json_request, moto_reset

from replay.backends.snapshot import SnapshotBackend
from replay.config import LOG_FILE_NAME, SaveStrategy
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport
from replay.serve.emulators import moto_emulator

__all__ = ["Settings", "run"]


@dataclasses.dataclass(frozen=True)
class Settings:
    items: int = 2000
    rounds: int = 8
    latency_calls: int = 200


def _put(number: int) -> object:
    item = {"pk": {"S": f"item-{number}"}, "n": {"N": str(number)}, "payload": {"S": "x" * 64}}
    return json_request("dynamodb", "DynamoDB_20120810.PutItem", {"TableName": TABLE, "Item": item})


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    emulator = moto_emulator()
    assert emulator.adapter is not None
    app, adapter = emulator.app, emulator.adapter
    plain = WSGITransport(app)
    send_ok(plain, moto_reset())
    log = CallLog(workdir / "snapshot-history" / LOG_FILE_NAME)
    recorder = WSGITransport(RecordingMiddleware(app, log, seeder=emulator.seeder))
    for request in [create_table(), *(_put(n) for n in range(settings.items))]:
        send_ok(recorder, request)  # type: ignore[arg-type]
    log.close()
    backend = SnapshotBackend(adapter, workdir / "snapshot-data", save=SaveStrategy.MANUAL)
    backend.restore()
    plain_file = workdir / "plain.pickle"

    def save_ours() -> int:
        with quiet_gc():
            started = now_ns()
            backend.save_service("dynamodb")
            return now_ns() - started

    def save_plain() -> int:
        from moto.backends import get_backend

        with quiet_gc():
            started = now_ns()
            backends = {account: dict(regions) for account, regions in dict.items(get_backend("dynamodb"))}
            plain_file.write_bytes(pickle.dumps(backends, protocol=pickle.HIGHEST_PROTOCOL))
            return now_ns() - started

    def restore_snapshot() -> int:
        send_ok(plain, moto_reset())
        with quiet_gc():
            started = now_ns()
            backend.load_service("dynamodb")
            return now_ns() - started

    def restore_replay() -> int:
        send_ok(plain, moto_reset())
        with quiet_gc():
            started = now_ns()
            report = Replayer(plain, seeder=emulator.seeder).replay(log.path)
            elapsed = now_ns() - started
        if report.failed or report.restored != settings.items + 1:
            raise BenchmarkError(f"replay restored {report.restored}, failed {report.failed}")
        return elapsed

    save_ours(), save_plain()  # warm-up
    times: dict[str, list[int]] = {"ours": [], "plain": [], "snapshot": [], "replay": []}
    for number, order in enumerate(rotations(["ours", "plain"], settings.rounds), 1):
        for name in order:
            times[name].append(save_ours() if name == "ours" else save_plain())
        say(f"  (d) save round {number}/{settings.rounds}")
    for number, order in enumerate(rotations(["snapshot", "replay"], max(2, settings.rounds // 2)), 1):
        for name in order:
            times[name].append(restore_snapshot() if name == "snapshot" else restore_replay())
        say(f"  (d) restore round {number}")

    # latency of another service while dynamodb is saved again and again
    served = WSGITransport(backend.wrap(app))
    list_queues = json_request("sqs", "AmazonSQS.ListQueues", {}, query_mode=True)

    def latencies() -> list[float]:
        values = []
        for _ in range(settings.latency_calls):
            started = time.perf_counter()
            send_ok(served, list_queues)
            values.append((time.perf_counter() - started) * 1e6)
        return values

    idle = latencies()
    stop = threading.Event()

    def keep_saving() -> None:
        while not stop.is_set():
            backend.save_service("dynamodb")

    saver = threading.Thread(target=keep_saving)
    saver.start()
    try:
        busy = latencies()
    finally:
        stop.set()
        saver.join()
    backend.close()

    save_ratios = [ours / plain for ours, plain in zip(times["ours"], times["plain"], strict=True)]
    restore_ratios = [snap / rep for snap, rep in zip(times["snapshot"], times["replay"], strict=True)]
    restore_ms = Spread.of([t / 1e6 for t in times["snapshot"]])
    return [
        Result(
            key="snapshot.save",
            title=f"(d) snapshot save / plain pickle.dumps + write, DynamoDB {settings.items} items",
            unit="x",
            value=Spread.of(save_ratios),
            target=1.3,
            higher_is_better=False,
            details={
                "per_call_us_ours": round(statistics.median(times["ours"]) / 1000, 1),
                "per_call_us_plain": round(statistics.median(times["plain"]) / 1000, 1),
                "bytes": backend.path("dynamodb").stat().st_size,
            },
        ),
        Result(
            key="snapshot.restore_ratio",
            title=f"(d) restore from snapshot / replay of {settings.items} PutItems",
            unit="x",
            value=Spread.of(restore_ratios),
            target=None,
            higher_is_better=False,
            details={
                "per_call_us_snapshot": round(statistics.median(times["snapshot"]) / 1000, 1),
                "per_call_us_replay": round(statistics.median(times["replay"]) / 1000, 1),
            },
        ),
        Result(
            key="snapshot.restore_ms",
            title=f"(d) restore of a {settings.items}-item DynamoDB table from its snapshot, ms",
            unit="ms",
            value=restore_ms,
            target=50.0,
            higher_is_better=False,
        ),
        Result(
            key="snapshot.latency",
            title="(d) SQS latency while DynamoDB is being saved / with no save running",
            unit="x",
            value=Spread.of([statistics.median(busy) / statistics.median(idle)]),
            target=None,
            higher_is_better=False,
            details={
                "per_call_us_idle": round(statistics.median(idle), 1),
                "per_call_us_during_saves": round(statistics.median(busy), 1),
                "p99_us_during_saves": round(sorted(busy)[int(len(busy) * 0.99) - 1], 1),
            },
        ),
    ]
