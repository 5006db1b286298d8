"""Helpers for ``test_replication.py``: S3 stores, replica listings, histories, restores and state fingerprints.

Everything here drives real processes: a plain ``moto_server`` (:class:`MotoS3`) or a ``replay serve`` as the
S3 store, ``replay serve --replicate`` as the server under test, ``replay import`` / ``replay inspect`` as
the restore side.  The replica's object names are parsed here with regular expressions of their own (not
with :mod:`replay.share.replica`), so a mistake in the code under test cannot hide in its own parser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gzip
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from conftest import (
    START_TIMEOUT,
    AwsClients,
    ReplayServer,
    Servers,
    free_port,
    replay_cli,
    server_env,
)

# what a replicating server (and `replay import`) needs to reach the S3 store: any credentials will do there
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "replicas"

SEGMENT = re.compile(r"(\d{12})-(\d{12})-(\d{13})-(\d{13})-([0-9a-f]{64})\.jsonl\.gz")
SNAPSHOT = re.compile(r"(\d{12})-(\d{13})-([0-9a-f]{64})\.tar\.gz")


# --- S3 stores -------------------------------------------------------------------------------------------------


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client for a store (path-style, no retries, short timeouts)."""
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


class MotoS3:
    """A plain ``python -m moto.server`` on a free port: the S3 store, with no persistence of its own.

    :meth:`freeze` / :meth:`thaw` send SIGSTOP / SIGCONT: the port still accepts connections (the kernel
    queues them) but nothing answers, which is what a hung endpoint looks like to a client.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.stderr_path = workdir / f"moto-server-{self.port}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=server_env(),
                cwd=workdir,
            )
        self.frozen = False
        self.wait_ready()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"moto_server exited with {self.proc.returncode}:\n{self.stderr_path.read_text()}")
            with contextlib.suppress(requests.RequestException):
                requests.get(self.endpoint + "/moto-api/", timeout=2)
                return
            if time.monotonic() > deadline:
                pytest.fail(f"moto_server did not answer within {timeout:g} s")
            time.sleep(0.05)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.frozen:
                self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def moto_s3(workdir: Path) -> Iterator[MotoS3]:
    """A running moto_server, stopped (thawed first if frozen) at the end."""
    store = MotoS3(workdir)
    try:
        yield store
    finally:
        store.stop()


def start_on_port(
    servers: Servers, port: int, data_dir: Path, *args: str, env: Mapping[str, str] | None = None
) -> ReplayServer:
    """``replay serve`` on exactly ``port`` (a store coming back where its clients look for it)."""
    deadline = time.monotonic() + 10
    while True:
        server = servers.spawn(port, data_dir, args, env)
        # the port may linger a moment after the old process closed it: try again briefly
        try:
            server.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            break
        if "Address already in use" not in server.stderr() or time.monotonic() > deadline:
            break
    servers.started.append(server)
    server.wait_healthy()
    return server


# --- replicating servers ---------------------------------------------------------------------------------------


def replicate_args(url: str, endpoint: str, interval: str = "0.3s", *extra: str) -> tuple[str, ...]:
    return ("--replicate", url, "--endpoint-url", endpoint, "--replicate-interval", interval, *extra)


def replication(server: ReplayServer) -> dict[str, Any]:
    """The ``replication`` part of the server's health document."""
    document: dict[str, Any] = server.health()["replication"]
    return document


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; fail saying ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        with contextlib.suppress(requests.RequestException):
            last = check()
            if last:
                return last
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what} (last seen: {last!r})")
        time.sleep(poll)


# --- replica listings ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class Segment:
    after: int
    last: int
    first_ms: int
    last_ms: int
    sha256: str
    generation: str
    key: str


@dataclasses.dataclass(frozen=True, order=True)
class Snapshot:
    through: int
    as_of_ms: int
    sha256: str
    generation: str
    key: str

    @property
    def as_of(self) -> float:
        return self.as_of_ms / 1000


@dataclasses.dataclass
class Listing:
    """What a replica (a bucket's prefix, or its root) holds, parsed from one ListObjectsV2 walk."""

    bucket: str
    keys: list[str]
    segments: list[Segment]
    snapshots: list[Snapshot]

    def generations(self) -> list[str]:
        return sorted({s.generation for s in self.segments} | {s.generation for s in self.snapshots})

    def of(self, generation: str) -> tuple[list[Segment], list[Snapshot]]:
        return (
            sorted(s for s in self.segments if s.generation == generation),
            sorted(s for s in self.snapshots if s.generation == generation),
        )


