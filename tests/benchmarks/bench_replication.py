"""(j) Continuous replication of the call log to S3 (``replay serve --replicate``): its cost, and its lag.

The replica lives on a real S3 endpoint: a ``moto_server`` child process (``python -m
moto.server``) on a port of its choosing, its bucket made with boto3; boto3 is given the
credentials ``test`` / ``test`` for the benchmark's duration (set, then restored).

(j1) Recording throughput in-process, the workload and method of (a) (DynamoDB PutItem / S3
PutObject / SQS SendMessage through :class:`~replay.record.middleware.RecordingMiddleware` over a
:class:`~replay.record.log.CallLog` with fsync everysec, seeded as ``replay serve`` does), two
arms interleaved round by round (rotating order) on one moto app, each with its own data dir and
log, both open the whole benchmark: *off* records only; *on* records with a
:class:`~replay.share.replicator.Replicator` (interval ``interval``, 1 s) running on its data dir
the whole benchmark, as in a server.  A round lasts about ``seconds`` (several intervals: the
replicator's work is once per interval, a round of (a)'s length would see none of it), its
batch count calibrated on the *off* arm at the start; it is timed whole, the untimed-in-(a) queue
purges included (the same in both arms), so that replicator work falling between batches is
counted too.  After each *on* round, untimed, the harness waits until the replicator has cut the
log's last entry and uploaded every pending file (``status()``: ``pending`` 0, ``uploaded``
grown); else it fails.  So no replication work of a round spills into the next round (the idle
ticks in between, and the lease renewal every 5 s, still fall where they fall), but the entries
recorded after the last tick inside a round (on average half an interval's worth) are shipped
in that untimed wait: the ratio under-counts the per-entry part of the cost by about
``interval / 2 / seconds``.  Per round, the paired value is ``time off / time on``.  The
replicator's own CPU time (``time.thread_time`` around its ``cut`` and ``sync``, via a subclass
that changes nothing else) is reported as well, per replicated call: an upper bound of what it
takes from the recording thread, whatever the rounds' phase.  At the end the replicator is
stopped and the replica checked: its generation's segments must chain up to the log's last entry,
and hold every entry of the log, once.

(j2) Replication lag at ``rate`` calls/s: a real ``replay serve --backend replay --replicate
s3://... --replicate-interval 1s --endpoint-url ...`` (a child process, port 0); ``threads``
threads send DynamoDB PutItem calls (as botocore builds them, each item numbered, over one
``http.client`` connection per thread: ``requests`` or boto3 would cost the benchmark more CPU
than the server on a small machine), paced to ``rate`` calls/s in all for ``duration``
seconds; each call's acknowledgement time is noted.  A poller lists the generation's segments
(the generation named by the server's health endpoint; ``StartAfter`` the last key seen, so a
listing stays small) every ``poll`` seconds and notes when each segment object first shows up
(the end of the listing that first shows it: an upper bound, off by at most the poll period plus
one listing).  Once every call was acknowledged and the replica's segments reach the log's last
entry, each segment is downloaded and each of its entries matched to its call *exactly*, by the
item number in the recorded request body: lag = appearance of its segment - acknowledgement of
that call.  Every call must be in the replica, once (else the harness fails).  The run is cut
into ``windows`` windows of equal length (by send time) for a spread: the reported values are the
medians over windows of each window's median, p99 and achieved call rate; the maximum is over all
calls.  For reference the lag measured from the entries' own ``time`` field (when the server
started the call: acknowledgement minus latency) is given as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.client
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import requests
from _harness import (
    REPLAY_LISTENING,
    BenchmarkError,
    Result,
    Spread,
    child_env,
    moto_with_workload,
    now_ns,
    quiet_gc,
    rotations,
    send_ok,
)
from _workload import TABLE, create_table, json_request

from replay.config import LOG_FILE_NAME, FsyncPolicy
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.seeding import moto_seeder
from replay.restore.transport import HTTPTransport, WSGITransport
from replay.share.replica import Generation, SegmentName
from replay.share.replicator import ReplicaSource, Replicator

__all__ = ["Settings", "run"]

COST_TARGET = 0.98  # replication costs at most 2 % of the recording throughput
LAG_TARGET = 1.0  # seconds, at 500 calls/s
BUCKET = "replay-bench-replica"
_MOTO_LISTENING = re.compile(rb"Running on http://[^\s:]+:(\d+)")
_AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
_NOT_FORWARDED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "expect"})
_AWS_UNSET = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@dataclasses.dataclass(frozen=True)
class Settings:
    # (j1)
    rounds: int = 10
    seconds: float = 3.0  # length of one timed round (the arms alike)
    per_service: int = 10
    interval: float = 1.0  # the replicator's, in (j1) and (j2)
    # (j2)
    rate: float = 500.0  # calls per second, all threads together
    duration: float = 20.0
    threads: int = 12
    windows: int = 5
    poll: float = 0.05
    timeout: float = 60.0


# --- the S3 endpoint -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _aws_environment() -> Iterator[None]:
    """Credentials and region for boto3 in this process (the in-process replicator's client reads them)."""
    saved = {name: os.environ.get(name) for name in (*_AWS, *_AWS_UNSET)}
    os.environ.update(_AWS)
    for name in _AWS_UNSET:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _child_env() -> dict[str, str]:
    """:func:`_harness.child_env` with this benchmark's credentials and no other AWS profile or endpoint."""
    env = {key: value for key, value in child_env().items() if key not in _AWS_UNSET}
    env.update(_AWS)
    return env


def _s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(
        aws_access_key_id=_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=_AWS["AWS_DEFAULT_REGION"],
    )
    return session.client("s3", endpoint_url=endpoint, config=BotoConfig(s3={"addressing_style": "path"}))


class _Child:
    """A child process on a port of its choosing (read from its stderr), its stderr in a file."""

    def __init__(self, name: str, command: list[str], listening: re.Pattern[bytes], stderr: Path) -> None:
        self.name = name
        self.command = command
        self.listening = listening
        self.stderr_path = stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def stderr(self, tail: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_bytes()[-tail:].decode(errors="replace")
        return ""

    def fail(self, why: str) -> BenchmarkError:
        self.kill()
        return BenchmarkError(f"{self.name}: {why}; stderr:\n{self.stderr()}")

    def start(self, timeout: float) -> float:
        """Spawn it; the seconds until it said which port it listens on."""
        with open(self.stderr_path, "wb") as stderr:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=_child_env()
            )
        while True:
            found = self.listening.search(self.stderr_path.read_bytes())
            if found is not None:
                self.url = f"http://127.0.0.1:{int(found.group(1))}"
                return time.perf_counter() - started
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} before it listened")
            if time.perf_counter() - started > timeout:
                raise self.fail(f"not listening within {timeout:g} s")
            time.sleep(0.01)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then wait; the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise self.fail(f"did not stop within {timeout:g} s of SIGTERM") from None
        return self.proc.returncode


