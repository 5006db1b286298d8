"""Export and import between data dirs, a running server, and S3 (moto's, on a real socket, as the endpoint)."""

from __future__ import annotations

import base64
import gzip
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import orjson
import pytest
import requests
from werkzeug.serving import make_server

from replay.config import Config, FsyncPolicy
from replay.errors import ArchiveError, ConfigError, ReplayError, SourceError, TransportError
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog
from replay.record.reader import LogReader
from replay.serve.emulators import Emulator, moto_emulator
from replay.serve.server import Server
from replay.share.archive import read_manifest
from replay.share.transfer import export_state, import_state
from replay.storage.datadir import DataDirLock

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LOG_NAME = "recorded_api_calls.json"
KEY = b"team-key-0123456789abcdef"


def note(text: str) -> Entry:
    request = Request("POST", "/notes", "", [("Content-Type", "text/plain")], text.encode())
    return Entry(1_700_000_000.0, "notes", "AddNote", request, Response(201, [], b"added"))


def data_dir_with(directory: Path, *texts: str) -> Path:
    with CallLog(directory / LOG_NAME, FsyncPolicy.NO) as log:
        for text in texts:
            log.append(encode_entry(note(text)))
    return directory


def bodies(log: Path) -> list[bytes]:
    return [entry.request.body for _n, entry in LogReader(log)]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's server on a free port, acting as the S3-compatible endpoint archives are shared through."""
    emulator = moto_emulator()
    assert emulator.reset is not None
    emulator.reset()
    server = make_server("127.0.0.1", 0, emulator.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    yield url
    server.shutdown()
    thread.join(10)
    emulator.reset()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEAM")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if "team-state" not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="team-state")
    return client


def test_share_through_s3_and_import_on_another_machine(tmp_path: Path, s3: Any, s3_endpoint: str) -> None:
    source = data_dir_with(tmp_path / "mine", "first", "second ü")
    report = export_state("s3://team-state/main.replay", source, key=KEY, endpoint_url=s3_endpoint)
    assert report.manifest.kind == "replay" and report.manifest.calls == 2 and report.manifest.signed
    stored = s3.head_object(Bucket="team-state", Key="main.replay")
    assert stored["ContentLength"] == report.bytes

    theirs = tmp_path / "elsewhere" / "volume"
    imported = import_state("s3://team-state/main.replay", theirs, key=KEY, endpoint_url=s3_endpoint)
    assert imported.archive == "s3://team-state/main.replay" and imported.calls == 2
    assert bodies(theirs / LOG_NAME) == [b"first", "second ü".encode()]


def test_the_endpoint_can_come_from_boto3s_environment(
    tmp_path: Path, s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    export_state("s3://team-state/env.replay", data_dir_with(tmp_path / "mine", "x"))
    assert import_state("s3://team-state/env.replay", tmp_path / "theirs").calls == 1


def test_s3_failures_are_one_line_errors_and_change_nothing(tmp_path: Path, s3: Any, s3_endpoint: str) -> None:
    fresh = tmp_path / "fresh"
    with pytest.raises(SourceError, match=r"no archive at s3://team-state/missing.replay \(endpoint http"):
        import_state("s3://team-state/missing.replay", fresh, endpoint_url=s3_endpoint)
    assert not fresh.exists()
    source = data_dir_with(tmp_path / "mine", "x")
    with pytest.raises(SourceError, match="no bucket 'nobody' at http"):
        export_state("s3://nobody/state.replay", source, endpoint_url=s3_endpoint)
    with pytest.raises(TransportError, match=r"cannot reach s3://team-state/x\.replay"):
        export_state("s3://team-state/x.replay", source, endpoint_url="http://127.0.0.1:9")
    for bad in ("s3://team-state", "s3://team-state/", "s3:///key"):
        with pytest.raises(ConfigError, match="a path, or s3://bucket/key naming one object"):
            export_state(bad, source, endpoint_url=s3_endpoint)
    used = data_dir_with(tmp_path / "used", "old")
    with pytest.raises(SourceError, match="is not empty"):  # said before anything is downloaded
        import_state("s3://team-state/missing.replay", used, endpoint_url=s3_endpoint)
    assert bodies(used / LOG_NAME) == [b"old"]


def test_a_hostile_archive_from_s3_is_refused_under_its_own_name(tmp_path: Path, s3: Any, s3_endpoint: str) -> None:
    source = data_dir_with(tmp_path / "mine", "x")
    export_state(str(tmp_path / "good.replay"), source)
    honest = gzip.decompress((tmp_path / "good.replay").read_bytes())
    padded = zlib.compressobj(9, zlib.DEFLATED, 31)  # the honest tar, then 64 MiB more of zero blocks
    body = padded.compress(honest) + b"".join(padded.compress(bytes(1 << 20)) for _ in range(64)) + padded.flush()
    s3.put_object(Bucket="team-state", Key="bomb.replay", Body=body)
    fresh = tmp_path / "fresh"
    with pytest.raises(ArchiveError, match=r"^s3://team-state/bomb\.replay: not imported \(oversized\): it goes on"):
        import_state("s3://team-state/bomb.replay", fresh, endpoint_url=s3_endpoint)
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


class Notes:
    """A tiny WSGI emulator: POST adds a note."""

    def __init__(self) -> None:
        self.notes: list[bytes] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            self.notes.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            start_response("201 Created", [("Content-Type", "text/plain")])
            return [b"added"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"\n".join(self.notes)]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Server]:
    server = Server(Config(port=0, data_dir=tmp_path / "served", checkpoint_percentage=0), Emulator(Notes()))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    for _ in range(200):
        try:
            if requests.get(server.url + "/_localstack/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        threading.Event().wait(0.02)
    yield server
    server.stop()
    thread.join(30)


def test_a_running_server_exports_its_live_state(tmp_path: Path, running: Server) -> None:
    for text in ("one", "two", "three"):
        assert requests.post(running.url + "/notes", data=text, timeout=5).status_code == 201
    archive = tmp_path / "live.replay"
    report = export_state(str(archive), running.config.data_dir)  # the data dir names its server
    assert report.source == running.url and report.manifest.calls == 3 and not report.manifest.signed
    signed = export_state(str(tmp_path / "signed.replay"), None, server=running.url, key=KEY)
    assert signed.manifest.signed and signed.manifest.calls == 3
    import_state(str(tmp_path / "signed.replay"), tmp_path / "copy", key=KEY)
    assert bodies(tmp_path / "copy" / LOG_NAME) == [b"one", b"two", b"three"]


def test_the_export_endpoint_streams_an_archive(tmp_path: Path, running: Server) -> None:
    requests.post(running.url + "/notes", data="x", timeout=5)
    assert requests.get(running.url + "/_replay/export", timeout=5).status_code == 405
    answer = requests.post(running.url + "/_replay/export", timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/gzip"
    (tmp_path / "got.replay").write_bytes(answer.content)
    assert read_manifest(tmp_path / "got.replay").calls == 1


def test_an_unreachable_server_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"cannot reach the server at http://127\.0\.0\.1:9"):
        export_state(str(tmp_path / "x.replay"), None, server="http://127.0.0.1:9")
    assert not (tmp_path / "x.replay").exists()


def test_offline_export_holds_the_data_dir(tmp_path: Path) -> None:
    source = data_dir_with(tmp_path / "mine", "x")
    with DataDirLock(source, command="something"), pytest.raises(ReplayError, match="which has no URL to ask"):
        export_state(str(tmp_path / "x.replay"), source)
    with pytest.raises(SourceError, match="is a directory; name the archive file"):
        export_state(str(tmp_path), source)
    with pytest.raises(SourceError, match="holds no replay state"):
        export_state(str(tmp_path / "x.replay"), tmp_path / "mine" / "..")
    export_state(str(tmp_path / "x.replay"), source)
    assert sorted(p.name for p in source.iterdir()) == [LOG_NAME]  # the lock file went with the lock


def test_a_localstack_log_imports_as_a_converted_data_dir(tmp_path: Path) -> None:
    legacy = tmp_path / "recorded_api_calls.json"
    record = {
        "a": "sqs",
        "m": "POST",
        "p": "/",
        "d": base64.b64encode(b"Action=CreateQueue&QueueName=jobs").decode(),
        "h": {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 "
            "Credential=AK/20200101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=abc123",
        },
        "rd": base64.b64encode(b"<CreateQueueResponse/>").decode(),
    }
    legacy.write_bytes(orjson.dumps(record) + b"\n")
    report = import_state(str(legacy), tmp_path / "volume")
    assert (report.kind, report.calls) == ("localstack", 1)
    converted = (tmp_path / "volume" / LOG_NAME).read_bytes()
    assert b"CreateQueue" in converted and b"abc123" not in converted
