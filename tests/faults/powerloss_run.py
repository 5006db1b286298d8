"""The workloads, the checks and the property of the power-loss simulation (:mod:`powerloss` is the model).

A workload runs real ``replay`` processes under strace over a workspace (``work/``: the data dir
``work/data``, an archive ``work/state.replay``, an imported data dir ``work/imported``) while a boto3
client issues a history of state-changing calls and notes, by the wall clock, when each was acknowledged.
Every crash point's trees (:class:`powerloss.Simulation`) are then checked by starting ``replay serve`` on a
copy of the tree and reading its state back with boto3:

* it refuses to start: exit status != 0 and exactly one ``replay: error:`` line on stderr that names a
  path in the tree, and no traceback; or
* it starts, and its state is the state after some prefix of the history that holds every call
  acknowledged before the crash point (calls acknowledged before the *next* operation completed, so before
  some instant of the crash point); and
* never an empty start from a tree whose log, manifest or snapshots held state.

One check goes beyond that: a refusal of a ``kept`` tree (what a plain process crash, ``kill -9``, leaves:
the disk lost nothing) is a violation too, since the data dir then no longer starts without a repair.
Named refusals the property allows are listed as notes (:meth:`Result.notes`).

``REPLAY_FAULTS`` chooses how many trees are checked: unset (or ``sample``) a seeded sample of
:data:`SAMPLE_PER_WORKLOAD` per workload (what CI runs), ``all`` every distinct tree of every crash point, a
number N that many per workload.  ``REPLAY_FAULTS_SEED`` (default 14) seeds the sample and the garbled bytes;
``REPLAY_FAULTS_JOBS`` how many checks run at once (default: the CPU count, at least 2);
``REPLAY_FAULTS_REPORT=PATH`` writes every crash point, tree and verdict of a run to ``PATH`` (JSON lines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config as BotoConfig
from powerloss import STRACE_ARGS, VARIANTS, CrashPoint, Simulation, Tree, scan, simulate

LOG = "recorded_api_calls.json"
HEALTH = "/_localstack/health"
SAMPLE_PER_WORKLOAD = 3
START_TIMEOUT = 40.0
SNAPSHOT_MAGIC = b"REPLAY-SNAPSHOT\n"

# configuration the surrounding environment must not leak into the processes under test
_SCRUBBED = (
    "DATA_DIR",
    "PERSISTENCE",
    "PERSISTENCE_BACKEND",
    "REPLAY_FSYNC",
    "MOTO_PORT",
    "REPLAY_CHECKPOINT_PERCENTAGE",
    "REPLAY_CHECKPOINT_MIN_SIZE",
    "PERSISTENCE_SERVICES",
    "PERSISTENCE_SCOPE",
    "REPLAY_CALL_TIMEOUT",
    "SNAPSHOT_SAVE_STRATEGY",
    "SNAPSHOT_LOAD_STRATEGY",
    "SNAPSHOT_FLUSH_INTERVAL",
    "REPLAY_ARCHIVE_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def strace_missing() -> str | None:
    """Why strace cannot trace here (``None``: it can)."""
    found = shutil.which("strace")
    if found is None:
        return "strace is not installed (apt-get install -y strace)"
    try:
        done = subprocess.run(
            [found, "-f", "-qq", "-e", "trace=close", "-o", os.devnull, sys.executable, "-c", "pass"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace cannot run: {exc}"
    if done.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {done.stderr.decode(errors='replace')[-300:]}"
    return None


@functools.lru_cache(maxsize=1)
def _seccomp_supported() -> bool:
    done = subprocess.run(
        ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=close", "-o", os.devnull, "true"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0 and b"seccomp" not in done.stderr


def strace_command(trace: Path) -> list[str]:
    # --seccomp-bpf stops the tracee only at the traced calls: several times faster, same output
    fast = ["--seccomp-bpf"] if _seccomp_supported() else []
    return ["strace", *fast, *STRACE_ARGS, "-o", str(trace)]


def child_env(outside: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    env["TMPDIR"] = str(outside)  # temporary files of export/import stay out of the traced workspace
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- boto3 -------------------------------------------------------------------------------------------------------

_BOTO_LOCK = threading.Lock()
_BOTO_SESSION: boto3.session.Session | None = None


def client(service: str, endpoint: str) -> Any:
    """A boto3 client: test/test, us-east-1, path-style S3, no retries (a retried mutation is recorded twice)."""
    global _BOTO_SESSION
    with _BOTO_LOCK:  # making clients is not thread-safe; one session loads the service models once
        if _BOTO_SESSION is None:
            _BOTO_SESSION = boto3.session.Session()
        return _BOTO_SESSION.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )


@dataclasses.dataclass
class AwsState:
    """What the history builds, as far as the checks read it back."""

    queues: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    buckets: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    tables: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def canonical(self) -> str:
        return json.dumps(
            {
                "sqs": {name: sorted(bodies) for name, bodies in self.queues.items()},
                "s3": self.buckets,
                "dynamodb": self.tables,
            },
            sort_keys=True,
        )


EMPTY = AwsState().canonical()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_state(endpoint: str) -> str:
    """The state of the server at ``endpoint`` read back with boto3 (:meth:`AwsState.canonical`)."""
    state = AwsState()
    sqs = client("sqs", endpoint)
    for url in sqs.list_queues().get("QueueUrls", []):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        counts = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        received = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        ).get("Messages", [])
        bodies = [message["Body"] for message in received]
        hidden = int(counts["ApproximateNumberOfMessages"]) + int(counts["ApproximateNumberOfMessagesNotVisible"])
        bodies += ["(a message not seen)"] * (hidden - len(bodies))
        state.queues[name] = bodies
    s3 = client("s3", endpoint)
    for bucket in s3.list_buckets().get("Buckets", []):
        objects: dict[str, str] = {}
        for item in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            body = s3.get_object(Bucket=bucket["Name"], Key=item["Key"])["Body"].read()
            objects[item["Key"]] = _digest(body)
        state.buckets[bucket["Name"]] = objects
    dynamodb = client("dynamodb", endpoint)
    for table in dynamodb.list_tables().get("TableNames", []):
        items = dynamodb.scan(TableName=table).get("Items", [])
        state.tables[table] = {item["pk"]["S"]: json.dumps(item, sort_keys=True) for item in items}
    return state.canonical()


# --- histories ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Issued:
    """One state-changing call of the history (``index`` from 1) and when the client sent it and got its answer."""

    index: int
    service: str
    operation: str
    what: str
    sent: float
    acked: float


class Driver:
    """Issues a history of calls with boto3 and keeps the state each prefix of it leaves (:attr:`states`)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sqs = client("sqs", endpoint)
        self.s3 = client("s3", endpoint)
        self.dynamodb = client("dynamodb", endpoint)
        self.model = AwsState()
        self.history: list[Issued] = []
        self.states: list[str] = [self.model.canonical()]
        self.urls: dict[str, str] = {}
        self.checkpoints = 0

    def _call(self, service: str, operation: str, what: str, send: Callable[[], Any]) -> Any:
        sent = time.time()
        answer = send()
        acked = time.time()
        self.history.append(Issued(len(self.history) + 1, service, operation, what, sent, acked))
        return answer

    def _after(self) -> None:
        self.states.append(self.model.canonical())

    def create_queue(self, name: str) -> None:
        self.urls[name] = self._call("sqs", "CreateQueue", name, lambda: self.sqs.create_queue(QueueName=name))[
            "QueueUrl"
        ]
        self.model.queues[name] = []
        self._after()

    def delete_queue(self, name: str) -> None:
        self._call("sqs", "DeleteQueue", name, lambda: self.sqs.delete_queue(QueueUrl=self.urls[name]))
        del self.model.queues[name]
        self._after()

    def send(self, name: str, body: str) -> None:
        self._call(
            "sqs",
            "SendMessage",
            f"{name}: {body}",
            lambda: self.sqs.send_message(QueueUrl=self.urls[name], MessageBody=body),
        )
        self.model.queues[name].append(body)
        self._after()

    def take(self, name: str, body: str) -> None:
        """Receive (visibility 0: the messages stay visible; recorded, it returned messages), then delete ``body``."""
        received = self._call(
            "sqs",
            "ReceiveMessage",
            name,
            lambda: self.sqs.receive_message(
                QueueUrl=self.urls[name], MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
            ),
        )
        self._after()
        handle = next(message["ReceiptHandle"] for message in received["Messages"] if message["Body"] == body)
        self._call(
            "sqs",
            "DeleteMessage",
            f"{name}: {body}",
            lambda: self.sqs.delete_message(QueueUrl=self.urls[name], ReceiptHandle=handle),
        )
        self.model.queues[name].remove(body)
        self._after()

    def create_bucket(self, name: str) -> None:
        self._call("s3", "CreateBucket", name, lambda: self.s3.create_bucket(Bucket=name))
        self.model.buckets[name] = {}
        self._after()

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self._call(
            "s3",
            "PutObject",
            f"{bucket}/{key} ({len(body)} bytes)",
            lambda: self.s3.put_object(Bucket=bucket, Key=key, Body=body),
        )
        self.model.buckets[bucket][key] = _digest(body)
        self._after()

    def delete_object(self, bucket: str, key: str) -> None:
        self._call("s3", "DeleteObject", f"{bucket}/{key}", lambda: self.s3.delete_object(Bucket=bucket, Key=key))
        del self.model.buckets[bucket][key]
        self._after()

    def create_table(self, name: str) -> None:
        self._call(
            "dynamodb",
            "CreateTable",
            name,
            lambda: self.dynamodb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            ),
        )
        self.model.tables[name] = {}
        self._after()

    def put_item(self, table: str, key: str, value: str) -> None:
        item = {"pk": {"S": key}, "v": {"S": value}}
        self._call(
            "dynamodb", "PutItem", f"{table}: {key}={value}", lambda: self.dynamodb.put_item(TableName=table, Item=item)
        )
        self.model.tables[table][key] = json.dumps(item, sort_keys=True)
        self._after()

    def update_item(self, table: str, key: str, value: str) -> None:
        self._call(
            "dynamodb",
            "UpdateItem",
            f"{table}: {key}={value}",
            lambda: self.dynamodb.update_item(
                TableName=table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"S": value}},
            ),
        )
        self.model.tables[table][key] = json.dumps({"pk": {"S": key}, "v": {"S": value}}, sort_keys=True)
        self._after()

    def delete_item(self, table: str, key: str) -> None:
        self._call(
            "dynamodb",
            "DeleteItem",
            f"{table}: {key}",
            lambda: self.dynamodb.delete_item(TableName=table, Key={"pk": {"S": key}}),
        )
        del self.model.tables[table][key]
        self._after()

    def save(self) -> None:
        """``POST /_localstack/state/save``: a checkpoint (replay backend), every service saved (snapshot)."""
        answer = requests.post(self.endpoint + "/_localstack/state/save", timeout=120)
        lines = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
        assert answer.status_code == 200 and all(line["status"] == "ok" for line in lines), answer.text
        self.checkpoints += 1