@contextlib.contextmanager
def _moto_s3(workdir: Path, timeout: float, say: Callable[[str], None]) -> Iterator[str]:
    """A ``moto_server`` with the replica's bucket; its endpoint URL."""
    server = _Child(
        "moto_server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        _MOTO_LISTENING,
        workdir / "replication-moto.stderr",
    )
    server.start(timeout)
    try:
        client = _s3_client(server.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception as exc:  # not answering yet
                if time.monotonic() > deadline:
                    raise server.fail(f"cannot create the bucket: {exc}") from None
                time.sleep(0.05)
        say(f"  (j) S3 replica on moto_server at {server.url}, bucket {BUCKET}")
        yield server.url
    finally:
        server.kill()


def _segments(client: Any, prefix: str) -> list[tuple[str, SegmentName]]:
    """The segment objects under ``prefix``: their keys and parsed names (one listing, paginated)."""
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/generations/"):
        for item in page.get("Contents", []):
            key = str(item["Key"])
            parts = key.split("/")
            if len(parts) >= 2 and parts[-2] == "segments" and (name := SegmentName.parse(parts[-1])) is not None:
                found.append((key, name))
    return found


def _entries(client: Any, key: str) -> list[dict[str, Any]]:
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return [orjson.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]


# --- (j1) the cost to recording ----------------------------------------------------------------------------------


class _MeteredReplicator(Replicator):
    """A :class:`Replicator` that also adds up the CPU time of its cuts and of its whole rounds (``sync``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cut_cpu = 0.0
        self.cut_longest = 0.0  # seconds, wall clock
        self.sync_cpu = 0.0
        self.syncs = 0

    def cut(self, *args: Any, **kwargs: Any) -> None:
        started, began = time.thread_time(), time.perf_counter()
        try:
            super().cut(*args, **kwargs)
        finally:
            self.cut_cpu += time.thread_time() - started
            self.cut_longest = max(self.cut_longest, time.perf_counter() - began)

    def sync(self, *args: Any, **kwargs: Any) -> None:
        started = time.thread_time()
        try:
            super().sync(*args, **kwargs)
        finally:
            self.sync_cpu += time.thread_time() - started
            self.syncs += 1


def _caught_up(replicator: Replicator, log: CallLog, uploaded_before: int, timeout: float) -> int:
    """Wait until the replicator cut the log's last entry and uploaded every pending file; ``uploaded`` then."""
    target = log.last_seq
    deadline = time.monotonic() + timeout
    while True:
        status = replicator.status()
        uploaded = status["uploaded"]
        if not isinstance(uploaded, int):
            raise BenchmarkError(f"the replicator's status has no upload count: {status}")
        if replicator.local.cut >= target and status["pending"] == 0 and uploaded > uploaded_before:
            return uploaded
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"replication did not ship the log's entries through #{target} within {timeout:g} s "
                f"(cut through #{replicator.local.cut}): {status}"
            )
        time.sleep(0.01)


