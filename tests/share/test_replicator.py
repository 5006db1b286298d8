"""The replicator, round by round (``sync()`` called by the test), against a real ``moto_server`` as S3.

Data dirs are written with :class:`~replay.record.log.CallLog` as a server writes them; restores go
through :func:`~replay.share.recovery.restore_replica`.  The server-level behaviour (threads,
checkpoints, kill -9, outages of a real store) is in ``tests/e2e/test_replication.py``.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from replay.config import FsyncPolicy
from replay.errors import ReplicaError, ReplicaInUseError
from replay.record.entry import Entry, Request, Response, encode_entry, numbered
from replay.record.log import CallLog, encode_header
from replay.share.recovery import describe_replica, restore_replica
from replay.share.replica import ReplicaClient, SegmentName, parse_replica
from replay.share.replicator import LEASE_TTL, ReplicaSource, Replicator
from replay.storage.checkpoint import Manifest, write_manifest

LOG_NAME = "recorded_api_calls.json"
BUCKET = "replicas"


@pytest.fixture
def s3(replica_store: Any) -> Any:
    return replica_store


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    """A prefix of its own for each test."""
    return f"s3://{BUCKET}/{request.node.name.replace('[', '-').replace(']', '')}"


def note(text: str, at: float) -> bytes:
    request = Request("POST", "/notes", "", [("Content-Type", "text/plain")], text.encode())
    return encode_entry(Entry(at, "notes", "AddNote", request, Response(201, [], b"added")))


def append(data_dir: Path, *notes: tuple[str, float]) -> None:
    with CallLog(data_dir / LOG_NAME, FsyncPolicy.NO) as log:
        for text, at in notes:
            log.append(note(text, at))


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def texts(data_dir: Path) -> list[str]:
    return [entry["request"]["body"] for entry in lines(data_dir / LOG_NAME) if "request" in entry]


def replicator(data_dir: Path, url: str, endpoint: str, **options: Any) -> Replicator:
    rep = Replicator(data_dir, url, ReplicaSource.REPLAY, endpoint, interval=0.1, **options)
    rep.prepare()
    return rep


def test_a_log_shipped_round_by_round_restores_whole_and_at_any_time(
    tmp_path: Path, s3: Any, s3_endpoint: str, url: str
) -> None:
    data_dir = tmp_path / "live"
    rep = replicator(data_dir, url, s3_endpoint)
    append(data_dir, ("a", 100.0), ("b", 101.0))
    rep.sync()
    append(data_dir, ("c", 102.0), ("late start", 99.5), ("e", 104.0))  # a slow call started before c
    rep.sync()
    status = rep.status()
    assert status["state"] == "ok" and status["pending"] == 0 and status["uploaded"] == 3, status
    restored = restore_replica(url, tmp_path / "latest", endpoint_url=s3_endpoint)
    assert texts(tmp_path / "latest") == ["a", "b", "c", "late start", "e"]
    assert restored.last_seq == 5 and restored.calls == 5 and restored.segments == 2
    assert (tmp_path / "latest" / LOG_NAME).read_bytes() == (data_dir / LOG_NAME).read_bytes()
    for at, expected in ((100.0, ["a"]), (101.5, ["a", "b"]), (103.9, ["a", "b", "c", "late start"]), (1e10, None)):
        target = tmp_path / f"at-{at}"
        report = restore_replica(url, target, at=at, endpoint_url=s3_endpoint)
        assert texts(target) == (expected or ["a", "b", "c", "late start", "e"]), at
        assert report.at == at
    with pytest.raises(ReplicaError, match="nothing as old as"):
        restore_replica(url, tmp_path / "too-early", at=99.0, endpoint_url=s3_endpoint)
    assert not (tmp_path / "too-early").exists()
    described = describe_replica(url, s3_endpoint)
    assert described["restore_window"] == [100.0, 104.0]
    assert described["writer"] is not None and described["writer"]["pid"] > 0  # type: ignore[index]
    rep.stop()


def test_a_restart_continues_the_generation_and_a_lost_end_starts_a_new_one(
    tmp_path: Path, s3: Any, s3_endpoint: str, url: str
) -> None:
    data_dir = tmp_path / "live"
    append(data_dir, ("a", 1.0), ("b", 2.0))
    first = replicator(data_dir, url, s3_endpoint)
    first.sync()
    generation = first.generation
    first.stop()
    append(data_dir, ("c", 3.0))
    second = replicator(data_dir, url, s3_endpoint)
    assert second.generation == generation
    second.sync()
    second.stop()
    client = ReplicaClient(parse_replica(url), s3_endpoint)
    (only,) = client.generations()
    assert [(s.after, s.last) for s in only.segments] == [(0, 2), (2, 3)]
    # the log loses its last call (say, a power loss with fsync everysec): the replica is ahead of it
    log = data_dir / LOG_NAME
    log.write_bytes(b"".join(line + b"\n" for line in log.read_bytes().splitlines()[:2]))
    third = replicator(data_dir, url, s3_endpoint)
    assert third.generation != generation
    append(data_dir, ("c2", 4.0))
    third.sync()
    third.stop()
    restore_replica(url, tmp_path / "latest", endpoint_url=s3_endpoint)
    assert texts(tmp_path / "latest") == ["a", "b", "c2"]
    restore_replica(url, tmp_path / "before", at=3.5, endpoint_url=s3_endpoint)
    assert texts(tmp_path / "before") == ["a", "b", "c"]  # the old generation still answers for its time


def test_a_second_data_dir_is_refused_until_the_lease_runs_out(
    tmp_path: Path, s3: Any, s3_endpoint: str, url: str
) -> None:
    append(tmp_path / "one", ("a", 1.0))
    holder = replicator(tmp_path / "one", url, s3_endpoint)
    holder.sync()
    with pytest.raises(ReplicaInUseError, match="another server replicates here"):
        replicator(tmp_path / "two", url, s3_endpoint)
    later = Replicator(
        tmp_path / "two", url, ReplicaSource.REPLAY, s3_endpoint, clock=lambda: time.time() + LEASE_TTL + 1
    )
    later.prepare()  # the holder's lease is stale for this clock: taken over
    later.sync()
    holder._renewed = 0.0  # its next round renews: it finds the lease taken and stops
    holder.sync()
    assert holder.status()["state"] == "error" and "took the replica's lease" in str(holder.status()["error"])


def test_an_unreachable_store_keeps_a_bounded_backlog_and_a_new_generation_follows(
    tmp_path: Path, s3: Any, s3_endpoint: str, url: str
) -> None:
    data_dir = tmp_path / "live"
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    rep = Replicator(data_dir, url, ReplicaSource.REPLAY, down, interval=0.1, backlog=4000)
    rep.prepare()  # S3 does not answer: no error, the server starts
    append(data_dir, *((f"call {n}", float(n)) for n in range(5)))
    rep.sync()
    status = rep.status()
    assert status["state"] == "error" and status["pending"] >= 2 and status["lag_seconds"] > 0, status
    append(data_dir, *((f"call {n} " + os.urandom(450).hex(), float(n)) for n in range(5, 15)))
    rep._next_try = 0.0
    rep.sync()  # past the backlog: dropped
    assert rep.status()["pending"] == 0 and "backlog" in str(rep.status()["error"])
    overflowed = rep.generation
    rep._next_try = 0.0
    rep.sync()  # still away: no new generation yet, nothing cut again
    assert rep.generation == overflowed and rep.status()["pending"] == 0
    rep.client = ReplicaClient(parse_replica(url), s3_endpoint)  # S3 is back
    rep._next_try = 0.0
    rep.sync()
    assert rep.status()["state"] == "ok" and rep.status()["pending"] == 0, rep.status()
    restore_replica(url, tmp_path / "latest", endpoint_url=s3_endpoint)
    assert len(texts(tmp_path / "latest")) == 15


def test_a_damaged_or_missing_segment_is_never_used(tmp_path: Path, s3: Any, s3_endpoint: str, url: str) -> None:
    data_dir = tmp_path / "live"
    rep = replicator(data_dir, url, s3_endpoint)
    for n in range(3):
        append(data_dir, (f"call {n}", 10.0 + n))
        rep.sync()
    rep.stop()
    client = ReplicaClient(parse_replica(url), s3_endpoint)
    (generation,) = client.generations()
    middle = generation.segments[1]
    key = client.location.key(generation.segment_key(middle))
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    forged = gzip.compress(gzip.decompress(original).replace(b"call 1", b"call X"))
    s3.put_object(Bucket=BUCKET, Key=key, Body=forged)
    with pytest.raises(ReplicaError, match="fails its SHA-256"):
        restore_replica(url, tmp_path / "forged", endpoint_url=s3_endpoint)
    assert not (tmp_path / "forged").exists()
    restore_replica(url, tmp_path / "before", at=10.5, endpoint_url=s3_endpoint)
    assert texts(tmp_path / "before") == ["call 0"]
    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ReplicaError, match="gap after call #1"):
        restore_replica(url, tmp_path / "gapped", endpoint_url=s3_endpoint)
    described = describe_replica(url, s3_endpoint)
    assert described["generations"][0]["gap_after"] == 1  # type: ignore[index]


def test_segments_hold_the_log_lines_as_written(tmp_path: Path, s3: Any, s3_endpoint: str, url: str) -> None:
    data_dir = tmp_path / "live"
    rep = replicator(data_dir, url, s3_endpoint)
    append(data_dir, ("ü ünïcode", 5.0))
    rep.sync()
    client = ReplicaClient(parse_replica(url), s3_endpoint)
    (generation,) = client.generations()
    (segment,) = generation.segments
    assert segment == SegmentName.parse(segment.name)
    body = gzip.decompress(client.get(generation.segment_key(segment)) or b"")
    assert body == (data_dir / LOG_NAME).read_bytes()
    rep.stop()


def test_a_clean_stop_ships_the_rest_and_frees_the_prefix(tmp_path: Path, s3: Any, s3_endpoint: str, url: str) -> None:
    first = replicator(tmp_path / "one", url, s3_endpoint)
    first.start()
    append(tmp_path / "one", ("a", 1.0), ("b", 2.0))
    first.stop()  # the last calls go up before it returns
    client = ReplicaClient(parse_replica(url), s3_endpoint)
    assert client.lease() is None
    (generation,) = client.generations()
    assert generation.chain()[1] == 2
    second = replicator(tmp_path / "two", url, s3_endpoint)  # another data dir: free to take over at once
    second.sync()
    assert second.status()["state"] == "ok"


def test_a_server_that_never_served_ships_nothing(tmp_path: Path, s3: Any, s3_endpoint: str, url: str) -> None:
    append(tmp_path / "live", ("a", 1.0))
    rep = replicator(tmp_path / "live", url, s3_endpoint)  # prepared, then the restore failed: never started
    rep.stop()
    assert ReplicaClient(parse_replica(url), s3_endpoint).generations() == []


def test_calls_folded_before_they_were_cut_start_a_new_generation_from_the_checkpoint(
    tmp_path: Path, s3: Any, s3_endpoint: str, url: str
) -> None:
    data_dir = tmp_path / "live"
    rep = replicator(data_dir, url, s3_endpoint)
    append(data_dir, ("a", 1.0), ("b", 2.0))
    rep.sync()
    first = rep.generation
    # a checkpoint folds calls 1-4 while 3 and 4 were never cut (its hook failed): the log now starts at 5
    calls = [
        numbered(note(text, at), seq) for seq, (text, at) in enumerate((("a", 1), ("b", 2), ("c", 3), ("d", 4)), 1)
    ]
    checkpoint = data_dir / "checkpoints" / "000001"
    checkpoint.mkdir(parents=True)
    (checkpoint / "calls.json").write_bytes(b"".join(calls))
    write_manifest(data_dir, Manifest("000001", (), 4, 4, 0, 5.0, {}, None, 0, through=4))
    log = data_dir / LOG_NAME
    fresh = log.with_name("rewritten")
    fresh.write_bytes(encode_header("000001", 4) + numbered(note("e", 6.0), 5))
    os.replace(fresh, log)
    rep.sync()
    assert rep.generation != first
    rep.sync()
    restore_replica(url, tmp_path / "latest", endpoint_url=s3_endpoint)
    assert texts(tmp_path / "latest") == ["a", "b", "c", "d", "e"]
    restore_replica(url, tmp_path / "early", at=2.5, endpoint_url=s3_endpoint)
    assert texts(tmp_path / "early") == ["a", "b"]  # the first generation answers for its own time


@pytest.mark.timing
def test_a_cut_ends_while_calls_keep_coming(tmp_path: Path, s3: Any, s3_endpoint: str, url: str) -> None:
    data_dir = tmp_path / "live"
    append(data_dir, *((f"call {n}", float(n)) for n in range(300)))
    rep = replicator(data_dir, url, s3_endpoint)
    stop = threading.Event()

    def write() -> None:
        with CallLog(data_dir / LOG_NAME, FsyncPolicy.NO) as log:
            while not stop.is_set():
                log.append(note("more " + "x" * 1000, 1000.0))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.1)
        began = time.monotonic()
        rep.cut()
        took = time.monotonic() - began
    finally:
        stop.set()
        writer.join()
    assert took < 1.0 and rep.local.cut < len(texts(data_dir)), (took, rep.local.cut)  # it did not chase the writer
    rep.sync()  # the rest, in the next round
    restore_replica(url, tmp_path / "latest", endpoint_url=s3_endpoint)
    assert len(texts(tmp_path / "latest")) == len(texts(data_dir))


def test_retention_deletes_what_the_window_does_not_need_under_a_prefix(
    tmp_path: Path, s3: Any, s3_endpoint: str, url: str
) -> None:
    now = [10.0]
    data_dir = tmp_path / "live"
    rep = Replicator(data_dir, url, ReplicaSource.REPLAY, s3_endpoint, retention=10.0, clock=lambda: now[0])
    rep.prepare()
    append(data_dir, ("a", 1.0), ("b", 2.0))
    rep.sync()
    append(data_dir, ("c", 3.0))
    rep.sync()
    # a checkpoint of calls 1-3 at 5.0; the log goes on with call 4
    calls = [numbered(note(text, at), seq) for seq, (text, at) in enumerate((("a", 1), ("b", 2), ("c", 3)), 1)]
    checkpoint = data_dir / "checkpoints" / "000001"
    checkpoint.mkdir(parents=True)
    (checkpoint / "calls.json").write_bytes(b"".join(calls))
    write_manifest(data_dir, Manifest("000001", (), 3, 3, 0, 5.0, {}, None, 0, through=3))
    fresh = data_dir / "rewritten"
    fresh.write_bytes(encode_header("000001", 3) + numbered(note("d", 6.0), 4))
    os.replace(fresh, data_dir / LOG_NAME)
    rep.sync()
    client = ReplicaClient(parse_replica(url), s3_endpoint)
    (generation,) = client.generations()
    assert [(s.after, s.last) for s in generation.segments] == [(0, 2), (2, 3), (3, 4)] and generation.snapshots
    now[0] = 100.0  # the window starts at 90: the snapshot at 5 is the newest before it
    rep.sync()
    (generation,) = client.generations()
    assert [(s.after, s.last) for s in generation.segments] == [(3, 4)] and len(generation.snapshots) == 1
    restore_replica(url, tmp_path / "latest", endpoint_url=s3_endpoint)
    assert texts(tmp_path / "latest") == ["a", "b", "c", "d"]


def test_a_failed_restore_leaves_no_parents_behind(tmp_path: Path, s3: Any, s3_endpoint: str, url: str) -> None:
    rep = replicator(tmp_path / "live", url, s3_endpoint)
    append(tmp_path / "live", ("a", 1.0))
    rep.sync()
    client = ReplicaClient(parse_replica(url), s3_endpoint)
    (generation,) = client.generations()
    client.put(generation.segment_key(generation.segments[0]), gzip.compress(b"not the lines it names\n"))
    with pytest.raises(ReplicaError, match="fails its SHA-256"):
        restore_replica(url, tmp_path / "missing" / "parents" / "data", endpoint_url=s3_endpoint)
    assert not (tmp_path / "missing").exists()