def list_replica(s3: Any, bucket: str, prefix: str) -> Listing:
    """The replica at ``s3://bucket/prefix`` (``prefix`` empty: the bucket's root)."""
    start = f"{prefix}/" if prefix else ""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        keys += [item["Key"] for item in page.get("Contents", [])]
    segments, snapshots = [], []
    base = start + "generations/"
    for key in keys:
        if not key.startswith(base):
            continue
        parts = key[len(base) :].split("/")
        if len(parts) == 3 and parts[1] == "segments" and (found := SEGMENT.fullmatch(parts[2])):
            after, last, first_ms, last_ms = (int(found.group(i)) for i in range(1, 5))
            segments.append(Segment(after, last, first_ms, last_ms, found.group(5), parts[0], key))
        elif len(parts) == 3 and parts[1] == "snapshots" and (found := SNAPSHOT.fullmatch(parts[2])):
            snapshots.append(Snapshot(int(found.group(1)), int(found.group(2)), found.group(3), parts[0], key))
    return Listing(bucket, sorted(keys), sorted(segments), sorted(snapshots))


def segment_lines(s3: Any, bucket: str, segment: Segment) -> list[bytes]:
    data = s3.get_object(Bucket=bucket, Key=segment.key)["Body"].read()
    return gzip.decompress(data).splitlines(keepends=True)


def snapshot_calls(s3: Any, bucket: str, snapshot: Snapshot) -> list[bytes]:
    """The ``calls.json`` lines of a replay-kind snapshot archive."""
    data = s3.get_object(Bucket=bucket, Key=snapshot.key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = archive.extractfile("calls.json")
        assert member is not None
        return [line for line in member.read().splitlines(keepends=True) if line.strip()]


def shipped_consistently(s3: Any, bucket: str, segments: list[Segment]) -> dict[int, bytes]:
    """Every call line the segments hold, by number; a number shipped twice must be the same line both times."""
    shipped: dict[int, bytes] = {}
    for segment in segments:
        lines = segment_lines(s3, bucket, segment)
        numbers = [json.loads(line)["seq"] for line in lines]
        assert numbers == sorted(set(numbers)), f"{segment.key}: calls out of order or repeated: {numbers}"
        assert numbers and numbers[-1] == segment.last, f"{segment.key} holds {numbers}"
        for seq, line in zip(numbers, lines, strict=True):
            assert segment.after < seq <= segment.last, f"{segment.key} holds call #{seq}"
            assert shipped.setdefault(seq, line) == line, f"call #{seq} was shipped twice, differently"
    return shipped


def contiguous(segments: list[Segment]) -> list[str]:
    """Problems with a generation's segment chain: each must start at (or before) where the last one ended."""
    problems = []
    reached = segments[0].after if segments else 0
    for segment in sorted(segments, key=lambda s: (s.after, s.last)):
        if segment.after > reached:
            problems.append(f"gap: {segment.key} starts after #{segment.after}, the chain reached #{reached}")
        reached = max(reached, segment.last)
    return problems


# --- histories -------------------------------------------------------------------------------------------------


def entries(path: Path) -> list[dict[str, Any]]:
    """The numbered call entries of a log file (its header, if any, left out)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            document = json.loads(line)
            if "time" in document and "seq" in document:
                found.append(document)
    return found


def entry_lines(path: Path) -> list[bytes]:
    """The raw lines (newline kept) of a log's numbered entries."""
    if not path.exists():
        return []
    return [line for line in path.read_bytes().splitlines(keepends=True) if line.strip() and b'"time"' in line[:80]]


def seqs(path: Path) -> list[int]:
    return [entry["seq"] for entry in entries(path)]


def data_dir_history(data_dir: Path) -> list[int]:
    """The call numbers a data dir stands for: its current checkpoint's calls, then its log's entries past it."""
    manifest_path = data_dir / "checkpoints" / "MANIFEST.json"
    numbers: list[int] = []
    through = 0
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_bytes())
        numbers = seqs(data_dir / "checkpoints" / manifest["checkpoint"] / "calls.json")
        through = manifest.get("through") or (numbers[-1] if numbers else 0)
    return numbers + [seq for seq in seqs(data_dir / "recorded_api_calls.json") if seq > through]


