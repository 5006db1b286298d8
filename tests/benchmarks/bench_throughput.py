"""(a) moto throughput in-process, with recording (fsync everysec / always) vs without.

Three arms share one moto app and are interleaved round by round (rotating
order): *without* sends each request through
:class:`~replay.transport.WSGITransport` straight to moto's app; *everysec* and
*always* send it through the same transport to the app wrapped in
:class:`~replay.middleware.RecordingMiddleware` over a
:class:`~replay.log.CallLog` with that fsync policy, seeding each call as
``replay serve`` does (:func:`~replay.seeding.moto_seeder`).  Each log stays open for
the whole benchmark, as in a server, so the once-a-second background sync of
``everysec`` happens while the rounds run.  A round is ``batches`` batches of
DynamoDB PutItem / S3 PutObject / SQS SendMessage calls; the SQS queue is purged
after every batch, outside the timed region.  Per round, the paired value is
``time without / time with`` (the throughput ratio).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread, moto_with_workload, now_ns, quiet_gc, rotations, send_ok

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.log import CallLog
from replay.middleware import RecordingMiddleware
from replay.seeding import moto_seeder
from replay.transport import WSGITransport

__all__ = ["Settings", "run"]

TARGETS = {FsyncPolicy.EVERYSEC: 0.98, FsyncPolicy.ALWAYS: 0.85}


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 40
    batches: int = 4
    per_service: int = 10


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    app, plain, workload = moto_with_workload(settings.per_service)
    batches = [workload.batch(index) for index in range(settings.batches)]
    calls_per_round = sum(len(batch) for batch in batches)

    policies = (FsyncPolicy.EVERYSEC, FsyncPolicy.ALWAYS)
    logs = {policy: CallLog(workdir / f"throughput-{policy.value}" / LOG_FILE_NAME, policy) for policy in policies}
    arms: dict[str, WSGITransport] = {"without": plain}
    for policy in policies:
        arms[policy.value] = WSGITransport(RecordingMiddleware(app, logs[policy], seeder=moto_seeder()))
    purge = workload.purge

    def one_round(transport: WSGITransport) -> int:
        send = transport.send
        elapsed = 0
        with quiet_gc():
            for batch in batches:
                started = now_ns()
                for request in batch:
                    status = send(request).status
                    if not 200 <= status < 300:
                        raise BenchmarkError(f"{request.method} {request.target} answered {status}")
                elapsed += now_ns() - started
                send_ok(plain, purge)  # untimed: keeps the queue depth (and SendMessage's cost) fixed
        return elapsed

    try:
        names = list(arms)
        for name in names:  # warm-up: moto's per-service apps, caches, the log files
            one_round(arms[name])
        times: dict[str, list[int]] = {name: [] for name in names}
        for number, order in enumerate(rotations(names, settings.rounds), 1):
            for name in order:
                times[name].append(one_round(arms[name]))
            say(f"  (a) round {number}/{settings.rounds}")
    finally:
        for log in logs.values():
            log.close()

    expected = calls_per_round * (settings.rounds + 1)
    for policy in policies:
        recorded = _count_lines(logs[policy].path)
        if recorded != expected:
            raise BenchmarkError(f"{logs[policy].path}: {recorded} entries recorded, expected {expected}")

    def per_call_us(name: str) -> float:
        return Spread.of([t / calls_per_round / 1000 for t in times[name]]).median

    results = []
    for policy in policies:
        ratios = [without / with_ for without, with_ in zip(times["without"], times[policy.value], strict=True)]
        results.append(
            Result(
                key=f"throughput.{policy.value}",
                title=f"(a) moto throughput, recording fsync={policy.value} / without",
                unit="x",
                value=Spread.of(ratios),
                target=TARGETS[policy],
                higher_is_better=True,
                details={
                    "per_call_us_without": round(per_call_us("without"), 2),
                    "per_call_us_with": round(per_call_us(policy.value), 2),
                    "calls_per_round": calls_per_round,
                    "rounds": settings.rounds,
                },
            )
        )
    return results
