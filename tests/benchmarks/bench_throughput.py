"""(a) moto throughput in-process, with recording (fsync everysec / always) vs without.

The arms share one moto app and are interleaved batch by batch within each
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

Two more arms, in the same rounds, measure the ceiling of *always* with one caller on
the log's filesystem: moto's app called directly, then a line as long as the
*always* log's mean entry made durable (``fdatasync``) before the answer, appended
(the log's way) or written into a preallocated, zero-filled file.  Each call of them
blocks on the disk as *always* does, so what blocking costs besides the sync itself
(the thread idles and wakes) is in them too; *always* / that ceiling is the
recorder's own share.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread, moto_with_workload, now_ns, quiet_gc, rotations, send_ok

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.entry import Request, Response
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import moto_seeder
from replay.restore.transport import Transport, WSGITransport

__all__ = ["Settings", "run"]

TARGETS = {FsyncPolicy.EVERYSEC: 0.98, FsyncPolicy.ALWAYS: 0.85}
CEILING_APPEND = "ceiling-append"
CEILING_INPLACE = "ceiling-inplace"


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 40
    batches: int = 4
    per_service: int = 10


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


class _SyncedTransport:
    """Moto's app called directly, then one entry-sized line made durable before the answer is returned: what
    any log that syncs each call before acknowledging it must pay at the least, the recorder's own work aside.

    ``inplace`` writes into a preallocated, zero-filled file (``size`` bytes) instead of appending, so that an
    ``fdatasync`` has no file size to commit, only data.
    """

    def __init__(self, plain: WSGITransport, path: Path, line: int, inplace: bool = False, size: int = 0) -> None:
        self.plain = plain
        self.line = b"x" * (line - 1) + b"\n"
        self.inplace = inplace
        self.offset = 0
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if inplace else os.O_APPEND), 0o600)
        if inplace:
            for _ in range(0, size, 1 << 20):
                os.write(self.fd, bytes(1 << 20))
            os.fsync(self.fd)  # the zeros are durable, size included, before the first timed write
        self.size = size

    def send(self, request: Request) -> Response:
        response = self.plain.send(request)
        if self.inplace:
            if self.offset + len(self.line) > self.size:
                raise BenchmarkError(f"the preallocated file ({self.size} bytes) is full")
            os.pwrite(self.fd, self.line, self.offset)
            self.offset += len(self.line)
        else:
            os.write(self.fd, self.line)
        os.fdatasync(self.fd)
        return response

    def close(self) -> None:
        os.close(self.fd)


def _mean_line(path: Path) -> int:
    lines = _count_lines(path)
    if not lines:
        raise BenchmarkError(f"{path}: nothing recorded")
    return max(1, path.stat().st_size // lines)


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    app, plain, workload = moto_with_workload(settings.per_service)
    batches = [workload.batch(index) for index in range(settings.batches)]
    calls_per_round = sum(len(batch) for batch in batches)

    policies = (FsyncPolicy.EVERYSEC, FsyncPolicy.ALWAYS)
    logs = {  # exclusive, as a served log is (its process holds the data dir's lock)
        policy: CallLog(workdir / f"throughput-{policy.value}" / LOG_FILE_NAME, policy, exclusive=True)
        for policy in policies
    }
    arms: dict[str, Transport] = {"without": plain}
    for policy in policies:
        arms[policy.value] = WSGITransport(RecordingMiddleware(app, logs[policy], seeder=moto_seeder()))
    purge = workload.purge

    def one_batch(transport: Transport, batch: list[Request]) -> int:
        send = transport.send
        started = now_ns()
        for request in batch:
            status = send(request).status
            if not 200 <= status < 300:
                raise BenchmarkError(f"{request.method} {request.target} answered {status}")
        elapsed = now_ns() - started
        send_ok(plain, purge)  # untimed: keeps the queue depth (and SendMessage's cost) fixed
        return elapsed

    def one_round(number: int, names: list[str]) -> dict[str, int]:
        """Every arm's time for the round's batches; the arms take turns batch by batch (in rotating order),
        so that a burst of noise on this shared machine falls on all of them alike."""
        elapsed = dict.fromkeys(names, 0)
        rotated = list(rotations(names, len(names)))
        with quiet_gc():
            for index, batch in enumerate(batches):
                for name in rotated[(number + index) % len(rotated)]:
                    elapsed[name] += one_batch(arms[name], batch)
        return elapsed

    synced: list[_SyncedTransport] = []
    try:
        one_round(0, list(arms))  # warm-up: moto's per-service apps, caches, the log files
        # the two ceilings of always, with lines as long as the ones it writes
        line = _mean_line(logs[FsyncPolicy.ALWAYS].path)
        room = line * calls_per_round * (settings.rounds + 1) + (1 << 20)
        synced = [
            _SyncedTransport(plain, workdir / "sync-append", line),
            _SyncedTransport(plain, workdir / "sync-inplace", line, inplace=True, size=room),
        ]
        arms[CEILING_APPEND], arms[CEILING_INPLACE] = synced
        names = list(arms)
        one_round(0, [CEILING_APPEND, CEILING_INPLACE])  # their warm-up
        times: dict[str, list[int]] = {name: [] for name in names}
        for number in range(1, settings.rounds + 1):
            for name, elapsed in one_round(number, names).items():
                times[name].append(elapsed)
            say(f"  (a) round {number}/{settings.rounds}")
    finally:
        for log in logs.values():
            log.close()
        for transport in synced:
            transport.close()

    expected = calls_per_round * (settings.rounds + 1)
    for policy in policies:
        recorded = _count_lines(logs[policy].path)
        if recorded != expected:
            raise BenchmarkError(f"{logs[policy].path}: {recorded} entries recorded, expected {expected}")

    def per_call_us(name: str) -> float:
        return Spread.of([t / calls_per_round / 1000 for t in times[name]]).median

    def ratios(numerator: str, denominator: str) -> Spread:
        return Spread.of([a / b for a, b in zip(times[numerator], times[denominator], strict=True)])

    common: dict[str, float | int | str] = {"calls_per_round": calls_per_round, "rounds": settings.rounds}
    results = []
    for policy in policies:
        results.append(
            Result(
                key=f"throughput.{policy.value}",
                title=f"(a) moto throughput, recording fsync={policy.value} / without",
                unit="x",
                value=ratios("without", policy.value),
                target=TARGETS[policy],
                higher_is_better=True,
                details={
                    "per_call_us_without": round(per_call_us("without"), 2),
                    "per_call_us_with": round(per_call_us(policy.value), 2),
                    **common,
                },
            )
        )
    for name, label in (
        (CEILING_APPEND, f"appended ({line} bytes, the log's way)"),
        (CEILING_INPLACE, f"written into a preallocated zero-filled file ({line} bytes)"),
    ):
        results.append(
            Result(
                key=f"throughput.always-{name}",
                title=f"(a) ceiling of fsync=always, one caller: without / (without + one line {label} + fdatasync)",
                unit="x",
                value=ratios("without", name),
                target=None,
                higher_is_better=True,
                details={"per_call_us": round(per_call_us(name), 2), "line_bytes": line, **common},
            )
        )
    results.append(
        Result(
            key="throughput.always-of-ceiling",
            title="(a) recording fsync=always / its ceiling (appended line + fdatasync): the recorder's own share",
            unit="x",
            value=ratios(CEILING_APPEND, FsyncPolicy.ALWAYS.value),
            target=None,
            higher_is_better=True,
            details=common,
        )
    )
    return results