def body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# the workloads' histories: (a) and (b) run them under strace; (c) and (d) build the data dir they trace from


def history_replay(driver: Driver) -> None:
    """(a): SQS, S3 (bodies large enough to be a checkpoint asset and a body file) and DynamoDB, checkpoints."""
    driver.create_queue("jobs")
    driver.create_bucket("files")
    driver.create_table("orders")
    for number in range(1, 5):
        driver.send("jobs", f"job-{number}")
    driver.put_object("files", "small.txt", b"hello")
    driver.put_object("files", "large.bin", body(70_000, 1))
    driver.put_object("files", "huge.bin", body(1_200_000, 5))  # over 1 MiB: a body file of the data dir
    driver.put_item("orders", "a", "1")
    driver.put_item("orders", "b", "2")
    driver.save()
    driver.take("jobs", "job-1")
    driver.put_object("files", "other.txt", b"other")
    driver.delete_object("files", "small.txt")
    driver.update_item("orders", "a", "10")
    driver.delete_item("orders", "b")
    driver.create_queue("spare")
    driver.send("spare", "spare-1")
    driver.save()
    driver.put_object("files", "large.bin", body(70_000, 2))
    driver.put_item("orders", "c", "3")
    driver.create_bucket("more")
    driver.put_object("more", "z.txt", b"z")
    driver.delete_queue("spare")
    driver.save()
    driver.send("jobs", "job-5")
    driver.put_item("orders", "d", "4")
    driver.put_object("files", "last.txt", b"last")


