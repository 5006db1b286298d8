"""(c) Replaying a recorded log vs moto serving the same calls directly.

``calls`` mutating moto calls (the table, bucket and queue creation, then
batches of DynamoDB PutItem / S3 PutObject / SQS SendMessage, each batch
followed by a recorded PurgeQueue) are recorded once through
:class:`~replay.record.middleware.RecordingMiddleware` to a log file.  Then, in rounds
whose order alternates, on a moto freshly reset with ``POST /moto-api/reset``
(outside the timed region):

* *replay*: ``Replayer(WSGITransport(app), seeder=moto_seeder()).replay(log_path)``
  (reading and decoding the log, seeding each call, the id mapping and the
  divergence check included: what ``replay serve`` does at start-up);
* *direct*: the same :class:`~replay.record.entry.Request` objects, kept in memory,
  sent through ``WSGITransport(app)``.

The paired value is ``replay time / direct time``.  A third arm, *plain*,
replays the same log with the id mapping switched off (``mapping=False``);
``replay time / plain time`` is what the mapping costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread, now_ns, quiet_gc, rotations, send_ok
from _workload import Workload, moto_reset

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.entry import Request
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import moto_seeder
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport
from replay.serve.emulators import moto_emulator

__all__ = ["Settings", "run"]

TARGET = 1.15
MAPPING_TARGET = 1.10


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 8
    calls: int = 2000
    warmup_calls: int = 200


def _record(app_transport: WSGITransport, requests: list[Request], path: Path) -> None:
    log = CallLog(path, FsyncPolicy.NO)
    try:
        recorder = WSGITransport(RecordingMiddleware(app_transport.app, log, seeder=moto_seeder()))
        for request in requests:
            send_ok(recorder, request)
    finally:
        log.close()
    with open(path, "rb") as handle:
        recorded = sum(1 for _ in handle)
    if recorded != len(requests):
        raise BenchmarkError(f"{path}: {recorded} entries recorded, expected {len(requests)}")


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    app = moto_emulator().app
    transport = WSGITransport(app)
    seeder = moto_seeder()
    replayers = {
        "replay": Replayer(transport, seeder=seeder),
        "plain": Replayer(transport, mapping=False, seeder=seeder),
    }
    reset = moto_reset()
    requests = Workload().stream(settings.calls)
    warmup = requests[: min(settings.warmup_calls, len(requests))]
    log_path = workdir / "replay" / LOG_FILE_NAME
    warmup_path = workdir / "replay-warmup" / LOG_FILE_NAME

    send_ok(transport, reset)
    _record(transport, requests, log_path)
    send_ok(transport, reset)
    _record(transport, warmup, warmup_path)

    def replay_once(path: Path, expected: int, arm: str = "replay") -> int:
        send_ok(transport, reset)
        with quiet_gc():
            started = now_ns()
            report = replayers[arm].replay(path)
            elapsed = now_ns() - started
        if report.failed or report.restored != expected or report.torn_line is not None:
            raise BenchmarkError(
                f"replay of {path}: {report.restored} restored, {report.failed} failed, expected {expected}:"
                f" {report.failures[:3]}"
            )
        return elapsed

    def direct_once(calls: list[Request]) -> int:
        send_ok(transport, reset)
        send = transport.send
        with quiet_gc():
            started = now_ns()
            for request in calls:
                status = send(request).status
                if not 200 <= status < 300:
                    raise BenchmarkError(f"{request.method} {request.target} answered {status}")
            return now_ns() - started

    replay_once(warmup_path, len(warmup))
    replay_once(warmup_path, len(warmup), "plain")
    direct_once(warmup)
    times: dict[str, list[int]] = {"replay": [], "plain": [], "direct": []}
    for number, order in enumerate(rotations(["replay", "plain", "direct"], settings.rounds), 1):
        for name in order:
            times[name].append(
                direct_once(requests) if name == "direct" else replay_once(log_path, len(requests), name)
            )
        say(f"  (c) round {number}/{settings.rounds}")
    send_ok(transport, reset)

    ratios = [replay / direct for replay, direct in zip(times["replay"], times["direct"], strict=True)]
    mapping_ratios = [replay / plain for replay, plain in zip(times["replay"], times["plain"], strict=True)]

    def per_call_us(name: str) -> float:
        return Spread.of([t / len(requests) / 1000 for t in times[name]]).median

    replay_us, direct_us = per_call_us("replay"), per_call_us("direct")
    return [
        Result(
            key="replay.ratio",
            title="(c) replay time per call / moto serving the calls directly",
            unit="x",
            value=Spread.of(ratios),
            target=TARGET,
            higher_is_better=False,
            details={
                "per_call_us_replay": round(replay_us, 2),
                "per_call_us_direct": round(direct_us, 2),
                "per_call_us_added": round(replay_us - direct_us, 2),
                "calls": len(requests),
                "log_bytes": log_path.stat().st_size,
                "rounds": settings.rounds,
            },
        ),
        Result(
            key="replay.mapping",
            title="(c) replay with id mapping / plain replay of the same log",
            unit="x",
            value=Spread.of(mapping_ratios),
            target=MAPPING_TARGET,
            higher_is_better=False,
            details={
                "per_call_us_mapping": round(replay_us, 2),
                "per_call_us_plain": round(per_call_us("plain"), 2),
                "rounds": settings.rounds,
            },
        ),
    ]
