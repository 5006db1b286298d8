"""Archives: members checked against the manifest, trust rules, fresh data dirs, nothing written on failure."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from replay.archive import (
    MANIFEST_MEMBER,
    import_archive,
    read_manifest,
    stage_calls,
    stage_snapshot_files,
    write_archive,
)
from replay.config import FsyncPolicy
from replay.entry import Entry, Request, Response, decode_entry, encode_entry
from replay.errors import ArchiveError, SnapshotError, SourceError
from replay.log import CallLog, LogReader, Segment
from replay.snapshot import load_key, read_snapshot, write_snapshot

KEY = b"team-key-0123456789abcdef"
LOG_NAME = "recorded_api_calls.json"


def entry(path: str, body: bytes, method: str = "POST") -> Entry:
    return Entry(1_700_000_000.0, "notes", "AddNote", Request(method, path, "", [], body), Response(200, [], b"ok"))


def replay_dir(directory: Path, entries: list[Entry]) -> Path:
    with CallLog(directory / LOG_NAME, FsyncPolicy.NO) as log:
        for item in entries:
            log.append(encode_entry(item))
    return directory


def snapshot_dir(directory: Path, payloads: dict[str, bytes], assets: dict[str, bytes] | None = None) -> Path:
    state = directory / "state"
    key = load_key(state)
    for service, payload in payloads.items():
        write_snapshot(state / "api_states" / service / "backend.state", service, payload, key, {"moto": "5.2.5"})
    for service, body in (assets or {}).items():
        (state / service).mkdir(parents=True, exist_ok=True)
        (state / service / hashlib.sha256(body).hexdigest()).write_bytes(body)
    return directory


def replay_archive(tmp_path: Path, entries: list[Entry], key: bytes | None = None) -> Path:
    staging = tmp_path / "staging"
    source = replay_dir(tmp_path / "source", entries)
    calls = stage_calls([Segment(source / LOG_NAME)], staging)
    archive = tmp_path / "state.replay"
    write_archive(staging, archive, "replay", calls=calls, key=key)
    return archive


def tree(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*")) if path.exists() else []


def hand_made(path: Path, manifest: dict[str, Any] | bytes | None, members: dict[str, bytes]) -> Path:
    """A tar.gz with ``manifest`` first (if any), then ``members``: for archives replay would never write."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        items = (
            [(MANIFEST_MEMBER, manifest if isinstance(manifest, bytes) else orjson.dumps(manifest))]
            if manifest is not None
            else []
        ) + list(members.items())
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


def listing(members: dict[str, bytes]) -> dict[str, Any]:
    return {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in members.items()}


# --- round trips ---------------------------------------------------------------------------------------------------


def test_replay_archive_round_trip_keeps_every_call_byte_for_byte(tmp_path: Path) -> None:
    entries = [entry("/notes", b"a"), entry("/notes", "ü".encode()), entry("/blob", bytes(range(256)) * 300)]
    archive = replay_archive(tmp_path, entries)

    manifest = read_manifest(archive)
    assert (manifest.kind, manifest.calls, manifest.signed) == ("replay", 3, False)
    assert list(manifest.files) == ["calls.json"]

    report = import_archive(archive, tmp_path / "fresh")
    log = tmp_path / "fresh" / LOG_NAME
    assert report.kind == "replay" and report.calls == 3
    assert log.read_bytes() == (tmp_path / "source" / LOG_NAME).read_bytes()
    assert [e.request.body for _n, e in LogReader(log)] == [e.request.body for e in entries]
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "fresh").stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_archive_compacts_the_history(tmp_path: Path) -> None:
    sqs = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host"

    def call(operation: str, document: dict[str, str]) -> Entry:
        headers = [("Authorization", sqs), ("X-Amz-Target", f"AmazonSQS.{operation}")]
        request = Request("POST", "/", "", headers, orjson.dumps(document))
        return Entry(1.0, "sqs", operation, request, Response(200, [], b"{}"))

    history = [call("CreateQueue", {"QueueName": "gone"}), call("DeleteQueue", {"QueueUrl": "http://h/1/gone"})]
    archive = replay_archive(tmp_path, [*history, call("CreateQueue", {"QueueName": "kept"})])
    assert read_manifest(archive).calls == 1
    import_archive(archive, tmp_path / "fresh")
    kept = [decode_entry(line) for line in (tmp_path / "fresh" / LOG_NAME).read_bytes().splitlines()]
    assert [e.operation for e in kept] == ["CreateQueue"] and b"kept" in kept[0].request.body