def history_snapshot(driver: Driver) -> None:
    """(b): each call saves its service's snapshot; a large S3 body (an asset file) is written and replaced."""
    driver.create_queue("jobs")
    driver.send("jobs", "job-1")
    driver.send("jobs", "job-2")
    driver.create_bucket("files")
    driver.put_object("files", "small.txt", b"hello")
    driver.put_object("files", "large.bin", body(70_000, 1))
    driver.create_table("orders")
    driver.put_item("orders", "a", "1")
    driver.take("jobs", "job-1")
    driver.put_object("files", "large.bin", body(70_000, 2))
    driver.delete_object("files", "small.txt")
    driver.update_item("orders", "a", "2")
    driver.send("jobs", "job-3")


def history_compact(driver: Driver) -> None:
    """(c): calls undone later, which compaction drops (a whole history: no checkpoint, so all of it is compacted)."""
    driver.create_queue("jobs")
    driver.create_bucket("files")
    driver.create_table("orders")
    driver.send("jobs", "job-1")
    driver.put_item("orders", "a", "1")
    driver.create_queue("temporary")
    driver.send("temporary", "gone")
    driver.delete_queue("temporary")
    driver.put_object("files", "draft.txt", b"draft")
    driver.put_object("files", "draft.txt", b"final")
    driver.put_object("files", "huge.bin", body(1_200_000, 6))  # a body file that compaction keeps
    driver.put_object("files", "scratch.txt", b"scratch")
    driver.delete_object("files", "scratch.txt")
    driver.put_item("orders", "b", "2")
    driver.delete_item("orders", "b")
    driver.update_item("orders", "a", "3")
    driver.send("jobs", "job-2")
    driver.take("jobs", "job-1")


def history_export(driver: Driver) -> None:
    """(d): a small state to export and import."""
    driver.create_queue("jobs")
    driver.send("jobs", "job-1")
    driver.send("jobs", "job-2")
    driver.create_bucket("files")
    driver.put_object("files", "a.txt", b"a")
    driver.put_object("files", "large.bin", body(70_000, 3))
    driver.put_object("files", "huge.bin", body(1_200_000, 7))  # a body file: an archive member
    driver.create_table("orders")
    driver.put_item("orders", "a", "1")
    driver.take("jobs", "job-1")
    driver.put_item("orders", "b", "2")


