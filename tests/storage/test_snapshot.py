"""Snapshot files: written atomically, read back only when checksum, version and this data dir's HMAC agree."""

from __future__ import annotations

import logging
import pickle
import stat
from pathlib import Path

import orjson
import pytest

from replay.errors import SnapshotError
from replay.storage.snapshot import MAGIC, load_key, read_snapshot, write_snapshot


def test_round_trip_and_private_files(tmp_path: Path) -> None:
    key = load_key(tmp_path / "state")
    assert load_key(tmp_path / "state") == key and len(key) == 32
    path = tmp_path / "state" / "api_states" / "sqs" / "backend.state"
    write_snapshot(path, "sqs", b"\x00payload", key, {"moto": "5"})
    header, payload = read_snapshot(path, key)
    assert payload == b"\x00payload"
    assert (header["service"], header["format"], header["meta"]) == ("sqs", 1, {"moto": "5"})
    for private in (path, tmp_path / "state" / "snapshot.key"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state" / "api_states").stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["backend.state"]  # no temporary left behind


def refused(path: Path, key: bytes) -> SnapshotError:
    with pytest.raises(SnapshotError) as caught:
        read_snapshot(path, key)
    assert str(path) in str(caught.value)
    return caught.value


def test_tampered_foreign_torn_newer_and_malformed_files_are_refused(tmp_path: Path) -> None:
    key = load_key(tmp_path / "a")
    path = tmp_path / "backend.state"
    write_snapshot(path, "s3", b"original payload", key)
    good = path.read_bytes()

    path.write_bytes(good[:-3] + b"XYZ")
    assert refused(path, key).reason == "corrupt"

    header_line, payload = good[len(MAGIC) :].split(b"\n", 1)
    header = orjson.loads(header_line)
    forged = b"forged payload!!"
    header.update(length=len(forged), sha256=__import__("hashlib").sha256(forged).hexdigest())
    path.write_bytes(MAGIC + orjson.dumps(header) + b"\n" + forged)  # consistent checksum, no valid HMAC
    assert refused(path, key).reason == "foreign"

    path.write_bytes(good)
    assert refused(path, load_key(tmp_path / "b")).reason == "foreign"  # another data dir's key

    path.write_bytes(good[:-5])
    assert refused(path, key).reason == "torn"

    newer = orjson.loads(header_line)
    newer["format"] = 99
    path.write_bytes(MAGIC + orjson.dumps(newer) + b"\n" + payload)
    assert refused(path, key).reason == "newer"

    path.write_bytes(b"\x80\x04not a snapshot")
    assert refused(path, key).reason == "malformed"


class _Marker:
    """Unpickling this would create a file: the proof that a refused file runs nothing."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.target, "w"))


def test_a_refused_file_executes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    evil = pickle.dumps(_Marker(str(marker)))
    path = tmp_path / "backend.state"
    write_snapshot(path, "sqs", evil, load_key(tmp_path / "someone-else"))
    refused(path, load_key(tmp_path / "ours"))
    assert not marker.exists()


def test_the_key_is_made_once_whole_and_private(tmp_path: Path) -> None:
    state = tmp_path / "data" / "state"
    key = load_key(state)
    assert len(key) == 32 and load_key(state) == key
    assert stat.S_IMODE((state / "snapshot.key").stat().st_mode) == 0o600
    assert [p.name for p in state.iterdir()] == ["snapshot.key"]  # no temporary file left


@pytest.mark.parametrize("torn", [b"", b"\x01" * 7])
def test_a_torn_key_is_made_again_while_nothing_depends_on_it(
    tmp_path: Path, torn: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "data" / "state"
    state.mkdir(parents=True)
    (state / "snapshot.key").write_bytes(torn)  # a crash while an older version first wrote it
    with caplog.at_level(logging.WARNING, logger="replay.snapshot"):
        key = load_key(state)
    assert len(key) == 32 and (state / "snapshot.key").read_bytes() == key
    assert "making a new key" in caplog.text


def test_a_malformed_key_that_signed_something_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = load_key(data / "state")
    snapshot = data / "state" / "api_states" / "sqs" / "backend.state"
    write_snapshot(snapshot, "sqs", pickle.dumps({"q": 1}), key)
    (data / "state" / "snapshot.key").write_bytes(b"short")
    with pytest.raises(SnapshotError, match="must be 32 bytes"):
        load_key(data / "state")
    assert (data / "state" / "snapshot.key").read_bytes() == b"short"  # the evidence is kept
