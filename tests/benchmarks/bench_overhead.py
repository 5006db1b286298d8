"""(b) Time the recorder adds per call, around a no-op WSGI app.

The app answers ``200`` with a 2-byte JSON body and does nothing else, so the
difference between the arms is the middleware and the log: parsing the environ,
classifying, redacting, encoding the entry and appending it.  The request is a
mutating JSON-protocol ``POST`` (DynamoDB ``PutItem`` with an ``X-Amz-Target``).
Both arms call the WSGI app directly with the same environ factory (a copy of a
template environ plus a fresh ``BytesIO`` per call), consume the response
iterable fully and call ``close()`` when there is one, so the harness costs the
same in every arm.  Each round runs ``calls`` calls per arm, in rotating order,
and a fresh log per round and policy (closed and removed outside the timed
region, so the files stay small), opened ``exclusive`` as ``replay serve`` opens it.  The paired value is
``(time with - time without) / calls`` in microseconds.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from _harness import BenchmarkError, Result, Spread, now_ns, quiet_gc, rotations
from _workload import TABLE, json_request

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import generic_seeder
from replay.record.wsgi import environ_from_request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Settings", "run"]

TARGET_US = 10.0
_BODY = b"{}"
_HEADERS = [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(_BODY)))]


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 12
    calls: int = 5000


def noop_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app that does nothing: ``200`` and ``{}``."""
    start_response("200 OK", _HEADERS)
    return [_BODY]


def _ignore(data: bytes) -> None:
    return None


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable[[bytes], None]:
    return _ignore


def _time_calls(app: WSGIApplication, template: WSGIEnvironment, body: bytes, calls: int) -> int:
    """``calls`` calls of ``app``, each on a fresh copy of ``template``; the nanoseconds they took."""
    start_response: StartResponse = _start_response
    bytes_io = io.BytesIO
    with quiet_gc():
        started = now_ns()
        for _ in range(calls):
            environ = template.copy()
            environ["wsgi.input"] = bytes_io(body)
            iterable = app(environ, start_response)
            for _chunk in iterable:
                pass
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        return now_ns() - started


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    request = json_request(
        "dynamodb",
        "DynamoDB_20120810.PutItem",
        {"TableName": TABLE, "Item": {"pk": {"S": "user#0001"}, "name": {"S": "User number 1"}}},
    )
    template = environ_from_request(request, "localhost", 4566)
    body = request.body
    policies = (FsyncPolicy.EVERYSEC, FsyncPolicy.NO)
    seeded = "everysec+seeded"  # with the generic seeder, as `replay serve --app` runs any app that is not moto
    names = ["without", *(policy.value for policy in policies), seeded]
    seeder = generic_seeder()
    times: dict[str, list[int]] = {name: [] for name in names}

    def one_round(name: str, calls: int) -> int:
        if name == "without":
            return _time_calls(noop_app, template, body, calls)
        policy = FsyncPolicy(name.split("+")[0])
        directory = workdir / f"overhead-{name}"
        log = CallLog(directory / LOG_FILE_NAME, policy, exclusive=True)  # as a served log (one writer) is
        try:
            middleware = RecordingMiddleware(noop_app, log, seeder=seeder if name == seeded else None)
            elapsed = _time_calls(middleware, template, body, calls)
        finally:
            log.close()
        with open(log.path, "rb") as handle:
            recorded = sum(1 for _ in handle)
        if recorded != calls:
            raise BenchmarkError(f"{log.path}: {recorded} entries recorded, expected {calls}")
        shutil.rmtree(directory)
        return elapsed

    for name in names:  # warm-up
        one_round(name, min(settings.calls, 1000))
    for number, order in enumerate(rotations(names, settings.rounds), 1):
        for name in order:
            times[name].append(one_round(name, settings.calls))
        say(f"  (b) round {number}/{settings.rounds}")

    def per_call(name: str) -> list[float]:
        return [t / settings.calls / 1000 for t in times[name]]

    results = []
    for arm in [*(policy.value for policy in policies), seeded]:
        added = [with_ - without for without, with_ in zip(per_call("without"), per_call(arm), strict=True)]
        title = f"fsync={arm}" if arm != seeded else "fsync=everysec, generic seeder"
        results.append(
            Result(
                key=f"overhead.{arm}",
                title=f"(b) time added per recorded call, {title}",
                unit="us",
                value=Spread.of(added),
                target=TARGET_US,
                higher_is_better=False,
                details={
                    "per_call_us_without": round(Spread.of(per_call("without")).median, 3),
                    "per_call_us_with": round(Spread.of(per_call(arm)).median, 3),
                    "calls_per_round": settings.calls,
                    "rounds": settings.rounds,
                },
            )
        )
    return results