# --- processes ---------------------------------------------------------------------------------------------------


def serve_command(data_dir: Path, port: int, args: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "replay",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *args,
    ]


class Server:
    """A ``replay serve`` child (optionally under strace)."""

    def __init__(self, command: list[str], port: int, env: dict[str, str], stderr: Path, cwd: Path) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.stderr_path = stderr
        with open(stderr, "wb") as sink:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink, env=env, cwd=cwd
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> bool:
        """``True`` once healthy; ``False`` when the process exited first; raises on a timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.endpoint + HEALTH, timeout=2).status_code == 200:
                    return True
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy within {timeout:g} s")
            time.sleep(0.03)

    def health(self) -> dict[str, Any]:
        document: dict[str, Any] = requests.get(self.endpoint + HEALTH, timeout=10).json()
        return document

    def tracee(self) -> int:
        """The traced process (the child strace started), to signal it directly."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert children, "strace has no child"
        return int(children[0])

    def terminate(self, traced: bool) -> int:
        """SIGTERM (the shutdown checkpoint or save runs); the exit status."""
        os.kill(self.tracee() if traced else self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)


def start_server(
    data_dir: Path, args: Sequence[str], env: dict[str, str], stderr: Path, cwd: Path, trace: Path | None
) -> Server:
    for _attempt in range(3):
        port = free_port()
        command = serve_command(data_dir, port, args)
        if trace is not None:
            command = [*strace_command(trace), *command]
        server = Server(command, port, env, stderr, cwd)
        if server.wait_healthy():
            return server
        if "Address already in use" not in server.stderr():
            raise AssertionError(f"replay serve exited {server.proc.returncode}:\n{server.stderr()[-4000:]}")
    raise AssertionError("could not bind a free port in 3 attempts")


def run_replay(
    args: Sequence[str], env: dict[str, str], cwd: Path, trace: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "replay", *args]
    if trace is not None:
        command = [*strace_command(trace), *command]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)


# --- workloads ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CheckSpec:
    """How a tree of a workload is checked.

    :ivar serve: the data dir to serve, relative to the tree.
    :ivar args: ``replay serve`` flags.
    :ivar archive: an archive to ``replay inspect`` (relative to the tree), when there is one.
    :ivar backend: ``"replay"`` or ``"snapshot"`` (what holding state means for the tree).
    """

    serve: str
    args: tuple[str, ...]
    backend: str = "replay"
    archive: str | None = None


@dataclasses.dataclass
class Recording:
    """A traced workload: what it did (traces), what it was told (acks), the states of its history."""

    name: str
    workspace: Path
    initial: dict[str, bytes | None]
    traces: list[Path]
    history: list[Issued]
    states: list[str]
    # (time, n): a crash after `time` must keep the first n calls
    acks: list[tuple[float, int]]
    spec: CheckSpec
    # (time, what): an archive that must be readable after `time`
    archive_acked: float | None = None
    duration: float = 0.0
    simulation: Simulation | None = dataclasses.field(default=None, repr=False)

    def required(self, point: CrashPoint) -> int:
        return max((count for when, count in self.acks if when < point.until), default=0)


def _workspace(base: Path) -> tuple[Path, Path]:
    root = base / "work"
    outside = base / "outside"
    root.mkdir(mode=0o700)
    outside.mkdir(mode=0o700)
    return root.resolve(), outside.resolve()


def _acks(history: Sequence[Issued]) -> list[tuple[float, int]]:
    return [(issued.acked, issued.index) for issued in history]


def record_serve(
    name: str,
    base: Path,
    history: Callable[[Driver], None],
    args: Sequence[str],
    env: dict[str, str],
    spec: CheckSpec,
    create: bool = True,
) -> Recording:
    """Run ``replay serve`` under strace on a fresh data dir, issue ``history``, SIGTERM it.

    :param create: make the (empty) data dir first, durably; else ``replay serve`` makes it.
    """
    started = time.monotonic()
    root, outside = _workspace(base)
    if create:
        (root / "data").mkdir(mode=0o700)
    initial = scan(root)
    trace = outside / f"{name}.trace"
    server = start_server(root / "data", args, child_env(outside, env), outside / f"{name}.stderr", outside, trace)
    try:
        driver = Driver(server.endpoint)
        history(driver)
        status = server.terminate(traced=True)
    finally:
        server.kill()
    stderr = server.stderr()
    assert status == 0, f"the traced server exited {status}:\n{stderr[-4000:]}"
    assert "Traceback" not in stderr, stderr[-4000:]
    return Recording(
        name,
        root,
        initial,
        [trace],
        driver.history,
        driver.states,
        _acks(driver.history),
        spec,
        duration=time.monotonic() - started,
    )


def _prepare(root: Path, outside: Path, history: Callable[[Driver], None], args: Sequence[str]) -> Driver:
    """Build a data dir (not traced) with ``history``; stop the server with SIGTERM."""
    (root / "data").mkdir(mode=0o700)
    server = start_server(root / "data", args, child_env(outside), outside / "prepare.stderr", outside, None)
    try:
        driver = Driver(server.endpoint)
        history(driver)
        status = server.terminate(traced=False)
    finally:
        server.kill()
    assert status == 0, server.stderr()[-4000:]
    os.sync()  # what the traced command starts from is on disk: the model takes it as durable
    return driver


