"""Continuous replication to S3 end to end: ``replay serve --replicate``, ``replay import s3://... [--at]``.

Real processes only: the server under test replicates into an S3 store that is either a plain ``moto_server``
(:class:`~_replication_helpers.MotoS3`, which can also be frozen with SIGSTOP to look hung) or another
``replay serve`` (whose own state survives its restart: the store for the outage test).  A restore lands in a
fresh data dir that a third server serves; boto3 then compares what it sees there (queues and their messages,
DynamoDB items, S3 objects and their bodies, and what was deleted) with what the live server showed, and the
restored log's call numbers with the live log's.

The property test (``fuzz``) runs 3 seeded workloads by default (``REPLAY_FUZZ_EXAMPLES=N``: N fresh random
ones); the kill test (``faults``) 2 seeded kill points (``REPLAY_FAULTS=all``: 15).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _replication_helpers import (
    BUCKET,
    S3_CREDENTIALS,
    History,
    Listing,
    LogKeeper,
    MotoS3,
    Snapshot,
    Workload,
    compact,
    contiguous,
    data_dir_history,
    entry_lines,
    fingerprint,
    inspect,
    iso,
    list_replica,
    moto_s3,
    replicate_args,
    replication,
    restore,
    restored,
    s3_client,
    seqs,
    serve_restored,
    shipped_consistently,
    snapshot_calls,
    start_on_port,
    wait_for,
    write_log,
)
from conftest import AwsClients, ReplayServer, Servers, free_port, replay_cli, server_env

pytestmark = pytest.mark.e2e

INTERVAL = 0.3  # seconds between shipments in most tests: short, to keep the file fast
OUTAGE = 10.0  # seconds the S3 store is away in the outage tests
LOG = "recorded_api_calls.json"


@pytest.fixture
def moto_store(servers: Servers, tmp_path: Path) -> Iterator[MotoS3]:
    """A moto_server holding the bucket ``replicas``; the test's servers stop before it does."""
    with moto_s3(tmp_path) as store:
        s3_client(store.endpoint).create_bucket(Bucket=BUCKET)
        yield store
        if store.frozen:
            store.thaw()
        servers.close()  # the replicating servers make their last upload while the store still answers


def start_replicating(
    servers: Servers,
    data_dir: Path,
    url: str,
    endpoint: str,
    *extra: str,
    interval: float = INTERVAL,
    env: dict[str, str] | None = None,
) -> ReplayServer:
    """``replay serve --replicate URL --endpoint-url ENDPOINT --replicate-interval INTERVAL EXTRA``."""
    return servers.start(
        data_dir, *replicate_args(url, endpoint, f"{interval}s"), *extra, env={**S3_CREDENTIALS, **(env or {})}
    )


def wait_shipped(
    server: ReplayServer, s3: Any, prefix: str, timeout: float = 20.0, bucket: str = BUCKET, last: int | None = None
) -> Listing:
    """Wait until the replica's segments reach the live log's last call, nothing is pending and the state is ok."""
    if last is None:
        last = max(data_dir_history(server.data_dir), default=0)

    def caught_up() -> Listing | None:
        listing = list_replica(s3, bucket, prefix)
        reached = max((segment.last for segment in listing.segments), default=0)
        status = replication(server)
        return listing if reached >= last and status["pending"] == 0 and status["state"] == "ok" else None

    listing: Listing = wait_for(caught_up, timeout, f"the replica reaching call #{last}")
    return listing


def back_to_ok(server: ReplayServer) -> Callable[[], dict[str, Any] | None]:
    """A check for :func:`wait_for`: the server's replication is ``ok`` with nothing pending."""

    def check() -> dict[str, Any] | None:
        status = replication(server)
        return status if status["state"] == "ok" and status["pending"] == 0 else None

    return check


def timed(call: Any, *args: Any, **kwargs: Any) -> float:
    started = time.monotonic()
    call(*args, **kwargs)
    return time.monotonic() - started


def log_of(data_dir: Path) -> Path:
    return data_dir / LOG


# --- 1. latest after kill -9 ----------------------------------------------------------------------------------


