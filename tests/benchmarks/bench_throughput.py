"""(a) moto throughput in-process, with recording (fsync everysec / always) vs without.

Three arms share one moto app and are interleaved batch by batch within each
round (rotating order): *without* sends each request through
:class:`~replay.restore.transport.WSGITransport` straight to moto's app; *everysec* and
*always* send it through the same transport to the app wrapped in
:class:`~replay.record.middleware.RecordingMiddleware` over a
:class:`~replay.record.log.CallLog` with that fsync policy, seeding each call as
``replay serve`` does (:func:`~replay.record.seeding.moto_seeder`).  Each log stays open for
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
from replay.record.entry import Request
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import moto_seeder
from replay.restore.transport import WSGITransport

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
    logs = {  # exclusive, as a served log is (its process holds the data dir's lock)
        policy: CallLog(workdir / f"throughput-{policy.value}" / LOG_FILE_NAME, policy, exclusive=True)
        for policy in policies
    }
    arms: dict[str, WSGITransport] = {"without": plain}
    for policy in policies:
        arms[policy.value] = WSGITransport(RecordingMiddleware(app, logs[policy], seeder=moto_seeder()))
    purge = workload.purge

    def one_batch(transport: WSGITransport, batch: list[Request]) -> int:
        send = transport.send
        started = now_ns()
        for request in batch:
            status = send(request).status
            if not 200 <= status < 300:
                raise BenchmarkError(f"{request.method} {request.target} answered {status}")
        elapsed = now_ns() - started
        send_ok(plain, purge)  # untimed: keeps the queue depth (and SendMessage's cost) fixed
        return elapsed

    def one_round(number: int) -> dict[str, int]:
        """Every arm's time for the round's batches; the arms take turns batch by batch (in rotating order),
        so that a burst of noise on this shared machine falls on all of them alike."""
        elapsed = dict.fromkeys(names, 0)
        with quiet_gc():
            for index, batch in enumerate(batches):
                for name in rotated[(number + index) % len(rotated)]:
                    elapsed[name] += one_batch(arms[name], batch)
        return elapsed

    names = list(arms)
    rotated = list(rotations(names, len(names)))
    try:
        one_round(0)  # warm-up: moto's per-service apps, caches, the log files
        times: dict[str, list[int]] = {name: [] for name in names}
        for number in range(1, settings.rounds + 1):
            for name, elapsed in one_round(number).items():
                times[name].append(elapsed)
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
    results += _always_ceiling(workdir, times["without"], times[FsyncPolicy.EVERYSEC.value], calls_per_round)
    return results


def _sync_costs(workdir: Path, samples: int = 400, line: int = 1024) -> tuple[list[float], list[float]]:
    """Seconds for one ``fdatasync`` after appending a ``line``-byte entry (the file grows: its size is metadata
    the sync must also commit), and after writing one in place into a preallocated, zero-filled file (only data
    to flush); interleaved, on the log's filesystem."""
    import os
    import time

    grow, inplace = workdir / "sync-append", workdir / "sync-inplace"
    appended = os.open(grow, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    ahead = os.open(inplace, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    data = b"x" * (line - 1) + b"\n"
    try:
        os.write(ahead, bytes(line * samples))  # zeros, durable before the samples
        os.fsync(ahead)
        costs: tuple[list[float], list[float]] = ([], [])
        for number in range(samples):
            for arm in (0, 1) if number % 2 else (1, 0):
                started = time.perf_counter()
                if arm == 0:
                    os.write(appended, data)
                    os.fdatasync(appended)
                else:
                    os.pwrite(ahead, data, number * line)
                    os.fdatasync(ahead)
                costs[arm].append(time.perf_counter() - started)
        return costs
    finally:
        os.close(appended)
        os.close(ahead)
        grow.unlink(missing_ok=True)
        inplace.unlink(missing_ok=True)


def _always_ceiling(workdir: Path, without: list[int], everysec: list[int], calls: int) -> list[Result]:
    """The best ``always`` can do with one caller here: each call costs what ``everysec`` costs plus one sync."""
    appended, inplace = _sync_costs(workdir)
    base_ns = Spread.of([float(t) / calls for t in without]).median
    everysec_ns = Spread.of([float(t) / calls for t in everysec]).median
    results = []
    for key, label, costs in (
        ("append", "appending (the log's way)", appended),
        ("inplace", "into a preallocated zero-filled file", inplace),
    ):
        ratios = [base_ns / (everysec_ns + cost * 1e9) for cost in costs]
        results.append(
            Result(
                key=f"throughput.always-ceiling-{key}",
                title=f"(a) ceiling of fsync=always, one caller: without / (everysec + one fdatasync {label})",
                unit="x",
                value=Spread.of(ratios),
                target=None,
                higher_is_better=True,
                details={
                    "fdatasync_us": round(Spread.of([cost * 1e6 for cost in costs]).median, 1),
                    "per_call_us_without": round(base_ns / 1000, 1),
                    "per_call_us_everysec": round(everysec_ns / 1000, 1),
                },
            )
        )
    return results