def record_compact(base: Path) -> Recording:
    """(c): ``replay compact DIR`` of a stopped server's data dir, under strace."""
    started = time.monotonic()
    root, outside = _workspace(base)
    args = ("--fsync", "always", "--checkpoint-percentage", "0")
    driver = _prepare(root, outside, history_compact, args)
    initial = scan(root)
    trace = outside / "compact.trace"
    done = run_replay(["compact", str(root / "data"), "--json"], child_env(outside), outside, trace)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["kind"] == "log" and report["kept"] < report["read"], report  # it did drop calls
    everything = len(driver.history)
    return Recording(
        "compact",
        root,
        initial,
        [trace],
        driver.history,
        driver.states,
        [(float("-inf"), everything)],
        CheckSpec("data", ()),
        duration=time.monotonic() - started,
    )


SNAPSHOT_CHECK = ("--backend", "snapshot", "--load-strategy", "ON_STARTUP", "--save-strategy", "MANUAL")


def record_transfer(base: Path, backend: str = "replay") -> Recording:
    """(d): ``replay export`` of a stopped server's data dir, then ``replay import`` into a new one, under strace.

    :param backend: the data dir's: ``replay`` (the archive holds calls) or ``snapshot`` (it holds snapshots
        and their assets; imported with ``--trust``).
    """
    started = time.monotonic()
    root, outside = _workspace(base)
    snapshot = backend == "snapshot"
    driver = _prepare(root, outside, history_export, ("--backend", "snapshot") if snapshot else ("--fsync", "always"))
    initial = scan(root)
    export_trace, import_trace = outside / "export.trace", outside / "import.trace"
    env = child_env(outside)
    archive, data, imported_dir = str(root / "state.replay"), str(root / "data"), str(root / "imported")
    done = run_replay(["export", archive, "--data-dir", data], env, outside, export_trace)
    assert done.returncode == 0, done.stderr[-4000:]
    exported = time.time()
    trust = ["--trust"] if snapshot else []
    done = run_replay(["import", archive, "--data-dir", imported_dir, *trust], env, outside, import_trace)
    assert done.returncode == 0, done.stderr[-4000:]
    imported = time.time()
    return Recording(
        f"transfer-{backend}",
        root,
        initial,
        [export_trace, import_trace],
        driver.history,
        driver.states,
        [(imported, len(driver.history))],
        CheckSpec("imported", SNAPSHOT_CHECK if snapshot else (), backend=backend, archive="state.replay"),
        archive_acked=exported,
        duration=time.monotonic() - started,
    )


# --- checking a tree ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Observation:
    """What ``replay serve`` did on one tree.

    :ivar outcome: ``started``, ``refused``, ``hung``, or ``absent`` (the data dir to serve is not in the tree:
        a start there is an empty start, so it is not run).
    """

    outcome: str
    state: str | None = None
    status: int | None = None
    errors: tuple[str, ...] = ()
    stderr: str = ""
    health: dict[str, Any] | None = None
    read_error: str | None = None
    archive: str | None = None  # "ok", "absent", or what `replay inspect` said

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr


def _error_lines(stderr: str) -> tuple[str, ...]:
    return tuple(line for line in stderr.splitlines() if line.startswith("replay: error:"))


