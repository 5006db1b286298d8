"""(b) Time the recorder adds per call, around a no-op WSGI app.

The app answers ``200`` with a 2-byte JSON body and does nothing else, so the
difference between the arms is the middleware and the log: parsing the environ,
classifying, redacting, encoding the entry and appending it.  The request is a
mutating JSON-protocol ``POST`` (DynamoDB ``PutItem`` with an ``X-Amz-Target``); two
realistic ones are measured too, under ``everysec``: a ``PutItem`` of 10 attributes and
an S3 ``PUT`` of a 4 kB binary object (its body base64-encoded in the entry).
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
from _workload import TABLE, json_request, s3_request

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.entry import Request
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import generic_seeder
from replay.record.wsgi import environ_from_request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Settings", "noop_app", "overhead_requests", "run", "time_calls"]

TARGET_US = 8.0  # issue 16
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


def time_calls(app: WSGIApplication, template: WSGIEnvironment, body: bytes, calls: int) -> int:
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


def overhead_requests() -> dict[str, Request]:
    """The requests of the arms: the small PutItem of (b), and two realistic ones the issue names."""
    item = {f"attribute{number:02d}": {"S": f"value {number} " + "v" * 40} for number in range(10)}
    item["pk"] = {"S": "user#0001"}
    return {
        "PutItem": json_request(
            "dynamodb",
            "DynamoDB_20120810.PutItem",
            {"TableName": TABLE, "Item": {"pk": {"S": "user#0001"}, "name": {"S": "User number 1"}}},
        ),
        "PutItem, 10 attributes": json_request(
            "dynamodb", "DynamoDB_20120810.PutItem", {"TableName": TABLE, "Item": item}
        ),
        "S3 PUT of 4 kB": s3_request("PUT", "/bucket/objects/key-0001.bin", bytes(range(256)) * 16),
    }


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    requests = overhead_requests()
    templates = {kind: environ_from_request(request, "localhost", 4566) for kind, request in requests.items()}
    bodies = {kind: request.body for kind, request in requests.items()}
    policies = (FsyncPolicy.EVERYSEC, FsyncPolicy.NO)
    seeded = "everysec+seeded"  # with the generic seeder, as `replay serve --app` runs any app that is not moto
    small = "PutItem"
    # (request kind, arm): the small PutItem under every policy and seeded, the realistic ones under everysec
    names = [(small, "without"), *((small, policy.value) for policy in policies), (small, seeded)]
    for kind in requests:
        if kind != small:
            names += [(kind, "without"), (kind, FsyncPolicy.EVERYSEC.value)]
    seeder = generic_seeder()
    times: dict[tuple[str, str], list[int]] = {name: [] for name in names}

    def one_round(name: tuple[str, str], calls: int) -> int:
        kind, arm = name
        if arm == "without":
            return time_calls(noop_app, templates[kind], bodies[kind], calls)
        policy = FsyncPolicy(arm.split("+")[0])
        directory = workdir / f"overhead-{arm}"
        log = CallLog(directory / LOG_FILE_NAME, policy, exclusive=True)  # as a served log (one writer) is
        try:
            middleware = RecordingMiddleware(noop_app, log, seeder=seeder if arm == seeded else None)
            elapsed = time_calls(middleware, templates[kind], bodies[kind], calls)
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

    def per_call(name: tuple[str, str]) -> list[float]:
        return [t / settings.calls / 1000 for t in times[name]]

    results = []
    for kind, arm in names:
        if arm == "without":
            continue
        without = per_call((kind, "without"))
        added = [with_ - base for base, with_ in zip(without, per_call((kind, arm)), strict=True)]
        title = f"fsync={arm}" if arm != seeded else "fsync=everysec, generic seeder"
        if kind != small:
            title += f", {kind}"
        results.append(
            Result(
                key=f"overhead.{arm}" if kind == small else f"overhead.{arm}.{kind.split(',')[0].replace(' ', '-')}",
                title=f"(b) time added per recorded call, {title}",
                unit="us",
                value=Spread.of(added),
                target=TARGET_US if kind == small and arm != seeded else None,
                higher_is_better=False,
                details={
                    "per_call_us_without": round(Spread.of(without).median, 3),
                    "per_call_us_with": round(Spread.of(per_call((kind, arm))).median, 3),
                    "calls_per_round": settings.calls,
                    "rounds": settings.rounds,
                },
            )
        )
    return results