def _check_replica(client: Any, prefix: str, generation: str, log: CallLog) -> tuple[int, int]:
    """The replica holds every entry of ``log``, once, in order; the number of segments and their bytes."""
    listing = [(key, name) for key, name in _segments(client, prefix) if f"/generations/{generation}/" in key]
    chain, reached = Generation(generation, segments=sorted(name for _, name in listing)).chain(0)
    if reached != log.last_seq:
        raise BenchmarkError(
            f"the replica's segments of generation {generation} reach #{reached}, the log #{log.last_seq}"
        )
    keys = {name: key for key, name in listing}
    seqs = [entry["seq"] for name in chain for entry in _entries(client, keys[name])]
    if seqs != list(range(1, log.last_seq + 1)):
        raise BenchmarkError(f"the replica holds {len(seqs)} entries, not #1 to #{log.last_seq} once each")
    size = sum(int(client.head_object(Bucket=BUCKET, Key=keys[name])["ContentLength"]) for name in chain)
    return len(chain), size


def _cost(settings: Settings, workdir: Path, endpoint: str, say: Callable[[str], None]) -> list[Result]:
    app, plain, workload = moto_with_workload(settings.per_service)
    purge = workload.purge
    dirs = {arm: workdir / f"replication-{arm}" for arm in ("off", "on")}
    logs = {arm: CallLog(dirs[arm] / LOG_FILE_NAME, FsyncPolicy.EVERYSEC, exclusive=True) for arm in dirs}
    arms = {arm: WSGITransport(RecordingMiddleware(app, logs[arm], seeder=moto_seeder())) for arm in dirs}
    prefix = "j1"
    replicator = _MeteredReplicator(
        dirs["on"], f"s3://{BUCKET}/{prefix}", ReplicaSource.REPLAY, endpoint_url=endpoint, interval=settings.interval
    )
    catch_up = max(settings.timeout, settings.interval * 10)  # slow is reported (lag, cost), not a failure

    def one_round(transport: WSGITransport, batches: list[list[Any]]) -> int:
        send = transport.send
        with quiet_gc():
            started = now_ns()
            for batch in batches:
                for request in batch:
                    status = send(request).status
                    if not 200 <= status < 300:
                        raise BenchmarkError(f"{request.method} {request.target} answered {status}")
                send_ok(plain, purge)  # timed here (both arms alike): a replicator tick may fall in it
            return now_ns() - started

    replicator.prepare()
    replicator.start()
    stopped = False
    try:
        if replicator.status()["error"]:
            raise BenchmarkError(f"the replicator cannot reach the replica: {replicator.status()}")
        warm = [workload.batch(index) for index in range(4)]
        for arm in arms:  # warm-up: moto's per-service apps, caches, the log files
            one_round(arms[arm], warm)
        per_batch = min(one_round(arms["off"], warm) for _ in range(2)) / len(warm) / 1e9
        count = max(1, math.ceil(settings.seconds / per_batch))
        batches = [workload.batch(index) for index in range(count)]
        calls_per_round = count * len(batches[0])
        uploaded = _caught_up(replicator, logs["on"], -1, catch_up)
        say(f"  (j1) {count} batches ({calls_per_round} calls) a round, about {count * per_batch:.1f} s")
        times: dict[str, list[int]] = {arm: [] for arm in arms}
        for number, order in enumerate(rotations(list(arms), settings.rounds), 1):
            for arm in order:
                times[arm].append(one_round(arms[arm], batches))
                if arm == "on":  # untimed: the round's entries are in the replica before anything else runs
                    uploaded = _caught_up(replicator, logs["on"], uploaded, catch_up)
            say(
                f"  (j1) round {number}/{settings.rounds}: off/on {times['off'][-1] / times['on'][-1]:.3f}, "
                f"{uploaded} files uploaded"
            )
        replicator.stop()
        stopped = True
        status = replicator.status()
        if status["pending"] or status["error"]:
            raise BenchmarkError(f"the replicator stopped with files not uploaded: {status}")
        segments, size = _check_replica(_s3_client(endpoint), prefix, replicator.generation, logs["on"])
    finally:
        if not stopped:
            replicator.stop(timeout=1.0)
        for log in logs.values():
            log.close()

    entries = logs["on"].last_seq
    warm_calls = sum(len(batch) for batch in warm)
    expected = {"on": warm_calls + settings.rounds * calls_per_round}
    expected["off"] = expected["on"] + 2 * warm_calls  # and the calibration
    for arm, log in logs.items():
        if log.last_seq != expected[arm]:
            raise BenchmarkError(f"{log.path}: {log.last_seq} entries recorded, expected {expected[arm]}")

    def per_call_us(arm: str) -> float:
        return Spread.of([t / calls_per_round / 1000 for t in times[arm]]).median

    cpu_us = replicator.sync_cpu / entries * 1e6
    return [
        Result(
            key="j-replication-cost",
            title=f"(j1) recording throughput fsync=everysec, replication to S3 on / off (interval "
            f"{settings.interval:g} s, ~{settings.seconds:g} s rounds)",
            unit="x",
            value=Spread.of([off / on for off, on in zip(times["off"], times["on"], strict=True)]),
            target=COST_TARGET,
            higher_is_better=True,
            details={
                "per_call_us_without": round(per_call_us("off"), 2),
                "per_call_us_with": round(per_call_us("on"), 2),
                "calls_per_round": calls_per_round,
                "rounds": settings.rounds,
                "replicator_cpu_us_per_call": round(cpu_us, 2),
                "of_which_cut_us": round(replicator.cut_cpu / entries * 1e6, 2),
                "replicator_cpu_share": f"{cpu_us / per_call_us('on') * 100:.2f} %",
                "ticks": replicator.syncs,
                "longest_cut_ms": round(replicator.cut_longest * 1000, 1),
                "entries_replicated": entries,
                "segments": segments,
                "entries_per_segment": round(entries / segments, 1),
                "segment_kb_per_call": round(size / entries / 1000, 3),
            },
        )
    ]