def test_snapshot_archive_is_re_signed_for_the_new_data_dir(tmp_path: Path) -> None:
    body = os.urandom(70_000)
    source = snapshot_dir(tmp_path / "source", {"sqs": b"queues", "s3": b"buckets"}, {"s3": body})
    staging = tmp_path / "staging"
    services = stage_snapshot_files(source, staging)
    assert services == {"s3": {"moto": "5.2.5"}, "sqs": {"moto": "5.2.5"}}
    archive = tmp_path / "state.replay"
    write_archive(staging, archive, "snapshot", services=services, key=KEY)

    import_archive(archive, tmp_path / "fresh", key=KEY)
    state = tmp_path / "fresh" / "state"
    new_key = (state / "snapshot.key").read_bytes()
    assert new_key != (source / "state" / "snapshot.key").read_bytes()
    header, payload = read_snapshot(state / "api_states" / "s3" / "backend.state", new_key)
    assert payload == b"buckets" and header["meta"] == {"moto": "5.2.5"}
    assert read_snapshot(state / "api_states" / "sqs" / "backend.state", new_key)[1] == b"queues"
    assert (state / "s3" / hashlib.sha256(body).hexdigest()).read_bytes() == body
    with pytest.raises(SnapshotError, match="foreign"):  # the old data dir's key no longer vouches for them
        read_snapshot(state / "api_states" / "s3" / "backend.state", (source / "state" / "snapshot.key").read_bytes())


def test_a_tampered_snapshot_is_not_exported(tmp_path: Path) -> None:
    source = snapshot_dir(tmp_path / "source", {"sqs": b"queues"})
    path = source / "state" / "api_states" / "sqs" / "backend.state"
    path.write_bytes(path.read_bytes().replace(b"queues", b"QUEUES"))
    with pytest.raises(SnapshotError, match="corrupt"):
        stage_snapshot_files(source, tmp_path / "staging")


# --- trust ---------------------------------------------------------------------------------------------------------


def snapshot_archive(tmp_path: Path, key: bytes | None) -> Path:
    source = snapshot_dir(tmp_path / "source", {"sqs": b"queues"})
    staging = tmp_path / "staging"
    archive = tmp_path / "snap.replay"
    write_archive(staging, archive, "snapshot", services=stage_snapshot_files(source, staging), key=key)
    return archive


def test_pickled_snapshots_need_a_key_or_trust(tmp_path: Path) -> None:
    unsigned = snapshot_archive(tmp_path, key=None)
    fresh = tmp_path / "fresh"
    with pytest.raises(ArchiveError, match=r"\(untrusted\): it holds pickled snapshots.*is not signed"):
        import_archive(unsigned, fresh)
    with pytest.raises(ArchiveError, match="not signed, but an archive key was given"):
        import_archive(unsigned, fresh, key=KEY)
    assert not fresh.exists()
    assert import_archive(unsigned, fresh, trust=True).services == ["sqs"]


def test_a_signature_is_checked_with_the_key_given(tmp_path: Path) -> None:
    signed = snapshot_archive(tmp_path, key=KEY)
    with pytest.raises(ArchiveError, match="signed, but no archive key was given"):
        import_archive(signed, tmp_path / "a")
    with pytest.raises(ArchiveError, match="does not match the archive key given"):
        import_archive(signed, tmp_path / "b", key=b"another-key-0123456789")
    assert import_archive(signed, tmp_path / "c", key=KEY).kind == "snapshot"
    # calls are data, not code: a signed replay archive imports without the key too
    replayed = replay_archive(tmp_path / "r", [entry("/n", b"x")], key=KEY)
    assert import_archive(replayed, tmp_path / "d").calls == 1


def test_a_signature_covers_every_member(tmp_path: Path) -> None:
    archive = snapshot_archive(tmp_path, key=KEY)
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    document = orjson.loads(members.pop(MANIFEST_MEMBER))
    members["snapshots/sqs.state"] = b"evil pickle"
    document["files"] = listing(members)  # consistent checksums, but the signature was over the old ones
    forged = hand_made(tmp_path / "forged.replay", document, members)
    with pytest.raises(ArchiveError, match="does not match the archive key given"):
        import_archive(forged, tmp_path / "fresh", key=KEY)


# --- bad archives change nothing -----------------------------------------------------------------------------------


