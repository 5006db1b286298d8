"""What a path holds: decided from its first line or its directory names, never by writing."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from replay.config import FsyncPolicy
from replay.errors import SourceError
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog, encode_header
from replay.restore.transport import WSGITransport
from replay.share.sources import SourceKind, identify
from replay.storage.snapshot import load_key, write_snapshot

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LOG_NAME = "recorded_api_calls.json"


def note(text: str) -> Entry:
    return Entry(1.0, "notes", "Add", Request("POST", "/notes", "", [], text.encode()), Response(200, [], b""))


def write_log(path: Path, *texts: str) -> Path:
    with CallLog(path, FsyncPolicy.NO) as log:
        for text in texts:
            log.append(encode_entry(note(text)))
    return path


def snapshot_dir(directory: Path) -> Path:
    state = directory / "state"
    write_snapshot(state / "api_states" / "sqs" / "backend.state", "sqs", b"x", load_key(state))
    return directory


def test_files_are_told_apart_by_their_first_line(tmp_path: Path) -> None:
    ours = write_log(tmp_path / "ours.json", "a")
    headed = tmp_path / "headed.json"
    headed.write_bytes(encode_header("000001") + encode_entry(note("a")))
    legacy = tmp_path / "legacy.json"
    legacy.write_bytes(b'\n{"a": "sqs", "m": "POST", "p": "/", "d": "", "h": {}, "rd": ""}\n')
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    archive = tmp_path / "state.replay"
    archive.write_bytes(b"\x1f\x8b\x08rest")
    long_line = tmp_path / "long.json"
    long_line.write_bytes(
        encode_entry(
            Entry(1.0, "s3", "PutObject", Request("PUT", "/b/k", "", [], b"x" * 300_000), Response(200, [], b""))
        )
    )
    kinds = {p.name: identify(p).kind for p in (ours, headed, legacy, empty, archive, long_line)}
    assert kinds == {
        "ours.json": SourceKind.LOG,
        "headed.json": SourceKind.LOG,
        "legacy.json": SourceKind.LOCALSTACK,
        "empty.json": SourceKind.LOG,
        "state.replay": SourceKind.ARCHIVE,
        "long.json": SourceKind.LOG,
    }


@pytest.mark.parametrize(
    "content",
    [b"hello\n", b"[1, 2, 3]\n", b'{"just": "json"}\n', b"\x00\x01\x02" * 100_000, b"PK\x03\x04zip"],
)
def test_foreign_files_are_named_in_one_line(tmp_path: Path, content: bytes) -> None:
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(content)
    with pytest.raises(
        SourceError, match=r"foreign.bin is not a replay call log, a LocalStack log or a replay archive"
    ):
        identify(foreign)


def test_data_dirs_are_told_apart_by_what_they_hold(tmp_path: Path) -> None:
    replay = tmp_path / "replay"
    write_log(replay / LOG_NAME, "a")
    snapshot = snapshot_dir(tmp_path / "snapshot")
    both = snapshot_dir(tmp_path / "both")
    write_log(both / LOG_NAME, "a")
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert identify(replay).kind is SourceKind.REPLAY
    assert identify(snapshot).kind is SourceKind.SNAPSHOT
    with pytest.raises(SourceError, match=r"holds state of both backends .* say which with --backend"):
        identify(both)
    assert identify(both, SourceKind.SNAPSHOT).kind is SourceKind.SNAPSHOT
    with pytest.raises(SourceError, match="holds snapshot-backend state, not replay-backend state"):
        identify(snapshot, SourceKind.REPLAY)
    with pytest.raises(SourceError, match="it holds no replay state"):
        identify(nothing)
    with pytest.raises(SourceError, match=r"no call log at .*missing: no such file or directory"):
        identify(tmp_path / "missing")
    assert sorted(p.name for p in nothing.iterdir()) == []


def test_segments_of_each_kind(tmp_path: Path) -> None:
    replay = tmp_path / "replay"
    write_log(replay / LOG_NAME, "a", "b")
    assert [s.path for s in identify(replay).segments()] == [replay / LOG_NAME]
    with pytest.raises(SourceError, match="holds serialised state, not calls; serve it with --backend snapshot"):
        identify(snapshot_dir(tmp_path / "snap")).segments()
    legacy = tmp_path / "legacy.json"
    record = {"a": "notes", "m": "POST", "p": "/notes", "d": base64.b64encode(b"old").decode(), "h": {}, "rd": ""}
    legacy.write_bytes(orjson.dumps(record) + b"\n")
    (segment,) = identify(legacy).segments()
    assert segment.legacy and [e.request.body for _n, e in segment.reader()] == [b"old"]


class Notes:
    def __init__(self) -> None:
        self.notes: list[bytes] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.notes.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", [])
        return [b""]


def test_load_into_replays_calls_in_order_without_writing(tmp_path: Path) -> None:
    replay = tmp_path / "replay"
    write_log(replay / LOG_NAME, "a", "b", "c")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in replay.iterdir())
    notes = Notes()
    loaded = identify(replay).load_into(notes)
    assert notes.notes == [b"a", b"b", b"c"] and (loaded.calls, loaded.failed) == (3, 0)
    assert "replay (replay): 3 calls in " in loaded.describe()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in replay.iterdir()) == before
    assert WSGITransport(notes).send(Request("POST", "/", "", [], b"d")).ok
    with pytest.raises(SourceError, match="this emulator has no state adapter"):
        identify(snapshot_dir(tmp_path / "snap")).load_into(notes)