# --- (j2) the lag ---------------------------------------------------------------------------------------------------


def _put_item(number: int) -> Any:
    return json_request(
        "dynamodb",
        "DynamoDB_20120810.PutItem",
        {
            "TableName": TABLE,
            "Item": {
                "pk": {"S": f"user#{number % 256:04d}"},
                "n": {"N": str(number)},
                "name": {"S": f"User number {number}"},
                "tags": {"SS": ["bench", f"group-{number % 4}"]},
            },
        },
    )


class _Poller(threading.Thread):
    """Lists a generation's segments every ``period`` seconds; when each first showed up (monotonic, wall).

    Segments are uploaded in order and their names sort in that order, so each listing asks only for the
    keys after the last one seen (``StartAfter``): its cost does not grow as the replica does.
    """

    def __init__(self, endpoint: str, prefix: str, generation: str, period: float) -> None:
        super().__init__(name="replica-poller", daemon=True)
        self.client = _s3_client(endpoint)
        self.folder = f"{prefix}/generations/{generation}/segments/"
        self.period = period
        self.seen: dict[str, tuple[SegmentName, float, float]] = {}
        self.listings: list[float] = []  # seconds each listing took
        self.failure: BaseException | None = None
        self._halt = threading.Event()

    @property
    def reached(self) -> int:
        return max((name.last for name, _, _ in list(self.seen.values())), default=0)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                began = time.monotonic()
                after = max(self.seen, default=self.folder)
                answer = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.folder, StartAfter=after)
                ended, wall = time.monotonic(), time.time()
                self.listings.append(ended - began)
                for item in answer.get("Contents", []):
                    key = str(item["Key"])
                    name = SegmentName.parse(key[len(self.folder) :])
                    if name is not None and key not in self.seen:
                        self.seen[key] = (name, ended, wall)
                self._halt.wait(max(0.0, self.period - (time.monotonic() - began)))
        except BaseException as exc:
            self.failure = exc

    def stop(self) -> None:
        self._halt.set()
        self.join()