def test_torn_archives_are_refused_at_every_cut(tmp_path: Path) -> None:
    archive = replay_archive(tmp_path, [entry("/n", os.urandom(5000)) for _ in range(4)])
    data = archive.read_bytes()
    cut = tmp_path / "cut.replay"
    for size in (3, 30, len(data) // 4, len(data) // 2, len(data) - 40, len(data) - 1):
        cut.write_bytes(data[:size])
        with pytest.raises(ArchiveError, match=r"\((torn|corrupt)\)"):
            import_archive(cut, tmp_path / "fresh")
        assert not (tmp_path / "fresh").exists()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"\(torn\): the file ends before the archive does"):
        read_manifest(cut)


def test_corrupt_members_are_refused(tmp_path: Path) -> None:
    calls = encode_entry(entry("/n", b"x"))
    good = {"format": 1, "kind": "replay", "created": 1.0, "files": listing({"calls.json": calls})}
    cases: list[tuple[dict[str, Any] | bytes | None, dict[str, bytes], str]] = [
        (good, {"calls.json": calls.replace(b"/n", b"/m")}, r"\(corrupt\): calls.json does not match its SHA-256"),
        (good, {"calls.json": calls + b"\n"}, r"\(corrupt\): calls.json is \d+ bytes, its manifest says"),
        (good, {"calls.json": calls, "assets/s3/" + "0" * 64: b"x"}, "is not listed in its manifest"),
        (good, {}, r"\(torn\): 1 members its manifest lists are missing \(calls.json\)"),
        ({**good, "format": 9}, {"calls.json": calls}, r"\(newer\): archive format 9 is newer"),
        ({**good, "kind": "pods"}, {"calls.json": calls}, r"\(malformed\).*unknown kind"),
        ({**good, "files": {"../etc/passwd": {"size": 1, "sha256": "0" * 64}}}, {}, "unexpected member name"),
        (b"not json", {}, r"\(malformed\): its manifest is not JSON"),
        (None, {"calls.json": calls}, r"\(foreign\): a tar file, but its first member is not replay-archive.json"),
    ]
    for number, (manifest, members, message) in enumerate(cases):
        archive = hand_made(tmp_path / f"bad-{number}.replay", manifest, members)
        with pytest.raises(ArchiveError, match=message):
            import_archive(archive, tmp_path / "fresh")
        assert not (tmp_path / "fresh").exists(), message


def test_foreign_files_and_missing_archives(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ArchiveError, match=r"\(foreign\): not a replay archive \(not gzip-compressed\)"):
        import_archive(text, tmp_path / "fresh")
    other = tmp_path / "other.gz"
    other.write_bytes(gzip.compress(b"just some text, not a tar file at all" * 20))
    with pytest.raises(ArchiveError, match=r"\((corrupt|foreign)\)"):
        import_archive(other, tmp_path / "fresh")
    with pytest.raises(SourceError, match=r"no archive at .*missing\.replay"):
        import_archive(tmp_path / "missing.replay", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_only_a_fresh_data_dir_is_filled(tmp_path: Path) -> None:
    archive = replay_archive(tmp_path, [entry("/n", b"x")])
    used = replay_dir(tmp_path / "used", [entry("/old", b"kept")])
    before = tree(used)
    with pytest.raises(SourceError, match="is not empty: import into a fresh data dir"):
        import_archive(archive, used)
    assert tree(used) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    import_archive(archive, empty)
    assert (empty / LOG_NAME).exists()
    deep = tmp_path / "a" / "b" / "volume"
    import_archive(archive, deep)
    assert (deep / LOG_NAME).exists()


def test_a_failed_import_leaves_no_directories_it_made(tmp_path: Path) -> None:
    bad = tmp_path / "bad.replay"
    bad.write_bytes(replay_archive(tmp_path, [entry("/n", b"x")]).read_bytes()[:-20])
    with pytest.raises(ArchiveError):
        import_archive(bad, tmp_path / "new" / "deeper" / "volume")
    assert not (tmp_path / "new").exists()


def test_archives_are_deterministic_in_content_but_not_in_time(tmp_path: Path) -> None:
    archive = replay_archive(tmp_path, [entry("/n", b"x")])
    with tarfile.open(archive) as tar:
        names = [(m.name, m.mode, m.uname) for m in tar.getmembers()]
    assert names == [(MANIFEST_MEMBER, 0o600, ""), ("calls.json", 0o600, "")]
