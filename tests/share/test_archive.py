"""Archives: members checked against the manifest, trust rules, fresh data dirs, nothing written on failure."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import struct
import subprocess
import tarfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from replay.config import FsyncPolicy
from replay.errors import ArchiveError, SnapshotError, SourceError
from replay.record.entry import Entry, Request, Response, decode_entry, encode_entry
from replay.record.log import CallLog
from replay.record.reader import LogReader, Segment
from replay.share.archive import (
    MANIFEST_MEMBER,
    import_archive,
    read_manifest,
    stage_calls,
    stage_snapshot_files,
    write_archive,
)
from replay.share.tar import Inflater
from replay.storage.snapshot import load_key, read_snapshot, write_snapshot

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


# --- hostile archives: refused before they fill the disk, quickly, in bounded memory -------------------------------
#
# The bombs are built here by compressing one mebibyte once and repeating its compressed form: each would
# decompress to gigabytes from a file of a few megabytes.  ``refused`` checks what the refusal cost.

GIB = 1 << 30
ZEROS = bytes(1 << 20)
LETTERS = b"A" * (1 << 20)
CALLS = encode_entry(entry("/n", b"x"))
HEX = "0" * 64


def member(
    name: str,
    data: bytes = b"",
    *,
    size: int | None = None,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
    pax: dict[str, str] | None = None,
) -> bytes:
    """One tar member as tarfile writes it (its headers, ``data``, padding); ``size`` may lie about the data."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    info.type = kind
    info.linkname = link
    info.pax_headers = pax or {}
    return info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % 512)