def test_latest_restore_after_kill_9_equals_the_live_state(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """Every call acknowledged two intervals before a kill -9 is in the replica: the same state, the same calls
    (call numbers and bytes), a large body included.  A segment damaged afterwards in the store fails the
    latest restore in one line (leaving not even the parent directories it made) while ``--at`` a time before
    it still restores."""
    url = f"s3://{BUCKET}/kill9"
    s3 = s3_client(moto_store.endpoint)
    live = start_replicating(servers, tmp_path / "live", url, moto_store.endpoint)
    status = replication(live)
    assert status["url"] == url and status["state"] == "ok" and status["generation"], status
    work = Workload(aws, live)
    work.setup()
    for name in ("alpha", "beta", "gamma"):
        work.create_queue(name)
    for n in range(4):
        work.send("alpha", f"a{n}")
        work.send("beta", f"b{n}")
        work.put_item(f"k{n}", f"v{n}")
        work.put_object(f"dir/o{n} ü.txt", f"body {n}".encode() * (n + 1))
    work.delete_queue("gamma")
    work.delete_item("k1")
    work.delete_object("dir/o2 ü.txt")
    time.sleep(2 * INTERVAL)  # the large body below goes up in a segment of its own
    work.put_object("big.bin", os.urandom(100_000))  # above the inline threshold: its body ships as a file
    expected = fingerprint(aws, live)
    assert set(expected["queues"]) == {"alpha", "beta"} and len(expected["tables"]["items"]) == 3

    time.sleep(2 * INTERVAL)
    live.kill()
    live_seqs = seqs(live.log_path)
    assert live_seqs == list(range(1, len(live_seqs) + 1))

    report = restored(url, moto_store.endpoint, tmp_path / "restored")
    assert (report["kind"], report["snapshot"], report["last_seq"]) == ("replay", None, live_seqs[-1])
    assert report["generation"] == status["generation"]
    assert seqs(log_of(tmp_path / "restored")) == live_seqs
    assert entry_lines(log_of(tmp_path / "restored")) == entry_lines(live.log_path)
    assert fingerprint(aws, serve_restored(servers, tmp_path / "restored")) == expected

    listing = list_replica(s3, BUCKET, "kill9")
    assert len(listing.segments) >= 2 and not contiguous(listing.segments)
    damaged = listing.segments[-1]
    s3.put_object(Bucket=BUCKET, Key=damaged.key, Body=gzip.compress(b'{"seq": 1}\n'))
    failed = restore(url, moto_store.endpoint, tmp_path / "missing" / "parents" / "damaged")
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1, failed.stderr
    assert "SHA-256" in failed.stderr and damaged.key.rsplit("/", 1)[-1] in failed.stderr, failed.stderr
    assert not (tmp_path / "missing").exists(), "a failed restore left directories it made"
    before = next(entry["time"] for entry in live.log_entries() if entry.get("seq") == damaged.after)
    restored(url, moto_store.endpoint, tmp_path / "before", "--at", repr(before))  # the damaged one not read
    assert seqs(log_of(tmp_path / "before")) == list(range(1, damaged.after + 1))


# --- 2. --at between two phases -------------------------------------------------------------------------------


def test_restore_at_a_time_between_two_phases_restores_the_first(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """``--at T`` (ISO 8601 with Z, and the same T as Unix seconds) gives the state of phase 1, deletions of
    phase 2 undone; no ``--at`` gives that of phase 2."""
    url = f"s3://{BUCKET}/phases"
    live = start_replicating(servers, tmp_path / "live", url, moto_store.endpoint)
    work = Workload(aws, live)
    work.setup()
    for name in ("keep", "drop"):
        work.create_queue(name)
        work.send(name, f"{name} 1")
    for key in ("k1", "k2", "k3"):
        work.put_item(key, f"{key} phase 1")
    for key in ("o1", "o2"):
        work.put_object(key, f"{key} phase 1".encode())
    phase_1 = fingerprint(aws, live)
    at = time.time()
    time.sleep(1.0)

    work.delete_queue("drop")
    work.send("keep", "keep 2")
    work.create_queue("new")
    work.send("new", "new 1")
    work.delete_item("k1")
    work.put_item("k2", "k2 phase 2")
    work.put_item("k4", "k4 phase 2")
    work.delete_object("o1")
    work.put_object("o2", b"o2 phase 2")
    work.put_object("o3", b"o3 phase 2")
    phase_2 = fingerprint(aws, live)
    assert set(phase_1["queues"]) == {"keep", "drop"} and set(phase_2["queues"]) == {"keep", "new"}
    wait_shipped(live, s3_client(moto_store.endpoint), "phases")
    history = [entry for entry in live.log_entries() if "time" in entry]
    first_phase = [entry["seq"] for entry in history if entry["time"] <= at]
    assert 0 < len(first_phase) < len(history)
    assert all(entry["time"] > at for entry in history[len(first_phase) :])

    report = restored(url, moto_store.endpoint, tmp_path / "at-iso", "--at", iso(at))
    assert report["at"] == pytest.approx(at, abs=1e-5)
    assert report["last_seq"] == first_phase[-1] and report["restored_to"] <= at
    assert seqs(log_of(tmp_path / "at-iso")) == first_phase
    as_restored = entry_lines(log_of(tmp_path / "at-iso"))  # before a server adds the fingerprint's receives
    assert fingerprint(aws, serve_restored(servers, tmp_path / "at-iso")) == phase_1
    report = restored(url, moto_store.endpoint, tmp_path / "at-unix", "--at", repr(at))
    assert report["at"] == at and report["last_seq"] == first_phase[-1]
    assert entry_lines(log_of(tmp_path / "at-unix")) == as_restored

    zoneless = restore(url, moto_store.endpoint, tmp_path / "zoneless", "--at", iso(at)[:-1])
    assert zoneless.returncode == 2 and "--at" in zoneless.stderr and zoneless.stderr.count("\n") == 1, zoneless
    assert not (tmp_path / "zoneless").exists()

    report = restored(url, moto_store.endpoint, tmp_path / "latest")
    assert report["last_seq"] == history[-1]["seq"]
    assert fingerprint(aws, serve_restored(servers, tmp_path / "latest")) == phase_2


# --- 3. the S3 store goes away ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Outage:
    """One replicating server whose store goes away, and what was seen meanwhile."""

    url: str
    store: str  # the store's endpoint
    live: ReplayServer
    work: Workload
    generation: str = ""
    states: list[str] = dataclasses.field(default_factory=list)
    errors: set[str] = dataclasses.field(default_factory=set)
    generations: set[str] = dataclasses.field(default_factory=set)
    slowest: float = 0.0
    items: int = 0
    payload: int = 0  # random bytes (hex) added to each item's message: what a backlog fills up with

    @property
    def prefix(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def write(self) -> None:
        """One item (and every third time a message), timed, then the health check, timed too."""
        self.items += 1
        self.slowest = max(self.slowest, timed(self.work.put_item, f"outage-{self.items}", "during"))
        if self.items % 3 == 0 or self.payload:
            body = f"during {self.items} " + os.urandom(self.payload).hex()
            self.slowest = max(self.slowest, timed(self.work.send, "jobs", body))
        started = time.monotonic()
        status = replication(self.live)
        self.slowest = max(self.slowest, time.monotonic() - started)  # the health check must not wait for S3
        if not self.states or self.states[-1] != status["state"]:
            self.states.append(status["state"])
        if status["error"]:
            self.errors.add(status["error"])
        self.generations.add(status["generation"])


def test_a_store_that_stops_or_hangs_for_ten_seconds_is_caught_up_with(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """Outages at once, 10 s each, while calls go on: a persisted ``replay serve`` store SIGTERMed (connections
    refused) and a moto_server frozen with SIGSTOP (connections accepted, never answered).  Calls and health
    checks stay fast; health says ``error`` within the 10 s (for the hung store too: a call times out after 5 s,
    tried once); once the stores are back (the first restarted on its port and data dir, the second sent
    SIGCONT) replication catches up in the same generation, and each latest restore serves its live state with
    the same call numbers.  A third server on the stopped store with ``--replicate-backlog 4kb`` drops its
    backlog and, once the store answers, starts a new generation that restores the same."""
    store = servers.start(tmp_path / "store")
    aws("s3", store).create_bucket(Bucket=BUCKET)
    outages = []
    for name, endpoint, extra in (
        ("stopped", store.endpoint, ()),
        ("hung", moto_store.endpoint, ()),
        ("overflowed", store.endpoint, ("--replicate-backlog", "4kb")),
    ):
        url = f"s3://{BUCKET}/{name}"
        live = start_replicating(servers, tmp_path / name, url, endpoint, *extra)
        work = Workload(aws, live)
        work.setup()
        work.create_queue("jobs")
        work.send("jobs", "before")
        outages.append(Outage(url, endpoint, live, work, replication(live)["generation"]))
    stopped, hung, overflowed = outages
    overflowed.payload = 1024  # past the 4 kB backlog within a few calls, however slow the machine is
    for outage in outages:
        wait_shipped(outage.live, s3_client(outage.store), outage.prefix)
        outage.states.append(replication(outage.live)["state"])  # before the outage (a slow first write may
        # land after the replicator has already met the stopped store)

    port = store.port
    store.stop()
    moto_store.freeze()
    try:
        deadline = time.monotonic() + OUTAGE
        while time.monotonic() < deadline:
            for outage in outages:
                outage.write()
            time.sleep(0.05)
        status = replication(stopped.live)
    finally:
        moto_store.thaw()
    start_on_port(servers, port, tmp_path / "store")
    for outage in outages:
        assert outage.slowest < 1.0, f"{outage.prefix}: a call took {outage.slowest:.2f} s during the outage"
    assert stopped.states[0] == "ok" and "error" in stopped.states, stopped.states
    assert status["state"] == "error" and status["error"] and status["pending"] > 0, status
    assert hung.states[0] == "ok" and "error" in hung.states, f"a 10 s hang was not reported as an error: {hung.states}"
    assert "error" in overflowed.states and any("backlog" in error for error in overflowed.errors), overflowed
    assert overflowed.generations == {overflowed.generation}, "a new generation started while the store was away"

    for outage in outages:
        wait_for(back_to_ok(outage.live), 45.0, f"{outage.prefix}: replication back to ok with nothing pending")
    for outage in outages:
        outage.work.send("jobs", "after")
        expected = fingerprint(aws, outage.live)
        assert len(expected["tables"]["items"]) == outage.items
        assert {"before", "after"} <= set(expected["queues"]["jobs"]["bodies"])
        wait_shipped(outage.live, s3_client(outage.store), outage.prefix)
        generation = replication(outage.live)["generation"]
        if outage is overflowed:  # the dropped backlog: a history with a hole is never shipped, a new one starts
            assert generation != outage.generation
            assert len(list_replica(s3_client(outage.store), BUCKET, outage.prefix).generations()) == 2
        else:
            assert generation == outage.generation  # nothing dropped: the same history goes on
        outage.live.stop()
        target = tmp_path / f"restored-{outage.prefix}"
        report = restored(outage.url, outage.store, target)
        assert report["generation"] == generation
        assert seqs(log_of(target)) == data_dir_history(outage.live.data_dir)
        if outage is overflowed:  # the same calls as live, as written: the same state (served above for the others)
            assert entry_lines(log_of(target)) == entry_lines(outage.live.log_path)
        else:
            assert fingerprint(aws, serve_restored(servers, target)) == expected, outage.prefix


def test_an_overflowed_backlog_starts_one_new_generation_once_the_store_answers(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """While the store refuses connections, a backlog past ``--replicate-backlog`` is dropped, and the generation
    health names stays the same until the store answers again (it once started a new one at every retry).  The
    store goes away right after the server took its lease: a renewal, due 5 s later, fails first and would hide
    that."""
    live = start_replicating(
        servers, tmp_path / "live", f"s3://{BUCKET}/backlog", moto_store.endpoint, "--replicate-backlog", "2kb"
    )
    generation = replication(live)["generation"]
    moto_store.stop()  # refused from now on
    work = Workload(aws, live)
    work.setup()
    for n in range(20):
        work.put_item(f"k{n}", os.urandom(200).hex())  # incompressible: the pending segments pass 2 kB
    seen: list[str] = []
    errors: set[str] = set()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        status = replication(live)
        if not seen or seen[-1] != status["generation"]:
            seen.append(status["generation"])
        errors.add(str(status["error"]))
        time.sleep(0.05)
    live.kill()  # its store is gone for good: nothing to wait for
    assert status["state"] == "error" and any("backlog" in error for error in errors), (status, errors)
    assert seen == [generation], f"generations named while the store was away: {seen}"


# --- 4. retention ---------------------------------------------------------------------------------------------


def expected_restore(s3: Any, listing: Listing, history: History, at: float) -> tuple[Snapshot | None, list[bytes]]:
    """What ``--at at`` must restore: the newest snapshot taken by then, its calls, then the history's prefix."""
    taken = [snapshot for snapshot in listing.snapshots if snapshot.as_of <= at]
    snapshot = max(taken, key=lambda s: (s.through, s.as_of_ms), default=None)
    if snapshot is None:
        return None, history.prefix(at)
    return snapshot, snapshot_calls(s3, listing.bucket, snapshot) + history.prefix(at, after=snapshot.through)


def check_restore_at(
    url: str, endpoint: str, s3: Any, listing: Listing, history: History, at: float, target: Path
) -> list[bytes]:
    """Restore ``--at at`` into ``target``; assert its log is exactly the expected one; return that log."""
    snapshot, lines = expected_restore(s3, listing, history, at)
    report = restored(url, endpoint, target, "--at", repr(at))
    assert report["snapshot"] == (snapshot.key.rsplit("/", 1)[-1] if snapshot is not None else None), at
    got = entry_lines(log_of(target))
    assert [json.loads(line)["seq"] for line in got] == [json.loads(line)["seq"] for line in lines], at
    assert got == lines, f"--at {at}: the restored log differs from the history's prefix"
    return lines


def test_retention_prunes_old_objects_and_keeps_every_point_in_the_window(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """``--replicate-retention 4s``: ~9 s of rounds, each closed by a checkpoint.  At a bucket's root, the old
    snapshots and segments are gone and a restore at any time of the last 4 s is exactly the history up to then;
    the same workload replicated under a prefix is pruned the same way."""
    s3 = s3_client(moto_store.endpoint)
    s3.create_bucket(Bucket="replica-root")
    rigs = []
    places = (("replica-root", ""), (BUCKET, "retention"))
    for name, url in (("root", "s3://replica-root"), ("prefixed", f"s3://{BUCKET}/retention")):
        server = start_replicating(
            servers, tmp_path / name, url, moto_store.endpoint, "--replicate-retention", "4s", interval=0.5
        )
        work = Workload(aws, server, random.Random(4))
        work.setup()
        rigs.append((url, server, work, History(server.log_path)))
    rounds = 5
    for _ in range(rounds):
        began = time.monotonic()
        for _, server, work, history in rigs:
            for _ in range(5):
                work.random_write()
            history.collect()
            compact(server)
        time.sleep(max(0.0, 1.7 - (time.monotonic() - began)))
    for (_, server, work, history), (bucket, prefix) in zip(rigs, places, strict=True):
        work.random_write()
        history.collect()
        wait_shipped(server, s3, prefix, bucket=bucket)
    stopped = time.time()
    for _, server, _, _ in rigs:
        server.stop()

    (url, _, _, history) = rigs[0]
    listing = list_replica(s3, "replica-root", "")
    assert len(listing.generations()) == 1
    assert 0 < len(listing.snapshots) < rounds, f"old snapshots were not pruned: {listing.snapshots}"
    base = min(listing.snapshots, key=lambda s: s.through)
    assert base.as_of < stopped - 4.0, "the snapshot a restore at the window's start needs was pruned"
    assert sum(s.as_of < stopped - 6.0 for s in listing.snapshots) <= 1, listing.snapshots
    assert all(segment.last > base.through for segment in listing.segments), "segments before the base survived"
    assert not any(segment.after == 0 for segment in listing.segments), "the first segments were not pruned"
    assert not contiguous(listing.segments) and listing.segments[0].after <= base.through

    rng = random.Random(44)
    moments = [stopped - 3.5, stopped] + [rng.uniform(stopped - 3.5, stopped) for _ in range(2)]
    for number, at in enumerate(moments):
        check_restore_at(url, moto_store.endpoint, s3, listing, history, at, tmp_path / f"at-{number}")
    reference = tmp_path / "reference"  # the state served from a restore is that of the whole history replayed
    write_log(reference, history.prefix(moments[-1]))
    assert fingerprint(aws, serve_restored(servers, tmp_path / f"at-{len(moments) - 1}")) == fingerprint(
        aws, serve_restored(servers, reference)
    )

    prefixed = list_replica(s3, BUCKET, "retention")  # pruned alike under a prefix (it once deleted nothing there)
    assert len(prefixed.generations()) == 1 and 0 < len(prefixed.snapshots) < rounds, prefixed.snapshots
    assert not any(segment.after == 0 for segment in prefixed.segments), "the first segments were not pruned"
    assert min(s.as_of for s in prefixed.snapshots) < stopped - 4.0


# --- 5. a restart continues the generation --------------------------------------------------------------------


def test_restarts_continue_the_generation_without_gaps_or_duplicates(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """A SIGTERM restart and a kill -9 restart of the same data dir keep shipping into the same generation; the
    segments chain, each call is shipped once (or twice identically), and the restore holds every call number
    exactly once."""
    url = f"s3://{BUCKET}/restarts"
    data = tmp_path / "live"
    s3 = s3_client(moto_store.endpoint)
    first = start_replicating(servers, data, url, moto_store.endpoint)
    generation = replication(first)["generation"]
    work = Workload(aws, first, random.Random(5))
    work.setup()
    for _ in range(10):
        work.random_write()
    first.stop()

    second = start_replicating(servers, data, url, moto_store.endpoint)
    assert replication(second)["generation"] == generation
    work.bind(second)
    for _ in range(10):
        work.random_write()
    second.kill()  # right after the last call: some of it is cut or uploaded, some not yet

    third = start_replicating(servers, data, url, moto_store.endpoint)
    assert replication(third)["generation"] == generation
    work.bind(third)
    for _ in range(10):
        work.random_write()
    expected = fingerprint(aws, third)
    wait_shipped(third, s3, "restarts")
    third.stop()

    live_seqs = data_dir_history(data)
    assert live_seqs == list(range(1, len(live_seqs) + 1)), "the live log numbers its calls without gaps"
    listing = list_replica(s3, BUCKET, "restarts")
    assert listing.generations() == [generation]
    assert not contiguous(listing.segments)
    assert listing.segments[0].after == 0 and max(s.last for s in listing.segments) == live_seqs[-1]
    assert sorted(shipped_consistently(s3, BUCKET, listing.segments)) == live_seqs

    report = restored(url, moto_store.endpoint, tmp_path / "restored")
    assert report["generation"] == generation
    assert seqs(log_of(tmp_path / "restored")) == live_seqs
    assert fingerprint(aws, serve_restored(servers, tmp_path / "restored")) == expected


# --- 6. snapshot backend: signed and unsigned archives ---------------------------------------------------------


KEY = "replication-key-0123456789abcdef"
SNAPSHOT_BACKEND = ("--backend", "snapshot", "--save-strategy", "MANUAL")
SNAPSHOT_SERVE = ("--backend", "snapshot", "--load-strategy", "ON_STARTUP")


def _save(server: ReplayServer) -> None:
    answer = requests.post(server.endpoint + "/_localstack/state/save", timeout=30)
    assert answer.status_code == 200, answer.text


def _snapshot_state(aws: AwsClients, server: ReplayServer, tag: str) -> dict[str, Any]:
    work = Workload(aws, server)
    work.setup()
    work.create_queue("snap")
    work.send("snap", f"kept {tag}")
    work.put_item("a", tag)
    work.put_object("o", f"object body {tag}".encode())
    return fingerprint(aws, server)


def test_snapshot_archives_need_trust_or_the_shared_key(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """A save ships as a pickled snapshot archive: unsigned, ``import`` refuses it in one line (and leaves no
    data dir) unless ``--trust``; signed with ``REPLAY_ARCHIVE_KEY``, an importer with the same key takes it
    without ``--trust``, one without a key or with another key does not."""
    s3 = s3_client(moto_store.endpoint)
    unsigned_url, signed_url = f"s3://{BUCKET}/unsigned", f"s3://{BUCKET}/signed"
    unsigned = start_replicating(servers, tmp_path / "unsigned", unsigned_url, moto_store.endpoint, *SNAPSHOT_BACKEND)
    signed = start_replicating(
        servers,
        tmp_path / "signed",
        signed_url,
        moto_store.endpoint,
        *SNAPSHOT_BACKEND,
        env={"REPLAY_ARCHIVE_KEY": KEY},
    )
    expected = {"unsigned": _snapshot_state(aws, unsigned, "u"), "signed": _snapshot_state(aws, signed, "s")}
    for server in (unsigned, signed):
        _save(server)
    for prefix in ("unsigned", "signed"):
        wait_for(lambda: list_replica(s3, BUCKET, prefix).snapshots, 10.0, f"a snapshot in {prefix}")  # noqa: B023
    assert "shipped unsigned" in unsigned.stop() and "shipped unsigned" not in signed.stop()

    refused = restore(unsigned_url, moto_store.endpoint, tmp_path / "nokey")
    assert refused.returncode != 0 and "untrusted" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("replay: error: "), refused.stderr
    assert not (tmp_path / "nokey").exists()
    report = restored(unsigned_url, moto_store.endpoint, tmp_path / "trusted", "--trust")
    assert report["kind"] == "snapshot" and report["snapshot"]
    assert fingerprint(aws, serve_restored(servers, tmp_path / "trusted", *SNAPSHOT_SERVE)) == expected["unsigned"]

    for name, env in (("keyless", {}), ("wrong", {"REPLAY_ARCHIVE_KEY": "another-key-0123456789abcdef"})):
        done = restore(signed_url, moto_store.endpoint, tmp_path / name, env=env)
        assert done.returncode != 0 and not (tmp_path / name).exists(), (name, done.stderr)
    report = restored(signed_url, moto_store.endpoint, tmp_path / "keyed", env={"REPLAY_ARCHIVE_KEY": KEY})
    assert report["kind"] == "snapshot"
    assert fingerprint(aws, serve_restored(servers, tmp_path / "keyed", *SNAPSHOT_SERVE)) == expected["signed"]


# --- 7. one writer per prefix ---------------------------------------------------------------------------------


def test_a_second_server_on_the_same_prefix_is_refused_and_the_first_goes_on(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path
) -> None:
    """While one data dir replicates into a prefix, a server on another data dir is refused at start (status
    != 0, "another server replicates here"); the first keeps shipping, and its restore has the later calls.
    Once the first stopped cleanly (freeing the prefix) the other one may start there: a new generation,
    which the latest restore follows, while ``--at`` a time of the first's life restores the first's history."""
    url = f"s3://{BUCKET}/shared"
    s3 = s3_client(moto_store.endpoint)
    first = start_replicating(servers, tmp_path / "first", url, moto_store.endpoint)
    work = Workload(aws, first)
    work.setup()
    work.put_item("before", "1")
    wait_shipped(first, s3, "shared")

    refused = servers.run(
        tmp_path / "second", *replicate_args(url, moto_store.endpoint, f"{INTERVAL}s"), env=S3_CREDENTIALS
    )
    assert refused.returncode != 0, refused.stderr
    assert "another server replicates here" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    work.put_item("after", "2")
    wait_shipped(first, s3, "shared")
    status = replication(first)
    assert status["state"] == "ok" and status["error"] is None
    lease = json.loads(s3.get_object(Bucket=BUCKET, Key="shared/lease.json")["Body"].read())
    assert lease["data_dir"] == str(first.data_dir)
    described = inspect(url, moto_store.endpoint)
    assert described["writer"]["data_dir"] == str(first.data_dir) and len(described["generations"]) == 1
    first.stop()
    first_lines = entry_lines(first.log_path)
    first_life = time.time()
    restored(url, moto_store.endpoint, tmp_path / "restored")
    assert entry_lines(log_of(tmp_path / "restored")) == first_lines  # its "after" included

    time.sleep(0.01)
    second = start_replicating(servers, tmp_path / "second", url, moto_store.endpoint)
    taken_over = replication(second)["generation"]
    assert taken_over != status["generation"]
    other = Workload(aws, second)
    other.setup()
    other.put_item("second", "3")
    wait_shipped(second, s3, "shared")
    second.stop()
    report = restored(url, moto_store.endpoint, tmp_path / "latest")
    assert report["generation"] == taken_over
    assert entry_lines(log_of(tmp_path / "latest")) == entry_lines(second.log_path)
    report = restored(url, moto_store.endpoint, tmp_path / "then", "--at", repr(first_life))
    assert report["generation"] == status["generation"]
    assert entry_lines(log_of(tmp_path / "then")) == first_lines


# --- 8. never into itself ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag localhost", "AWS_ENDPOINT_URL"])
def test_replicating_into_the_server_itself_is_refused(servers: Servers, tmp_path: Path, how: str) -> None:
    """``--endpoint-url`` (or ``AWS_ENDPOINT_URL``) naming the server's own port: refused at start, one line."""
    port = free_port()
    host = "localhost" if "localhost" in how else "127.0.0.1"
    args = ["--replicate", f"s3://{BUCKET}/self"]
    env = dict(S3_CREDENTIALS)
    if how.startswith("flag"):
        args += ["--endpoint-url", f"http://{host}:{port}"]
    else:
        env["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    done = subprocess.run(
        servers.command(port, tmp_path / "data", args),
        capture_output=True,
        text=True,
        env=server_env(env),
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("replay: error: ") and f":{port}" in errors[0], errors[0]
    assert "replicating into this one" in errors[0], errors[0]
    assert ("--endpoint-url" if how.startswith("flag") else "AWS_ENDPOINT_URL") in errors[0], errors[0]


# --- 9. property: --at restores the history's prefix ---------------------------------------------------------


_FUZZ = int(os.environ.get("REPLAY_FUZZ_EXAMPLES", "0") or 0)
FUZZ_SEEDS = [random.randrange(1 << 30) for _ in range(_FUZZ)] if _FUZZ else [11]


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_restore_at_random_times_is_the_live_history_prefix(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path, seed: int
) -> None:
    """A random workload with random pauses and two checkpoints; ``--at T`` for random T (and T exactly an
    entry's time, and the last one's) restores the newest snapshot taken by T and then the calls in order up to
    the first one started after T; the served state equals that of the history's prefix replayed."""
    rng = random.Random(seed)
    prefix = f"fuzz-{seed}"
    url = f"s3://{BUCKET}/{prefix}"
    s3 = s3_client(moto_store.endpoint)
    live = start_replicating(servers, tmp_path / "live", url, moto_store.endpoint)
    history = History(live.log_path)
    work = Workload(aws, live, rng)
    work.setup()
    count = rng.randint(20, 40)
    checkpoints = set(rng.sample(range(5, count), 2))
    for number in range(count):
        work.random_write()
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0.0, 0.2))
        if number in checkpoints:
            history.collect()
            compact(live)
    history.collect()
    time.sleep(2 * INTERVAL)  # the last checkpoint's archive goes up in a round of its own
    wait_shipped(live, s3, prefix, last=max(history.lines))
    live.stop()

    listing = list_replica(s3, BUCKET, prefix)
    assert len(listing.generations()) == 1 and len(listing.snapshots) == 2, listing
    timeline = history.ordered()
    first, last = timeline[0][1], timeline[-1][1]
    moments = [rng.uniform(first, last) for _ in range(4)] + [rng.choice(timeline)[1], last]
    served = rng.randrange(len(moments))
    for number, at in enumerate(moments):
        target = tmp_path / f"at-{number}"
        check_restore_at(url, moto_store.endpoint, s3, listing, history, at, target)
        if number == served:
            reference = tmp_path / "reference"
            write_log(reference, history.prefix(at))
            assert fingerprint(aws, serve_restored(servers, target)) == fingerprint(
                aws, serve_restored(servers, reference)
            ), f"--at {at}"
    too_early = restore(url, moto_store.endpoint, tmp_path / "too-early", "--at", repr(first - 5))
    assert too_early.returncode != 0 and "holds nothing as old as" in too_early.stderr, too_early.stderr
    assert not (tmp_path / "too-early").exists()


# --- 10. kill -9 at random moments under load -----------------------------------------------------------------


_FAULTS = os.environ.get("REPLAY_FAULTS", "").strip().lower()
KILL_SEEDS = list(range(100, 115)) if _FAULTS == "all" else [100]


class Writer(threading.Thread):
    """Writes as fast as it can; survives the server's death (its calls fail) until rebound to a new one."""

    def __init__(self, work: Workload) -> None:
        super().__init__(name="replication-writer", daemon=True)
        self.work = work
        self.halt = threading.Event()
        self.paused = threading.Event()
        self.idle = threading.Event()
        self.done = 0
        self.failed = 0

    def run(self) -> None:
        while not self.halt.is_set():
            if self.paused.is_set():
                self.idle.set()
                time.sleep(0.01)
                continue
            try:
                self.work.random_write()
                self.done += 1
            except Exception:  # the server was killed under this call
                self.failed += 1
                time.sleep(0.02)

    def pause(self) -> None:
        self.idle.clear()
        self.paused.set()
        assert self.idle.wait(60), "the writer did not pause"

    def resume(self) -> None:
        self.paused.clear()


def _compact_quietly(server: ReplayServer) -> int:
    """``replay compact`` against a running server; its exit status (a checkpoint may already be running)."""
    return replay_cli("compact", str(server.data_dir)).returncode


@pytest.mark.faults
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_kill_9_under_load_loses_and_duplicates_nothing(
    servers: Servers, aws: AwsClients, moto_store: MotoS3, tmp_path: Path, seed: int
) -> None:
    """Calls at full speed, automatic and forced checkpoints; kill -9 at a random moment; a restart on the same
    data dir; more calls; a stop.  Every line the live log ever held (followed across checkpoints) numbers
    the calls 1..N once each; the latest restore is its snapshot's calls and then exactly the live lines after
    it, and serves the live state."""
    rng = random.Random(seed)
    prefix = f"faults-{seed}"
    url = f"s3://{BUCKET}/{prefix}"
    data = tmp_path / "live"
    checkpoints = ("--checkpoint-percentage", "100", "--checkpoint-min-size", "4kb")
    s3 = s3_client(moto_store.endpoint)
    live = start_replicating(servers, data, url, moto_store.endpoint, *checkpoints, interval=0.2)
    generation = replication(live)["generation"]
    keeper = LogKeeper(live.log_path)
    keeper.start()
    work = Workload(aws, live, rng)
    work.setup()
    writer = Writer(work)
    writer.start()
    try:
        deadline = time.monotonic() + rng.uniform(0.5, 3.0)
        while time.monotonic() < deadline:
            if rng.random() < 0.3:
                _compact_quietly(live)
            time.sleep(rng.uniform(0.05, 0.3))
        live.kill()
        writer.pause()
        killed_at = writer.done

        again = start_replicating(servers, data, url, moto_store.endpoint, *checkpoints, interval=0.2)
        work.bind(again)
        writer.resume()
        time.sleep(rng.uniform(0.5, 1.5))
        _compact_quietly(again)
        time.sleep(0.3)
        writer.pause()
    finally:
        writer.halt.set()
        writer.join(30)
    assert killed_at > 20 and writer.done > killed_at + 20, (killed_at, writer.done)
    expected = fingerprint(aws, again)
    keeper.step()
    wait_shipped(again, s3, prefix, timeout=30, last=max(keeper.lines))
    again.stop()
    keeper.stop()

    assert not keeper.conflicts, f"call numbers reused for other calls: {keeper.conflicts[:3]}"
    live_seqs = keeper.seqs()
    assert live_seqs == list(range(1, len(live_seqs) + 1)), "the live history has gaps"
    report = restored(url, moto_store.endpoint, tmp_path / "restored")
    listing = list_replica(s3, BUCKET, prefix)
    segments, snapshots = listing.of(report["generation"])
    snapshot = next((s for s in snapshots if s.key.endswith("/" + str(report["snapshot"]))), None)
    start = snapshot.through if snapshot is not None else 0
    expected_lines = (snapshot_calls(s3, BUCKET, snapshot) if snapshot is not None else []) + [
        keeper.lines[seq] for seq in live_seqs if seq > start
    ]
    got = entry_lines(log_of(tmp_path / "restored"))
    assert [json.loads(line)["seq"] for line in got] == [json.loads(line)["seq"] for line in expected_lines], report
    assert got == expected_lines
    assert report["last_seq"] == live_seqs[-1]
    assert set(data_dir_history(data)) <= {json.loads(line)["seq"] for line in got}
    chain = [segment for segment in segments if segment.last > start]
    if chain:
        assert chain[0].after <= start and not contiguous(chain), (start, chain)
    else:
        assert start == live_seqs[-1], (start, segments)
    shipped = shipped_consistently(s3, BUCKET, segments)
    assert all(keeper.lines[seq] == line for seq, line in shipped.items())
    if report["generation"] != generation:  # a new generation must say why
        info = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/generations/{report['generation']}/generation.json")
        assert json.loads(info["Body"].read())["reason"]
    assert fingerprint(aws, serve_restored(servers, tmp_path / "restored")) == expected
