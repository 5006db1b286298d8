"""(k) Instructions per call, counted by cachegrind: the recorder's cost without this box's noise.

Timings on these shared 2-core machines move by 10-30 % from one run to the next, more than
the few per cent (a) and (b) look for; instruction counts do not (the same work, the hash seed
fixed).  Each arm runs in a fresh interpreter under ``valgrind --tool=cachegrind`` twice, after
the same warm-up, once with no timed call and once with ``calls`` of them: the difference over
``calls`` is what one call costs.  Arms:

* around a no-op app, the (b) loop: without the recorder, and with it (``everysec``);
* moto in-process, the (a) workload (DynamoDB PutItem, S3 PutObject, SQS SendMessage, the queue
  purged after each batch): without the recorder, with it, and with it and the moto seeder
  (as ``replay serve`` records).

Reported: the instructions the recorder adds to a call around the no-op app, and for moto the
ratio without / with (what throughput would be were every instruction to cost the same; the
time ratio of (a) is lower, since the recorder also makes system calls and touches memory the
call does not).  Without ``valgrind`` on PATH nothing is reported.  The arms run two at a time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread

__all__ = ["Settings", "run"]

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


@dataclasses.dataclass(frozen=True)
class Settings:
    noop_calls: int = 2000
    moto_batches: int = 4  # of 30 calls each


def _count(arm: str, calls: int, workdir: Path) -> int:
    """Instructions one interpreter runs doing ``arm``'s warm-up and then ``calls`` timed calls."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__)),
        arm,
        str(calls),
        str(workdir),
    ]
    environ = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=1800, check=False)
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise BenchmarkError(f"cachegrind {arm} {calls}: exit {done.returncode}: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def _per_call(arm: str, calls: int, workdir: Path, pool: concurrent.futures.Executor) -> float:
    base, full = pool.submit(_count, arm, 0, workdir), pool.submit(_count, arm, calls, workdir)
    return (full.result() - base.result()) / calls


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    if shutil.which("valgrind") is None:
        say("  (k) skipped: valgrind is not on PATH")
        return []
    moto_calls = settings.moto_batches * 30
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        say("  (k) counting the no-op arms ...")
        noop = {arm: _per_call(arm, settings.noop_calls, workdir, pool) for arm in ("noop", "noop-recorded")}
        say("  (k) counting the moto arms ...")
        moto = {arm: _per_call(arm, moto_calls, workdir, pool) for arm in ("moto", "moto-recorded", "moto-seeded")}
    added = noop["noop-recorded"] - noop["noop"]
    results = [
        Result(
            key="instructions.noop",
            title="(k) instructions the recorder adds per call around a no-op app (cachegrind, everysec)",
            unit="",
            value=Spread.of([added]),
            target=None,
            higher_is_better=False,
            details={"without": round(noop["noop"]), "with": round(noop["noop-recorded"])},
        )
    ]
    for arm, label in (("moto-recorded", "recorded"), ("moto-seeded", "recorded and seeded")):
        results.append(
            Result(
                key=f"instructions.{arm}",
                title=f"(k) moto instructions per call, without / {label} (cachegrind)",
                unit="x",
                value=Spread.of([moto["moto"] / moto[arm]]),
                target=None,
                higher_is_better=True,
                details={"without": round(moto["moto"]), "with": round(moto[arm])},
            )
        )
    return results


def _noop_arm(recorded: bool, calls: int, workdir: Path) -> None:
    import tempfile

    from bench_overhead import noop_app, overhead_requests, time_calls

    from replay.config import LOG_FILE_NAME, FsyncPolicy
    from replay.record.log import CallLog
    from replay.record.middleware import RecordingMiddleware
    from replay.record.wsgi import environ_from_request

    request = overhead_requests()["PutItem"]  # the request of (b)
    template = environ_from_request(request, "localhost", 4566)
    body = request.body
    directory = Path(tempfile.mkdtemp(dir=workdir))
    log = CallLog(directory / LOG_FILE_NAME, FsyncPolicy.EVERYSEC, exclusive=True)
    app = RecordingMiddleware(noop_app, log) if recorded else noop_app

    time_calls(app, template, body, 200 + calls)  # the first 200 warm caches up (plans, memoised classifications)
    log.close()
    shutil.rmtree(directory)


def _moto_arm(arm: str, batches: int, workdir: Path) -> None:
    import tempfile

    from _workload import prepare_environment

    prepare_environment()
    from _harness import moto_with_workload, send_ok

    from replay.config import LOG_FILE_NAME, FsyncPolicy
    from replay.record.log import CallLog
    from replay.record.middleware import RecordingMiddleware
    from replay.record.seeding import moto_seeder
    from replay.restore.transport import WSGITransport

    seeder = moto_seeder()  # hooked in every arm, as in (a): only whether a call runs seeded differs
    app, plain, workload = moto_with_workload(10)
    directory = Path(tempfile.mkdtemp(dir=workdir))
    log = CallLog(directory / LOG_FILE_NAME, FsyncPolicy.EVERYSEC, exclusive=True)
    transport = plain
    if arm != "moto":
        transport = WSGITransport(RecordingMiddleware(app, log, seeder=seeder if arm == "moto-seeded" else None))
    batch = workload.batch(0)
    for _ in range(2 + batches):  # two batches of warm-up
        for request in batch:
            transport.send(request)
        send_ok(plain, workload.purge)
    log.close()
    shutil.rmtree(directory)


if __name__ == "__main__":  # one arm, run under cachegrind by _count
    sys.path.insert(0, str(Path(__file__).parent))
    name, count, where = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    if name.startswith("noop"):
        _noop_arm(name == "noop-recorded", count, where)
    else:
        _moto_arm(name, count // 30, where)