def header_only(kind: bytes, size: int) -> bytes:
    """A bare header block of type ``kind`` (a pax header, a GNU long name ...) announcing ``size`` bytes."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = kind
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT)  # base-256 sizes: any size at all


def manifest_member(files: dict[str, Any]) -> bytes:
    return member(MANIFEST_MEMBER, orjson.dumps({"format": 1, "kind": "replay", "created": 1.0, "files": files}))


HONEST = manifest_member(listing({"calls.json": CALLS})) + member("calls.json", CALLS)
END = bytes(1024)


def gzipped(*parts: bytes | tuple[bytes, int], end: bool = True) -> bytes:
    """A gzip stream of ``parts`` (``(data, n)``: ``n`` copies of ``data``, compressed once).

    Each part is compressed from a fresh state and ends in a full flush, on a byte boundary, so copies of its
    compressed form concatenate into a valid stream.  Without ``end`` the stream stops there, with no final
    block, CRC-32 or length: a bomb must be refused before its end (else the import fails as *torn*, not as
    the test expects).
    """
    chunks = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
    crc = length = 0
    for part in parts:
        data, copies = part if isinstance(part, tuple) else (part, 1)
        squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        chunks.append((squeeze.compress(data) + squeeze.flush(zlib.Z_FULL_FLUSH)) * copies)
        if end:
            for _ in range(copies):
                crc = zlib.crc32(data, crc)
            length += len(data) * copies
    if end:
        final = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()
        chunks.append(final + struct.pack("<II", crc, length & 0xFFFFFFFF))
    return b"".join(chunks)


def bomb(tmp_path: Path, *parts: bytes | tuple[bytes, int], end: bool = False) -> Path:
    path = tmp_path / "hostile.replay"
    path.write_bytes(gzipped(*parts, end=end))
    return path


def bytes_read() -> int | None:
    """What this process has read from files so far (Linux), or ``None``."""
    try:
        return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def refused(archive: Path, match: str, monkeypatch: pytest.MonkeyPatch) -> ArchiveError:
    """Import ``archive``: refused as ``match`` says, in one line, within a second, having decompressed at most
    256 KiB, read at most 512 KiB of the file and allocated at most 8 MiB, leaving nothing behind."""
    inflated: list[int] = []
    read = Inflater.read

    def counted(self: Any, size: int) -> bytes:
        data = read(self, size)
        inflated.append(len(data))
        return data

    monkeypatch.setattr(Inflater, "read", counted)
    data_dir = archive.parent / "volume"
    before = bytes_read()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ArchiveError, match=match) as caught:
            import_archive(archive, data_dir)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    after = bytes_read()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{archive}: not imported (")
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s"
    assert sum(inflated) <= 256 << 10, f"refused after decompressing {sum(inflated):,} bytes"
    assert peak <= 8 << 20, f"{peak:,} bytes allocated"
    if before is not None and after is not None:
        assert after - before <= 512 << 10, f"{after - before:,} bytes read of a {archive.stat().st_size:,}-byte file"
    assert not data_dir.exists()
    assert [p.name for p in archive.parent.iterdir() if p.name.startswith(".")] == []  # no staging left
    return caught.value


def test_the_hand_built_archives_of_these_tests_import(tmp_path: Path) -> None:
    archive = tmp_path / "honest.replay"
    archive.write_bytes(gzipped(HONEST, END))
    assert import_archive(archive, tmp_path / "volume").calls == 0  # a hand-made manifest counts no calls
    assert (tmp_path / "volume" / LOG_NAME).read_bytes() == CALLS


def test_long_member_names_in_pax_headers_round_trip(tmp_path: Path) -> None:
    service = "a-service-with-a-name-long-enough-to-need-a-pax-header-" + "x" * 20
    body = b"object body"
    source = snapshot_dir(tmp_path / "source", {service: b"state"}, {service: body})
    staging = tmp_path / "staging"
    archive = tmp_path / "state.replay"
    write_archive(staging, archive, "snapshot", services=stage_snapshot_files(source, staging))
    with tarfile.open(archive) as tar:
        assert any(len(m.name) > 100 for m in tar.getmembers())  # tarfile wrote a pax header for it
    assert import_archive(archive, tmp_path / "fresh", trust=True).services == [service]
    assert (tmp_path / "fresh" / "state" / service / hashlib.sha256(body).hexdigest()).read_bytes() == body


@pytest.mark.parametrize(
    ("filler", "message"),
    [
        (LETTERS, rf"\(corrupt\): its tar framing is broken at byte {len(HONEST):,} \(no tar header where one should"),
        (ZEROS, r"\(oversized\): it goes on after the end of its tar with more than 65,536 bytes of padding"),
    ],
    ids=["data", "zeros"],
)
def test_a_member_that_goes_on_past_its_declared_size_is_cut_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filler: bytes, message: str
) -> None:
    # calls.json's header and manifest agree on its size, but 4 GiB more follow where the next header should be
    refused(bomb(tmp_path, HONEST, (filler, 4096)), message, monkeypatch)


def test_a_size_the_manifest_does_not_declare_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lying = manifest_member(listing({"calls.json": CALLS})) + member("calls.json", size=4 * GIB)
    refused(
        bomb(tmp_path, lying, (ZEROS, 4096)),
        r"\(corrupt\): calls.json is 4294967296 bytes, its manifest says \d+$",
        monkeypatch,
    )


def test_a_manifest_declaring_more_than_the_disk_holds_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = 1 << 50
    declared = manifest_member({"calls.json": {"size": huge, "sha256": HEX}}) + member("calls.json", size=huge)
    error = refused(
        bomb(tmp_path, declared, (ZEROS, 4096)),
        r"\(no space\): it unpacks to 1,125,899,906,842,624 bytes \([\d,]+ on disk\), but the filesystem "
        r"holding .*volume has [\d,]+ bytes free, of which [\d,]+ stay free: free some space",
        monkeypatch,
    )
    assert error.reason == "no space"


def test_members_the_manifest_does_not_list_are_refused_at_their_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = member(f"assets/s3/{HEX}", size=4 * GIB)
    refused(
        bomb(tmp_path, HONEST, extra, (ZEROS, 4096)),
        rf"\(corrupt\): member 'assets/s3/{HEX}' is not listed in its manifest",
        monkeypatch,
    )
    again = member("calls.json", size=4 * GIB)
    refused(
        bomb(tmp_path, HONEST, again, (ZEROS, 4096)), r"\(corrupt\): member 'calls.json' appears twice", monkeypatch
    )


@pytest.mark.parametrize(
    ("before", "message"),
    [
        (
            HONEST + header_only(tarfile.XHDTYPE, 4 * GIB),
            rf"\(oversized\): the pax header at byte {len(HONEST):,} is 4,294,967,296",
        ),
        (header_only(tarfile.XHDTYPE, 4 * GIB), r"\(oversized\): the pax header at byte 0 is 4,294,967,296 bytes"),
        (HONEST + header_only(tarfile.GNUTYPE_LONGNAME, 4 * GIB), r"member '././@LongLink' is a GNU long name, not a"),
        (
            member(MANIFEST_MEMBER, size=4 * GIB),
            r"\(oversized\): its manifest is 4,294,967,296 bytes, replay reads at most",
        ),
    ],
    ids=["pax-header", "pax-header-first", "gnu-long-name", "manifest"],
)
def test_huge_headers_are_refused_before_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: bytes, message: str
) -> None:
    refused(bomb(tmp_path, before, (ZEROS, 4096)), message, monkeypatch)


def test_an_endless_stream_of_zero_blocks_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused(
        bomb(tmp_path, HONEST, END, (ZEROS, 4096)),
        r"\(oversized\): it goes on after the end of its tar with more than 65,536 bytes of padding",
        monkeypatch,
    )


@pytest.mark.parametrize(
    ("after", "message"),
    [
        (gzipped(HONEST, END, (LETTERS, 4096), end=False), r"\(corrupt\): it holds data after the end of its tar"),
        (
            gzipped(HONEST, END) + gzipped((ZEROS, 4096), end=False),
            r"\(corrupt\): it goes on after the end of its gzip",
        ),
        (gzipped(HONEST, END) + bytes(1 << 20), r"\(corrupt\): it goes on after the end of its gzip stream"),
    ],
    ids=["in-the-stream", "another-gzip-member", "after-the-stream"],
)
def test_a_gzip_stream_that_goes_on_after_the_tar_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: bytes, message: str
) -> None:
    archive = tmp_path / "hostile.replay"
    archive.write_bytes(after)
    refused(archive, message, monkeypatch)


@pytest.mark.parametrize(
    ("hostile", "message"),
    [
        (member("calls.json", kind=tarfile.SYMTYPE, link="/etc/passwd"), r"is a symbolic link \(to '/etc/passwd'\)"),
        (member("calls.json", kind=tarfile.LNKTYPE, link="/etc/shadow"), r"is a hard link \(to '/etc/shadow'\)"),
        (member("calls.json", kind=tarfile.CHRTYPE), r"'calls.json' is a character device, not a regular file"),
        (member("calls.json", kind=tarfile.BLKTYPE), r"'calls.json' is a block device, not a regular file"),
        (member("calls.json", kind=tarfile.FIFOTYPE), r"'calls.json' is a FIFO, not a regular file"),
        (member("assets/s3", kind=tarfile.DIRTYPE), r"'assets/s3/' is a directory, not a regular file"),
        (member("calls.json", kind=tarfile.CONTTYPE), r"'calls.json' is a contiguous file, not a regular file"),
        (member("calls.json", CALLS, pax={"GNU.sparse.major": "1"}), r"is a GNU sparse file, not a regular file"),
        (member("/etc/cron.d/replay", b"* * * * * root sh"), r"'/etc/cron.d/replay' has an unsafe path"),
        (member("../../.bashrc", b"evil"), r"'../../.bashrc' has an unsafe path"),
        (member("assets/../calls.json", CALLS), r"'assets/../calls.json' has an unsafe path"),
        (member("calls.json", CALLS, pax={"path": "/etc/passwd"}), r"'/etc/passwd' has an unsafe path"),
    ],
    ids=[
        "symlink",
        "hard-link",
        "char-device",
        "block-device",
        "fifo",
        "directory",
        "contiguous",
        "sparse",
        "absolute",
        "dot-dot",
        "dot-dot-inside",
        "pax-path",
    ],
)
def test_links_devices_and_unsafe_paths_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostile: bytes, message: str
) -> None:
    manifest = manifest_member(listing({"calls.json": CALLS}))
    refused(bomb(tmp_path, manifest, hostile, END, end=True), rf"\(corrupt\): member .*{message}", monkeypatch)


def test_a_manifest_cannot_list_an_unsafe_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (f"assets/../{HEX}", f"assets/./{HEX}", "snapshots/..state", "/calls.json"):
        manifest = manifest_member({name: {"size": 0, "sha256": HEX}})
        refused(
            bomb(tmp_path, manifest, END, end=True), rf"\(malformed\).*unexpected member name '{name}'", monkeypatch
        )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, mounted for the test and unmounted after it (needs root and a kernel that lets us)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a 2 MB tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_an_honest_archive_too_large_for_the_disk_is_refused_and_leaves_nothing(
    tmp_path: Path, small_disk: Path
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "calls.json").write_bytes(CALLS * (3_000_000 // len(CALLS)))  # 3 MB of calls
    large = tmp_path / "large.replay"
    write_archive(staging, large, "replay", calls=3_000_000 // len(CALLS))
    assert large.stat().st_size < 100_000  # it is the unpacked size that does not fit
    free = shutil.disk_usage(small_disk).free

    with pytest.raises(
        ArchiveError, match=rf"^{large}: not imported \(no space\): it unpacks to 2,99\d,\d+ bytes"
    ) as e:
        import_archive(large, small_disk / "volume")
    assert f"the filesystem holding {small_disk / 'volume'} has {free:,} bytes free" in str(e.value)
    assert list(small_disk.iterdir()) == [] and shutil.disk_usage(small_disk).free == free
    # an empty data dir on the small disk (a mount point, say) is left empty
    with pytest.raises(ArchiveError, match=r"\(no space\)"):
        import_archive(large, small_disk)
    assert list(small_disk.iterdir()) == []

    small = replay_archive(tmp_path / "small", [entry("/n", b"x" * 1000)])  # what fits, with room to spare, imports
    assert import_archive(small, small_disk / "volume").calls == 1
