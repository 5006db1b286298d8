"""(a, concurrent) moto throughput with ``fsync=always`` recording vs without, 8 threads at once.

Under ``always`` each call waits for its entry to reach the disk.  One thread
at a time pays one ``fdatasync`` per call; threads calling at once share them
(the log's group commit), which is how a threaded ``replay serve`` with several
clients runs.  Each round starts ``threads`` threads that each send one batch
of the same DynamoDB / S3 / SQS workload as (a); the queue is purged after the
round, outside the timed region.  Per round, the paired value is ``time
without / time with`` (the throughput ratio).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread, moto_with_workload, now_ns, rotations, send_ok

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import moto_seeder
from replay.restore.transport import WSGITransport

__all__ = ["Settings", "run"]

TARGET = 0.85


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 16
    threads: int = 8
    per_service: int = 6


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    app, plain, workload = moto_with_workload(settings.per_service)
    batches = [workload.batch(index) for index in range(settings.threads)]
    calls_per_round = sum(len(batch) for batch in batches)
    log = CallLog(workdir / "concurrent-always" / LOG_FILE_NAME, FsyncPolicy.ALWAYS)
    arms = {"without": plain, "always": WSGITransport(RecordingMiddleware(app, log, seeder=moto_seeder()))}
    failures: list[str] = []

    def one_round(transport: WSGITransport) -> int:
        def worker(batch: list) -> None:  # type: ignore[type-arg]
            for request in batch:
                status = transport.send(request).status
                if not 200 <= status < 300:
                    failures.append(f"{request.method} {request.target} answered {status}")

        threads = [threading.Thread(target=worker, args=(batch,)) for batch in batches]
        started = now_ns()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = now_ns() - started
        send_ok(plain, workload.purge)
        if failures:
            raise BenchmarkError(failures[0])
        return elapsed

    try:
        for transport in arms.values():
            one_round(transport)  # warm-up
        times: dict[str, list[int]] = {name: [] for name in arms}
        for number, order in enumerate(rotations(list(arms), settings.rounds), 1):
            for name in order:
                times[name].append(one_round(arms[name]))
            say(f"  (a8) round {number}/{settings.rounds}")
    finally:
        log.close()

    ratios = [without / with_ for without, with_ in zip(times["without"], times["always"], strict=True)]

    def per_call_us(name: str) -> float:
        return Spread.of([t / calls_per_round / 1000 for t in times[name]]).median

    return [
        Result(
            key="throughput.always.threads",
            title=f"(a) moto throughput, {settings.threads} threads, fsync=always / without",
            unit="x",
            value=Spread.of(ratios),
            target=TARGET,
            higher_is_better=True,
            details={
                "per_call_us_without": round(per_call_us("without"), 2),
                "per_call_us_with": round(per_call_us("always"), 2),
                "threads": settings.threads,
                "rounds": settings.rounds,
            },
        )
    ]