class _RawClient:
    """An ``http.client`` connection (reopened by ``http.client`` itself when the server closed it after an
    answer, as ``replay serve`` does): a cheaper caller than ``requests``, so that the calls' pace is bounded by
    the server rather than by the benchmark's own CPU on a small machine.  Never retries (a call sent twice
    would be recorded twice)."""

    def __init__(self, url: str, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=timeout)

    def send(self, request: Any) -> tuple[int, bytes]:
        headers = {name: value for name, value in request.headers if name.lower() not in _NOT_FORWARDED}
        self.connection.request(request.method, request.target, body=request.body, headers=headers)
        answer = self.connection.getresponse()
        return answer.status, answer.read()

    def close(self) -> None:
        self.connection.close()


def _drive(url: str, settings: Settings, timeout: float) -> tuple[list[float], list[float], list[str]]:
    """Send ``rate * duration`` numbered PutItems, paced, from ``threads`` threads: their send and ack times."""
    calls = max(1, round(settings.rate * settings.duration))
    requests_ = [_put_item(number) for number in range(calls)]
    sent = [math.nan] * calls
    acked = [math.nan] * calls
    failures: list[str] = []
    start = time.monotonic() + 0.2

    def worker(first: int) -> None:
        transport = _RawClient(url, timeout)
        try:
            for number in range(first, calls, settings.threads):
                due = start + number / settings.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                sent[number] = time.monotonic()
                status, body = transport.send(requests_[number])
                acked[number] = time.monotonic()
                if status != 200:
                    failures.append(f"PutItem #{number} answered {status}: {body[:200]!r}")
                    return
        except Exception as exc:
            failures.append(f"PutItem from thread {first}: {exc}")
        finally:
            transport.close()

    workers = [threading.Thread(target=worker, args=(index,), daemon=True) for index in range(settings.threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sent, acked, failures


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _lag(settings: Settings, workdir: Path, endpoint: str, say: Callable[[str], None]) -> list[Result]:
    prefix = "j2"
    data_dir = workdir / "replication-serve"
    server = _Child(
        "replay serve --replicate",
        [
            sys.executable,
            "-m",
            "replay",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--backend",
            "replay",
            "--replicate",
            f"s3://{BUCKET}/{prefix}",
            "--replicate-interval",
            f"{settings.interval:g}s",
            "--endpoint-url",
            endpoint,
        ],
        REPLAY_LISTENING,
        workdir / "replication-serve.stderr",
    )
    server.start(settings.timeout)
    try:
        deadline = time.monotonic() + settings.timeout
        while True:  # healthy, and replicating
            with contextlib.suppress(requests.RequestException, ValueError):
                health = requests.get(server.url + "/_localstack/health", timeout=settings.timeout).json()
                replicating = health.get("replication") or {}
                if health.get("features", {}).get("persistence") == "initialized" and replicating.get("generation"):
                    generation = str(replicating["generation"])
                    break
            if server.proc is not None and server.proc.poll() is not None:
                raise server.fail(f"exited with status {server.proc.returncode}")
            if time.monotonic() > deadline:
                raise server.fail(f"not healthy within {settings.timeout:g} s")
            time.sleep(0.05)
        setup = HTTPTransport(server.url, timeout=settings.timeout)
        try:
            send_ok(setup, create_table())
        finally:
            setup.close()
        poller = _Poller(endpoint, prefix, generation, settings.poll)
        poller.start()
        try:
            say(
                f"  (j2) {settings.rate:g} PutItem/s for {settings.duration:g} s from {settings.threads} threads "
                f"to {server.url} ..."
            )
            sent, acked, failures = _drive(server.url, settings, settings.timeout)
            if failures:
                raise BenchmarkError("; ".join(failures[:3]))
            expected = 1 + len(acked)  # the CreateTable, then the PutItems
            say(
                f"  (j2) {len(acked)} calls at {len(acked) / (max(acked) - min(sent)):.0f}/s; "
                f"the replica reaches #{poller.reached} of #{expected}, waiting ..."
            )
            patience = max(settings.timeout, settings.interval * 20)
            deadline = time.monotonic() + patience
            while poller.reached < expected:
                if poller.failure is not None:
                    raise BenchmarkError(f"listing the replica failed: {poller.failure}")
                if time.monotonic() > deadline:
                    status = requests.get(server.url + "/_localstack/health", timeout=settings.timeout).json()
                    raise BenchmarkError(
                        f"the replica reached #{poller.reached} of #{expected} {patience:g} s after the last call: "
                        f"{status.get('replication')}"
                    )
                time.sleep(0.05)
        finally:
            poller.stop()
        health = requests.get(server.url + "/_localstack/health", timeout=settings.timeout).json()
        status = server.terminate(settings.timeout)
        if status != 0 or "Traceback" in server.stderr(100_000):
            raise server.fail(f"did not stop cleanly (status {status})")
    finally:
        server.kill()

    replication = health.get("replication") or {}
    # match every entry of the replica to its call, by the item number in its body
    client = _s3_client(endpoint)
    listed = {key for key, _ in _segments(client, prefix)}
    if not listed <= set(poller.seen):
        unseen = sorted(listed - set(poller.seen))
        raise BenchmarkError(f"segments the poller never saw (another generation, or out of order): {unseen}")
    if replication.get("generation") != generation:
        raise BenchmarkError(f"the server started a new generation meanwhile: {replication}")
    chain, reached = Generation(generation, segments=sorted(name for name, _, _ in poller.seen.values())).chain(0)
    if reached < expected:
        raise BenchmarkError(f"the replica's segments chain up to #{reached}, not #{expected}")
    keys = {name: key for key, (name, _, _) in poller.seen.items()}
    appeared = {name: (mono, wall) for name, mono, wall in poller.seen.values()}
    lag = [math.nan] * len(acked)
    lag_from_time: list[float] = []
    seqs: list[int] = []
    for name in chain:
        mono, wall = appeared[name]
        for entry in _entries(client, keys[name]):
            seqs.append(entry["seq"])
            if entry.get("operation") != "PutItem":
                continue
            number = int(orjson.loads(entry["request"]["body"])["Item"]["n"]["N"])
            if not math.isnan(lag[number]):
                raise BenchmarkError(f"PutItem #{number} is twice in the replica")
            lag[number] = mono - acked[number]
            lag_from_time.append(wall - float(entry["time"]))
    if reached != expected or seqs != list(range(1, expected + 1)):
        raise BenchmarkError(f"the replica's entries are not #1 to #{expected} once each ({len(seqs)} entries)")
    missing = [number for number, value in enumerate(lag) if math.isnan(value)]
    if missing:
        raise BenchmarkError(f"{len(missing)} of {len(lag)} calls are not in the replica (first: #{missing[0]})")

    first, last = min(sent), max(acked)
    span = max(max(sent) - first, 1e-9) / settings.windows  # windows of send times
    windows: list[list[int]] = [[] for _ in range(settings.windows)]
    for number, began in enumerate(sent):
        windows[min(settings.windows - 1, int((began - first) / span))].append(number)
    medians, p99s, rates = [], [], []
    for inside in windows:
        if inside:
            values = [lag[number] for number in inside]
            medians.append(statistics.median(values))
            p99s.append(_percentile(values, 0.99))
            rates.append(len(inside) / span)
    latency = [done - began for began, done in zip(sent, acked, strict=True)]
    details: dict[str, float | int | str] = {
        "calls": len(acked),
        "achieved_calls_per_s": round(len(acked) / (last - first), 1),
        "lag_median_s": round(statistics.median(lag), 3),
        "lag_p99_s": round(_percentile(lag, 0.99), 3),
        "lag_max_s": round(max(lag), 3),
        "lag_min_s": round(min(lag), 3),
        "lag_median_by_window_s": " / ".join(f"{value:.2f}" for value in medians),
        "lag_from_entry_time_median_s": round(statistics.median(lag_from_time), 3),
        "lag_from_entry_time_p99_s": round(_percentile(lag_from_time, 0.99), 3),
        "call_latency_median_ms": round(statistics.median(latency) * 1000, 2),
        "call_latency_p99_ms": round(_percentile(latency, 0.99) * 1000, 2),
        "segments": len(chain),
        "entries_per_segment": round(expected / len(chain), 1),
        "listing_ms_median": round(statistics.median(poller.listings) * 1000, 1),
        "poll_ms": round(settings.poll * 1000),
        "files_uploaded": int(replication.get("uploaded", -1)),
        "matched": "exactly, by item number in the body",
    }
    title = f"at {settings.rate:g} calls/s, interval {settings.interval:g} s"
    return [
        Result(
            "j-replication-rate",
            f"(j2) replay serve --replicate: PutItem calls/s achieved (asked {settings.rate:g}), per window",
            "calls/s",
            Spread.of(rates),
            None,
            True,
        ),
        Result(
            "j-replication-lag-median",
            f"(j2) replication lag, call acknowledged -> its segment listed on S3, median per window, {title}",
            "s",
            Spread.of(medians),
            LAG_TARGET,
            False,
        ),
        Result(
            "j-replication-lag-p99",
            f"(j2) replication lag, p99 per window, {title}",
            "s",
            Spread.of(p99s),
            LAG_TARGET,
            False,
            details,
        ),
    ]


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    with _aws_environment(), _moto_s3(workdir, settings.timeout, say) as endpoint:
        results = _cost(settings, workdir, endpoint, say)
        results += _lag(settings, workdir, endpoint, say)
    return results