class History:
    """Every call line a live server recorded, by number, gathered from its log before each checkpoint folds it."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.lines: dict[int, bytes] = {}

    def collect(self) -> None:
        for line in entry_lines(self.log_path):
            document = json.loads(line)
            self.lines.setdefault(int(document["seq"]), line)

    def ordered(self) -> list[tuple[int, float, bytes]]:
        return [(seq, float(json.loads(line)["time"]), line) for seq, line in sorted(self.lines.items())]

    def prefix(self, at: float, after: int = 0) -> list[bytes]:
        """The lines numbered past ``after``, in order, up to (not including) the first one started after ``at``."""
        taken = []
        for seq, started, line in self.ordered():
            if seq <= after:
                continue
            if started > at:
                break
            taken.append(line)
        return taken


class LogKeeper(threading.Thread):
    """Every line a live server's log ever held, by call number, while checkpoints rewrite the file.

    A checkpoint replaces the log (a new inode) after folding calls out of it; the keeper holds every
    inode it saw open and reads each to its end on every poll, so a line written to the old file just
    before the switch is read too.  A call number seen twice with different bytes is a *conflict*: the
    history was rewritten (say, a restart numbered new calls over ones it lost).
    """

    def __init__(self, path: Path, poll: float = 0.005) -> None:
        super().__init__(name="log-keeper", daemon=True)
        self.path = path
        self.poll = poll
        self.lines: dict[int, bytes] = {}
        self.conflicts: list[tuple[int, bytes, bytes]] = []
        self.shrunk: list[tuple[int, int]] = []
        self._open: dict[int, list[int]] = {}  # inode -> [fd, offset]
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.is_set():
            self.step()
            self._halt.wait(self.poll)

    def step(self) -> None:
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                ino = os.stat(self.path).st_ino
                if ino not in self._open:
                    fd = os.open(self.path, os.O_RDONLY)
                    self._open[os.fstat(fd).st_ino] = [fd, 0]
            for state in self._open.values():
                self._drain(state)

    def _drain(self, state: list[int]) -> None:
        fd, offset = state
        size = os.fstat(fd).st_size
        if size < offset:  # cut back (a torn tail repaired after a kill): read on from where it ends now
            self.shrunk.append((offset, size))
            offset = size
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            end = chunk.rfind(b"\n")
            if end < 0:
                break
            for line in chunk[: end + 1].splitlines(keepends=True):
                document = json.loads(line) if line.strip() else {}
                if "time" in document and "seq" in document:
                    seq = int(document["seq"])
                    if self.lines.setdefault(seq, line) != line:
                        self.conflicts.append((seq, self.lines[seq], line))
            offset += end + 1
        state[1] = offset

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.step()
        for fd, _ in self._open.values():
            os.close(fd)
        self._open.clear()

    def seqs(self) -> list[int]:
        return sorted(self.lines)


# --- restores --------------------------------------------------------------------------------------------------


def iso(moment: float) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z`` (microseconds kept)."""
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def restore(
    url: str,
    endpoint: str,
    data_dir: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``replay import URL --endpoint-url ENDPOINT --data-dir DATA_DIR --json EXTRA``, output captured."""
    return replay_cli(
        "import", url, "--endpoint-url", endpoint, "--data-dir", str(data_dir), "--json", *extra,
        env={**S3_CREDENTIALS, **(env or {})},
    )  # fmt: skip


def restored(url: str, endpoint: str, data_dir: Path, *extra: str, env: Mapping[str, str] | None = None) -> Any:
    """:func:`restore`, asserted to succeed; its JSON report."""
    done = restore(url, endpoint, data_dir, *extra, env=env)
    assert done.returncode == 0, f"replay import {url} {' '.join(extra)} failed:\n{done.stderr}"
    return json.loads(done.stdout)


def inspect(url: str, endpoint: str) -> Any:
    done = replay_cli("inspect", url, "--endpoint-url", endpoint, "--json", env=S3_CREDENTIALS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def compact(server: ReplayServer) -> None:
    """A checkpoint now (``replay compact`` asks the running server)."""
    done = replay_cli("compact", str(server.data_dir))
    assert done.returncode == 0, done.stderr


# --- workloads and state -------------------------------------------------------------------------------------


TABLE = "items"
OBJECTS = "objects"


def make_table(dynamodb: Any, name: str = TABLE) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


class Workload:
    """SQS, DynamoDB and S3 writes against one server (clients remade with :meth:`bind` after a restart)."""

    def __init__(self, aws: AwsClients, server: ReplayServer, rng: random.Random | None = None) -> None:
        self.aws = aws
        self.rng = rng or random.Random(0)
        self.counter = 0
        self.bind(server)

    def bind(self, server: ReplayServer) -> None:
        self.server = server
        self.sqs = self.aws("sqs", server)
        self.dynamodb = self.aws("dynamodb", server)
        self.s3 = self.aws("s3", server)

    def setup(self) -> None:
        make_table(self.dynamodb)
        self.s3.create_bucket(Bucket=OBJECTS)

    def create_queue(self, name: str) -> None:
        self.sqs.create_queue(QueueName=name)

    def send(self, queue: str, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.sqs.get_queue_url(QueueName=queue)["QueueUrl"], MessageBody=body)

    def delete_queue(self, name: str) -> None:
        self.sqs.delete_queue(QueueUrl=self.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def put_item(self, key: str, value: str) -> None:
        self.dynamodb.put_item(TableName=TABLE, Item={"id": {"S": key}, "value": {"S": value}})

    def delete_item(self, key: str) -> None:
        self.dynamodb.delete_item(TableName=TABLE, Key={"id": {"S": key}})

    def put_object(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=OBJECTS, Key=key, Body=body)

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=OBJECTS, Key=key)

    def random_write(self) -> str:
        """One random write (the queues q0..q2 are made on first use); what it did, for messages."""
        self.counter += 1
        n = self.counter
        kind = self.rng.randrange(7)
        queue = f"q{self.rng.randrange(3)}"
        key = f"k{self.rng.randrange(6)}"
        if kind == 0:
            self.create_queue(queue)
        elif kind == 1:
            self.create_queue(queue)  # idempotent: the queue exists for the message
            self.send(queue, f"m{n}")
        elif kind == 2 and self.rng.random() < 0.5:
            with contextlib.suppress(self.sqs.exceptions.QueueDoesNotExist):
                self.delete_queue(queue)
        elif kind in (2, 3):
            self.put_item(key, f"v{n}")
        elif kind == 4:
            self.delete_item(key)
        elif kind == 5:
            self.put_object(key, f"body {n} ".encode() * self.rng.randrange(1, 50))
        else:
            self.delete_object(key)
        return f"{kind}:{queue}:{key}:{n}"


def fingerprint(aws: AwsClients, server: ReplayServer) -> dict[str, Any]:
    """What boto3 sees: queues and all their messages, tables and their items, buckets and their objects' bodies.

    A queue is drained (received until empty, each batch hidden for a minute) and every message made visible
    again at once: the receives are recorded calls like any other, on the live server and a restored one alike.
    """
    sqs, dynamodb, s3 = aws("sqs", server), aws("dynamodb", server), aws("s3", server)
    queues: dict[str, Any] = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        name = url.rsplit("/", 1)[-1]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        bodies, handles = [], []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
            "Messages", []
        ):
            bodies += [message["Body"] for message in batch]
            handles += [message["ReceiptHandle"] for message in batch]
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for n, handle in enumerate(handles[start : start + 10])
            ]
            answer = sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            assert not answer.get("Failed"), answer
        queues[name] = {"count": attributes["Attributes"]["ApproximateNumberOfMessages"], "bodies": sorted(bodies)}
    tables: dict[str, Any] = {}
    for table in dynamodb.list_tables()["TableNames"]:
        items = dynamodb.scan(TableName=table)["Items"]
        tables[table] = sorted(json.dumps(item, sort_keys=True) for item in items)
    buckets: dict[str, Any] = {}
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        contents = s3.list_objects_v2(Bucket=name).get("Contents", [])
        buckets[name] = {item["Key"]: s3.get_object(Bucket=name, Key=item["Key"])["Body"].read() for item in contents}
    return {"queues": queues, "tables": tables, "buckets": buckets}


def serve_restored(servers: Servers, data_dir: Path, *args: str, env: Mapping[str, str] | None = None) -> ReplayServer:
    """Serve a restored data dir (without replication); the restore must have replayed cleanly."""
    server = servers.start(data_dir, *args, env=env)
    persistence = server.health()["persistence"]
    assert persistence.get("failed", 0) == 0 and persistence.get("diverged", 0) == 0, persistence
    return server


def write_log(data_dir: Path, lines: Iterable[bytes]) -> None:
    """A fresh data dir whose log holds ``lines`` (a reference history to serve)."""
    data_dir.mkdir(parents=True)
    (data_dir / "recorded_api_calls.json").write_bytes(b"".join(lines))
    os.chmod(data_dir, 0o700)
