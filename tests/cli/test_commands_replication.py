"""``replay import s3://PREFIX [--at]`` and ``replay inspect s3://PREFIX`` in-process, against a real moto_server."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from replay.cli.commands import main
from replay.config import FsyncPolicy
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog
from replay.share.replicator import ReplicaSource, Replicator

LOG_NAME = "recorded_api_calls.json"


def note(text: str, at: float) -> bytes:
    request = Request("POST", "/notes", "", [("Content-Type", "text/plain")], text.encode())
    return encode_entry(Entry(at, "notes", "AddNote", request, Response(201, [], b"added")))


@pytest.fixture
def replica(tmp_path: Path, s3_endpoint: str, replica_store: Any) -> tuple[str, str]:
    """``(endpoint, url)`` of a replica (a prefix of the test's own) of three calls at 1000, 2000 and 3000."""
    data_dir = tmp_path / "live"
    url = f"s3://replicas/cli-{tmp_path.name}"
    replicator = Replicator(data_dir, url, ReplicaSource.REPLAY, s3_endpoint)
    replicator.prepare()
    with CallLog(data_dir / LOG_NAME, FsyncPolicy.NO) as log:
        for at in (1000.0, 2000.0, 3000.0):
            log.append(note(f"at {at:.0f}", at))
    replicator.sync()
    replicator.stop()
    return s3_endpoint, url


def bodies(data_dir: Path) -> list[str]:
    return [orjson.loads(line)["request"]["body"] for line in (data_dir / LOG_NAME).read_bytes().splitlines()]


def test_import_restores_the_newest_state_or_the_state_at_a_time(
    tmp_path: Path, replica: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, url = replica
    assert main(["import", url, "--endpoint-url", endpoint, "--data-dir", str(tmp_path / "newest")]) == 0
    assert bodies(tmp_path / "newest") == ["at 1000", "at 2000", "at 3000"]
    out = capsys.readouterr().out
    assert out.startswith(f"restored {url} into ") and "3 calls through #3" in out
    iso = datetime.datetime.fromtimestamp(2500, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    for at, name in ((iso, "iso"), ("2500", "unix")):
        target = tmp_path / name
        assert main(["import", url, "--endpoint-url", endpoint, "--data-dir", str(target), "--at", at, "--json"]) == 0
        report = orjson.loads(capsys.readouterr().out)
        assert report["at"] == 2500.0 and report["restored_to"] == 2000.0 and report["last_seq"] == 2
        assert bodies(target) == ["at 1000", "at 2000"]


def test_inspect_shows_the_restore_window(replica: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, url = replica
    assert main(["inspect", url, "--endpoint-url", endpoint, "--json"]) == 0
    described = orjson.loads(capsys.readouterr().out)
    assert described["restore_window"] == [1000.0, 3000.0] and len(described["generations"]) == 1
    assert described["generations"][0]["last_seq"] == 3 and described["last_upload_age"] >= 0
    assert main(["inspect", url, "--endpoint-url", endpoint]) == 0
    text = capsys.readouterr().out
    assert "1 generation(s)" in text and "restore window: 1970-01-01 00:16:40 UTC .. 1970-01-01 00:50:00 UTC" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "URL", "--at", "2026-12-03T10:00:00"], "a time without a zone is ambiguous"),
        (["import", "URL", "--at", "yesterday"], "ISO 8601"),
        (["import", "URL", "--at", "nan"], "ISO 8601"),
        (["inspect", "URL", "--calls"], "replay import --at"),
    ],
)
def test_bad_times_and_options_are_one_line_errors(
    tmp_path: Path, replica: tuple[str, str], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    endpoint, url = replica
    args = [url if arg == "URL" else arg for arg in args]
    extra = ["--data-dir", str(tmp_path / "x")] if args[0] == "import" else []
    status = main([*args, "--endpoint-url", endpoint, *extra])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_an_archive_has_no_time_to_choose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "state.replay"
    archive.write_bytes(b"not read")
    assert main(["import", str(archive), "--at", "1000", "--data-dir", str(tmp_path / "x")]) == 2
    assert "an archive, not a replica" in capsys.readouterr().err