def check_tree(tree: Tree, blobs: dict[str, bytes], where: Path, spec: CheckSpec, outside: Path) -> Observation:
    """Materialise ``tree`` at ``where`` and start ``replay serve`` on it (then read its state, then SIGKILL)."""
    tree.materialise(blobs, where)
    archive = None
    if spec.archive is not None:
        if (where / spec.archive).exists():
            done = run_replay(["inspect", str(where / spec.archive), "--json"], child_env(outside), outside)
            archive = (
                "ok" if done.returncode == 0 else (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            )
        else:
            archive = "absent"
    data_dir = where / spec.serve
    if not data_dir.exists():
        return Observation("absent", state=EMPTY, archive=archive)
    stderr_path = outside / f"{where.name}.stderr"
    env = child_env(outside, {"REPLAY_CHECKPOINT_PERCENTAGE": "0"})
    for _attempt in range(3):
        port = free_port()
        server = Server(serve_command(data_dir, port, spec.args), port, env, stderr_path, outside)
        try:
            try:
                healthy = server.wait_healthy()
            except TimeoutError:
                return Observation("hung", stderr=server.stderr(), archive=archive)
            if not healthy:
                stderr = server.stderr()
                if "Address already in use" in stderr:
                    continue
                return Observation(
                    "refused",
                    status=server.proc.returncode,
                    errors=_error_lines(stderr),
                    stderr=stderr,
                    archive=archive,
                )
            health = server.health()
            try:
                state = read_state(server.endpoint)
                read_error = None
            except Exception as exc:  # a read the restored server failed: reported as such
                state, read_error = None, f"{type(exc).__name__}: {exc}"
            return Observation(
                "started", state=state, stderr=server.stderr(), health=health, read_error=read_error, archive=archive
            )
        finally:
            server.kill()
    raise AssertionError("could not bind a free port in 3 attempts")


# --- the property --------------------------------------------------------------------------------------------------


class PropertyViolated(AssertionError):
    """Checked trees broke the property (what ``xfail(raises=...)`` expects; any other error is the harness's)."""


@dataclasses.dataclass(frozen=True)
class Violation:
    """One way one tree breaks the property, at the crash point/variant pairs that leave that tree.

    :ivar point: the first such crash point (:ivar syscall: the operation it follows); :ivar last: the last one.
    :ivar pairs: how many crash point/variant pairs show it; :ivar variants: their variants.
    :ivar unsynced: what was volatile at the first crash point.
    """

    workload: str
    what: str
    detail: str
    point: int
    syscall: str
    last: int
    last_syscall: str
    pairs: int
    variants: tuple[str, ...]
    unsynced: tuple[str, ...]

    def format(self) -> str:
        where = f"crash point {self.point} (after {self.syscall})"
        if self.last != self.point:
            where += f" to {self.last} (after {self.last_syscall})"
        lines = [
            f"[{self.workload}] {self.what}",
            f"    at {where}, variant {'/'.join(self.variants)} ({self.pairs} crash point/variant pairs)",
            f"    {self.detail}",
        ]
        if self.unsynced:
            lines.append("    volatile at the first: " + "; ".join(self.unsynced[:12]))
        return "\n".join(lines)


def holds_state(tree: Tree, blobs: dict[str, bytes], spec: CheckSpec) -> bool:
    """Whether the durable tree holds state: a whole log entry, a manifest, or a whole snapshot file."""
    prefix = spec.serve + "/"
    for path, content in tree.files:
        if content is None or not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        data = blobs[content]
        if relative == LOG:
            for line in data.split(b"\n")[:-1]:
                with contextlib.suppress(ValueError):
                    document = json.loads(line)
                    if isinstance(document, dict) and "request" in document:
                        return True
        elif relative == "checkpoints/MANIFEST.json":
            return True
        elif re.fullmatch(r"state/api_states/[^/]+/backend\.state", relative) and data.startswith(SNAPSHOT_MAGIC):
            end = data.find(b"\n", len(SNAPSHOT_MAGIC))
            with contextlib.suppress(ValueError):
                header = json.loads(data[len(SNAPSHOT_MAGIC) : end])
                if isinstance(header, dict) and len(data) - end - 1 == header.get("length"):
                    return True
    return False


def judge(
    recording: Recording, simulation: Simulation, digest: str, observation: Observation, where: Path
) -> list[Violation]:
    """The property's verdict on one tree (checked at ``where``), at every crash point that leaves it."""
    tree = simulation.trees[digest]
    occurrences = simulation.occurrences(digest)
    points = simulation.points
    found: list[Violation] = []

    def violation(at: Sequence[tuple[int, str]], what: str, detail: str) -> None:
        (first, _), (last, _) = at[0], at[-1]
        variants = tuple(variant for variant in VARIANTS if any(kind == variant for _index, kind in at))
        found.append(
            Violation(
                recording.name,
                what,
                detail,
                first,
                points[first].syscall,
                last,
                points[last].syscall,
                len(at),
                variants,
                points[first].unsynced,
            )
        )

    if observation.traceback:
        violation(occurrences, "a traceback on stderr", _tail(observation.stderr))
    if observation.outcome == "hung":
        violation(occurrences, f"did not become healthy within {START_TIMEOUT:g} s", _tail(observation.stderr))
    elif observation.outcome == "refused":
        named = [line for line in observation.errors if str(where) in line]
        if observation.status == 0 or len(observation.errors) != 1 or not named:
            violation(
                occurrences,
                "a refusal without one `replay: error:` line naming a path",
                f"exit {observation.status}; {_tail(observation.stderr)}",
            )
        killed = [(index, variant) for index, variant in occurrences if variant == "kept"]
        if killed:
            # stricter than a named refusal: nothing was lost by the disk here, as after a kill -9
            violation(
                killed,
                "a refusal of a tree that a plain process crash (kill -9) leaves: nothing was lost by the disk, "
                "yet the data dir no longer starts",
                " | ".join(observation.errors) or _tail(observation.stderr),
            )
    elif observation.read_error is not None:
        violation(occurrences, "started, but reading its state back failed", observation.read_error)
    elif observation.state is not None:
        matches = [index for index, state in enumerate(recording.states) if state == observation.state]
        if not matches:
            violation(occurrences, "started with a state that no prefix of the history leaves", observation.state)
        else:
            reached = max(matches)
            required = {index: recording.required(points[index]) for index, _variant in occurrences}
            if (
                observation.state == EMPTY
                and reached < len(recording.states) - 1
                and holds_state(tree, simulation.blobs, recording.spec)
            ):
                violation(
                    occurrences,
                    "an empty start from a tree whose durable log, manifest or snapshots held state",
                    _lost(recording, 0, max(required.values())),
                )
            lost = [(index, variant) for index, variant in occurrences if reached < required[index]]
            if lost:
                worst = max(required[index] for index, _variant in lost)
                start = "an empty start" if observation.state == EMPTY else "a start"
                violation(
                    lost,
                    f"lost acknowledged calls: {start} with the state of the history's first {reached} calls, "
                    f"where up to {worst} had been acknowledged",
                    _lost(recording, reached, worst),
                )
    if recording.archive_acked is not None and observation.archive not in (None, "ok"):
        late = [(index, variant) for index, variant in occurrences if recording.archive_acked < points[index].until]
        if late:
            violation(late, "the archive is unreadable after `replay export` answered", str(observation.archive))
    return found


def _lost(recording: Recording, reached: int, required: int) -> str:
    lost = recording.history[reached:required]
    names = ", ".join(f"#{issued.index} {issued.service}.{issued.operation}({issued.what})" for issued in lost[:6])
    more = f" and {len(lost) - 6} more" if len(lost) > 6 else ""
    return f"lost: {names}{more}" if lost else "nothing acknowledged was lost"


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


# --- sampling and running ----------------------------------------------------------------------------------------


def budget() -> int | None:
    """Trees to check per workload (``None``: all)."""
    setting = os.environ.get("REPLAY_FAULTS", "").strip().lower()
    if setting == "all":
        return None
    if setting.isdigit():
        return int(setting)
    return SAMPLE_PER_WORKLOAD


def seed() -> int:
    return int(os.environ.get("REPLAY_FAULTS_SEED", "14"))


def choose(simulation: Simulation, limit: int | None, rng: random.Random) -> list[str]:
    """The trees to check: every one, or ``limit`` of them.

    First the trees left once each traced command is done (every variant): what a command never makes
    durable shows there, so a missing sync is found whatever the sample.  Then, in a seeded order, one tree
    of each variant in turn, ``undone``, ``dropped``, ``garbled`` and ``kept``, the first three only where the
    tree differs from what the processes saw at that crash point (``kept``, what a ``kill -9`` leaves, which
    the e2e crash tests cover already).
    """
    digests = sorted(simulation.trees)
    if limit is None or limit >= len(digests):
        return digests
    chosen: list[str] = []
    ends = sorted({point.index for point in simulation.points if _last_of_trace(simulation, point.index)}, reverse=True)
    for index in ends:  # the last command's end first: everything was acknowledged there
        for variant in ("undone", "dropped", "garbled", "kept"):
            digest = simulation.leaves[(index, variant)]
            if digest not in chosen and len(chosen) < limit:
                chosen.append(digest)
    pools: dict[str, list[str]] = {}
    for variant in ("undone", "dropped", "garbled", "kept"):
        pool = {
            digest
            for (index, kind), digest in simulation.leaves.items()
            if kind == variant and (variant == "kept" or digest != simulation.leaves[(index, "kept")])
        }
        pools[variant] = sorted(pool)
    while len(chosen) < limit:
        progressed = False
        for variant in ("undone", "dropped", "garbled", "kept"):
            left = [digest for digest in pools[variant] if digest not in chosen]
            if left and len(chosen) < limit:
                chosen.append(rng.choice(left))
                progressed = True
        if not progressed:
            break
    return chosen


def _last_of_trace(simulation: Simulation, index: int) -> bool:
    points = simulation.points
    return index == len(points) - 1 or points[index + 1].trace != points[index].trace


@dataclasses.dataclass
class Result:
    recording: Recording
    simulation: Simulation
    checked: list[str]
    observations: dict[str, Observation]
    violations: list[Violation]
    seconds: float

    @property
    def covered(self) -> int:
        """Crash point/variant pairs whose tree was checked."""
        chosen = set(self.checked)
        return sum(1 for digest in self.simulation.leaves.values() if digest in chosen)

    def notes(self) -> list[str]:
        """What the property allows but is worth knowing: named refusals, starts that fell back or failed calls."""
        found: list[str] = []
        refusals: dict[str, list[str]] = {}
        for digest in self.checked:
            observation = self.observations[digest]
            variants = sorted({variant for _index, variant in self.simulation.occurrences(digest)})
            if observation.outcome == "refused" and observation.errors:
                kind = re.sub(r"/\S*/(checks|after-unlinks)/\d+/", "", observation.errors[0])
                kind = re.sub(r"\d+", "N", kind)[:160]
                refusals.setdefault(kind, []).extend(variants)
            persistence = (observation.health or {}).get("persistence") or {}
            persistence = persistence if isinstance(persistence, dict) else {}
            loaded = persistence.get("loaded")  # the snapshot backend's is a list of services
            if isinstance(loaded, dict) and loaded.get("from") == "calls":
                found.append(f"a start loaded checkpoint {loaded.get('checkpoint')} from its calls (snapshots refused)")
            if persistence.get("failed"):
                found.append(f"a start replayed {persistence['failed']} calls that failed ({'/'.join(variants)})")
        for kind, variants in sorted(refusals.items()):
            count = len(variants)
            found.append(f"{count} named refusal(s) ({'/'.join(sorted(set(variants)))}): {kind}")
        return sorted(set(found), key=found.index)

    def summary(self) -> str:
        lines = [
            f"[{self.recording.name}] {len(self.simulation.points)} crash points x {len(VARIANTS)} variants, "
            f"{len(self.simulation.trees)} distinct trees, {len(self.checked)} checked ({self.covered} crash "
            f"point/variant pairs), {len(self.violations)} violations; workload {self.recording.duration:.1f} s, "
            f"checks {self.seconds:.1f} s"
        ]
        lines.extend(f"    note: {note}" for note in self.notes())
        return "\n".join(lines)


def jobs() -> int:
    setting = os.environ.get("REPLAY_FAULTS_JOBS", "")
    return int(setting) if setting.isdigit() and int(setting) > 0 else max(2, os.cpu_count() or 2)


Selector = Callable[[Simulation, random.Random], list[str]]


def sample(simulation: Simulation, rng: random.Random) -> list[str]:
    """The default selection: :func:`choose` with the ``REPLAY_FAULTS`` budget."""
    return choose(simulation, budget(), rng)


def both(*selectors: Selector) -> Selector:
    """A selection: what each of ``selectors`` picks, in order, each tree once."""

    def select(simulation: Simulation, rng: random.Random) -> list[str]:
        chosen: list[str] = []
        for selector in selectors:
            chosen.extend(digest for digest in selector(simulation, rng) if digest not in chosen)
        return chosen

    return select


def after_unlinks(prefix: str, variant: str = "kept") -> Selector:
    """A selection: the ``variant`` tree right after each unlink of a path under ``prefix``."""

    def select(simulation: Simulation, rng: random.Random) -> list[str]:
        chosen: list[str] = []
        for point in simulation.points:
            match = re.match(r"unlink(?:at)?\((.*)\)$", point.syscall)
            if match is not None and match.group(1).startswith(prefix):
                digest = simulation.leaves[(point.index, variant)]
                if digest not in chosen:
                    chosen.append(digest)
        return chosen

    return select


def simulation_of(recording: Recording) -> Simulation:
    """The recording's crash points and trees (simulated once per recording)."""
    if recording.simulation is None:
        recording.simulation = simulate(recording.workspace, recording.initial, recording.traces, seed())
    return recording.simulation


def run_checks(recording: Recording, base: Path, select: Selector = sample, label: str = "checks") -> Result:
    """Check the trees ``select`` picks from the recording's simulation, and judge them."""
    started = time.monotonic()
    simulation = simulation_of(recording)
    rng = random.Random(f"{seed()}:{recording.name}:{label}")
    checked = select(simulation, rng)
    checks = base / label
    outside = base / "outside"
    checks.mkdir(exist_ok=True)
    outside.mkdir(exist_ok=True)

    def one(item: tuple[int, str]) -> tuple[str, Observation]:
        number, digest = item
        where = checks / f"{number:05d}"
        try:
            return digest, check_tree(simulation.trees[digest], simulation.blobs, where, recording.spec, outside)
        finally:
            shutil.rmtree(where, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=jobs()) as pool:
        observations = dict(pool.map(one, enumerate(checked)))
    violations: list[Violation] = []
    for number, digest in enumerate(checked):
        violations.extend(judge(recording, simulation, digest, observations[digest], checks / f"{number:05d}"))
    violations.sort(key=lambda found: (found.point, found.variants, found.what))
    result = Result(recording, simulation, checked, observations, violations, time.monotonic() - started)
    _write_report(result)
    return result


def _write_report(result: Result) -> None:
    target = os.environ.get("REPLAY_FAULTS_REPORT")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps({"workload": result.recording.name, "summary": result.summary()}) + "\n")
        for issued in result.recording.history:
            out.write(json.dumps({"workload": result.recording.name, "issued": dataclasses.asdict(issued)}) + "\n")
        for point in result.simulation.points:
            out.write(json.dumps({"workload": result.recording.name, "point": dataclasses.asdict(point)}) + "\n")
        for digest in result.checked:
            observation = result.observations[digest]
            out.write(
                json.dumps(
                    {
                        "workload": result.recording.name,
                        "tree": digest,
                        "files": [path for path, _content in result.simulation.trees[digest].files],
                        "at": result.simulation.occurrences(digest)[:20],
                        "outcome": observation.outcome,
                        "errors": observation.errors,
                        "read_error": observation.read_error,
                        "archive": observation.archive,
                        "state": observation.state,
                        "persistence": (observation.health or {}).get("persistence"),
                    }
                )
                + "\n"
            )
        for violation in result.violations:
            out.write(
                json.dumps({"workload": result.recording.name, "violation": dataclasses.asdict(violation)}) + "\n"
            )
