"""Legacy LocalStack ``recorded_api_calls.json`` files: recorded as LocalStack did, read, converted, replayed.

The legacy file is written by :class:`LegacyRecorder`, a test-only middleware that records around moto's
real WSGI app the way LocalStack's persistence did (PUT/POST/DELETE/PATCH answered 2xx, except
``X-Amz-Target`` values matching ``.List``/``.Describe``/``.Get``; one ``{"a","m","p","d","h","rd"}``
line each, with the headers LocalStack's proxy added), while real boto3 clients with session
credentials talk to it over HTTP.  moto is then reset and the file converted and replayed into it, or
replayed directly through a :class:`~replay.share.localstack.LocalStackReader`, and boto3 checks the state.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import orjson
import pytest
from botocore.config import Config as BotoConfig
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.datastructures import EnvironHeaders
from werkzeug.serving import make_server

from replay.errors import LogCorruptError, ReplayError
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.reader import LogReader, is_localstack_record
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport
from replay.share.localstack import LocalStackReader, convert, decode_record, sniff

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytestmark = pytest.mark.filterwarnings("ignore:S3 key was not disposed of in time:ResourceWarning")

REGION = "us-east-1"
ACCOUNT = "123456789012"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token-0123456789"
SECRET_KEY = "legacy-secret-key-do-not-store"
BUCKET = "legacy-bucket"
TABLE = "legacy-items"
TOPIC = "legacy-events"
TEXT_KEY = "notes/a b+c.txt"
BINARY = bytes(range(256))
MESSAGES = ["m1", "m2", "m3"]

_SKIPPED_TARGET = re.compile(r".*\.List|.*\.Describe|.*\.Get")
_RECORDED_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})


class LegacyRecorder:
    """Test only: append a LocalStack legacy record for each call LocalStack would have recorded."""

    def __init__(self, app: WSGIApplication, path: Path) -> None:
        self.app = app
        self.path = path
        self.recording = True

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.recording or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = dict(EnvironHeaders(environ))
        status = 0

        def capture(status_line: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = int(status_line[:3])
            return start_response(status_line, response_headers, exc_info)

        iterable = self.app(environ, capture)
        try:
            answer = b"".join(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        method = environ["REQUEST_METHOD"]
        target = headers.get("X-Amz-Target", "")
        if method in _RECORDED_METHODS and 200 <= status < 300 and not _SKIPPED_TARGET.match(target):
            raw = environ.get("RAW_URI") or environ["PATH_INFO"]
            scope = headers.get("Authorization", "").split("Credential=", 1)[-1].split("/")
            # what LocalStack's proxy put in front of every request it forwarded
            headers.update(
                {
                    "Remote-Addr": "127.0.0.1",
                    "X-Forwarded-For": "127.0.0.1, localhost:4566",
                    "x-localstack-edge": "http://localhost:4566",
                    "Connection": "close",
                }
            )
            record = {
                "a": scope[3] if len(scope) > 3 else "s3",
                "m": method,
                "p": raw,
                "d": base64.b64encode(body).decode("ascii"),
                "h": headers,
                "rd": base64.b64encode(answer).decode("ascii"),
            }
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        return [answer]


@dataclass
class Legacy:
    app: WSGIApplication
    recorder: LegacyRecorder
    clients: dict[str, Any]
    path: Path
    deleted_message: str

    def reset(self) -> None:
        response = WSGITransport(self.app).send(Request("POST", "/moto-api/reset", "", [], b""))
        assert response.ok

    @property
    def lines(self) -> list[bytes]:
        return [line for line in self.path.read_bytes().splitlines(keepends=True) if line.strip()]


@dataclass(frozen=True)
class LegacySegment:
    """What :meth:`Replayer.replay_segments` needs of a segment, for a legacy file."""

    path: Path
    start: int = 0
    end: int | None = None

    def reader(self) -> LocalStackReader:
        return LocalStackReader(self.path, self.start, self.end)


def _history(clients: dict[str, Any]) -> str:
    """Calls on every service; returns the body of the message received and deleted."""
    sqs, s3, ddb, sns = (clients[name] for name in ("sqs", "s3", "dynamodb", "sns"))
    jobs = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    idle = sqs.create_queue(QueueName="idle")["QueueUrl"]
    assert sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == jobs  # .Get: LocalStack skipped it
    for body in MESSAGES:
        sqs.send_message(QueueUrl=jobs, MessageBody=body)
    received = sqs.receive_message(QueueUrl=jobs, MaxNumberOfMessages=1)["Messages"][0]
    sqs.delete_message(QueueUrl=jobs, ReceiptHandle=received["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=idle, WaitTimeSeconds=0)  # recorded, changed nothing
    sqs.list_queues()  # .List: skipped

    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=TEXT_KEY, Body=b"hello")
    s3.put_object(Bucket=BUCKET, Key="blob.bin", Body=BINARY)
    s3.put_object(Bucket=BUCKET, Key="gone.txt", Body=b"soon deleted")
    s3.delete_object(Bucket=BUCKET, Key="gone.txt")
    s3.get_object(Bucket=BUCKET, Key=TEXT_KEY)["Body"].read()  # GET: not recorded

    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for key in ("a", "b", "c"):
        ddb.put_item(TableName=TABLE, Item={"id": {"S": key}, "n": {"N": "1"}})
    ddb.update_item(
        TableName=TABLE,
        Key={"id": {"S": "a"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "2"}},
    )
    ddb.delete_item(TableName=TABLE, Key={"id": {"S": "c"}})
    ddb.scan(TableName=TABLE)  # a POST read LocalStack recorded

    topic = sns.create_topic(Name=TOPIC)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs")
    sns.set_topic_attributes(TopicArn=topic, AttributeName="DisplayName", AttributeValue="Events")
    sns.list_topics()  # query-protocol POST reads LocalStack recorded
    sns.list_subscriptions()
    return str(received["Body"])


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Legacy]:
    app = DomainDispatcherApplication(create_backend_app)
    path = tmp_path_factory.mktemp("localstack") / "recorded_api_calls.json"
    recorder = LegacyRecorder(app, path)
    server = make_server("127.0.0.1", 0, recorder, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
    clients = {
        name: boto3.client(
            name,
            endpoint_url=f"http://127.0.0.1:{server.server_port}",
            region_name=REGION,
            aws_access_key_id="AKIDLEGACY",
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=SESSION_TOKEN,
            config=config,
        )
        for name in ("sqs", "s3", "dynamodb", "sns")
    }
    state = Legacy(app, recorder, clients, path, "")
    state.reset()
    try:
        state.deleted_message = _history(clients)
        recorder.recording = False
        yield state
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        state.reset()


def _assert_state(legacy: Legacy) -> None:
    sqs, s3, ddb, sns = (legacy.clients[name] for name in ("sqs", "s3", "dynamodb", "sns"))
    urls = sqs.list_queues()["QueueUrls"]
    assert sorted(url.rsplit("/", 1)[1] for url in urls) == ["idle", "jobs"]
    jobs = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=jobs, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "60"
    assert attributes["ApproximateNumberOfMessages"] == "2"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=jobs, MaxNumberOfMessages=10)["Messages"]]
    assert sorted(bodies) == sorted(set(MESSAGES) - {legacy.deleted_message})

    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == [BUCKET]
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == sorted(["blob.bin", TEXT_KEY])
    assert s3.get_object(Bucket=BUCKET, Key=TEXT_KEY)["Body"].read() == b"hello"
    assert s3.get_object(Bucket=BUCKET, Key="blob.bin")["Body"].read() == BINARY

    assert ddb.list_tables()["TableNames"] == [TABLE]
    items = {item["id"]["S"]: item["n"]["N"] for item in ddb.scan(TableName=TABLE)["Items"]}
    assert items == {"a": "2", "b": "1"}

    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC}"
    assert [t["TopicArn"] for t in sns.list_topics()["Topics"]] == [topic]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["DisplayName"] == "Events"
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("sqs", f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs")]


def _empty(legacy: Legacy) -> None:
    legacy.reset()
    assert legacy.clients["sqs"].list_queues().get("QueueUrls", []) == []
    assert legacy.clients["s3"].list_buckets()["Buckets"] == []


# --- the legacy file as LocalStack wrote it -------------------------------------------------------


def test_the_recorder_wrote_what_localstack_did(legacy: Legacy) -> None:
    records = [orjson.loads(line) for line in legacy.lines]
    assert all(set(record) == {"a", "m", "p", "d", "h", "rd"} for record in records)
    assert {record["a"] for record in records} == {"sqs", "s3", "dynamodb", "sns"}
    targets = [record["h"].get("X-Amz-Target", "") for record in records]
    assert "AmazonSQS.ReceiveMessage" in targets and "DynamoDB_20120810.Scan" in targets
    assert not any(".Get" in t or ".List" in t or ".Describe" in t for t in targets)
    text = legacy.path.read_text()
    assert SESSION_TOKEN in text and "Signature=" in text  # what convert must not carry over
    assert sniff(legacy.path)


# --- convert, then replay our log -----------------------------------------------------------------


def test_convert_then_replay_restores_every_service(legacy: Legacy, tmp_path: Path) -> None:
    destination = tmp_path / "volume" / "recorded_api_calls.json"
    report = convert(legacy.path, destination)

    assert report.read == len(legacy.lines)
    assert report.dropped == {"read": 3, "no change": 1}  # Scan, ListTopics, ListSubscriptions; the empty receive
    assert report.written == report.read - 4
    assert report.redacted == report.written  # every call was signed with a session token
    assert report.torn_line is None
    assert orjson.loads(orjson.dumps(report.to_dict()))["dropped"] == {"read": 3, "no change": 1}
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600

    text = destination.read_text()
    assert "Signature=" not in text
    assert SESSION_TOKEN not in text
    lowered = text.lower()  # the name may stay in SignedHeaders=...; no header or parameter carries it
    assert '["x-amz-security-token",' not in lowered and "x-amz-security-token=" not in lowered
    entries = [entry for _, entry in LogReader(destination)]
    assert len(entries) == report.written
    operations = {(entry.service, entry.operation) for entry in entries}
    assert {("sqs", "ReceiveMessage"), ("sqs", "DeleteMessage"), ("s3", "PutObject")} <= operations
    assert ("sns", "ListTopics") not in operations and ("dynamodb", "Scan") not in operations
    assert all(entry.time == 0.0 and entry.seed is None and entry.response.status == 200 for entry in entries)
    assert any(entry.request.path == "/legacy-bucket/notes/a%20b%2Bc.txt" for entry in entries)
    assert any(entry.request.body == BINARY for entry in entries)

    _empty(legacy)
    replayed = Replayer(WSGITransport(legacy.app)).replay(destination)
    assert replayed.failures == []
    assert replayed.restored == report.written
    assert replayed.mapped > 0  # receipt handle, message ids, subscription ARN learned from "rd"
    _assert_state(legacy)


def test_the_legacy_file_replays_directly_through_a_reader(legacy: Legacy) -> None:
    _empty(legacy)
    report = Replayer(WSGITransport(legacy.app)).replay_segments([LegacySegment(legacy.path)])  # type: ignore[list-item]
    assert report.failures == []
    assert report.restored == len(legacy.lines) - 4
    _assert_state(legacy)


def test_the_reader_shows_progress_and_what_it_left_out(legacy: Legacy) -> None:
    reader = LocalStackReader(legacy.path)
    numbers = [number for number, _ in reader]
    assert reader.position == reader.size == legacy.path.stat().st_size
    assert reader.checkpoint is None and reader.torn_line is None
    assert reader.read == len(legacy.lines) and len(numbers) == reader.read - 4
    assert reader.dropped == {"read": 3, "no change": 1}
    assert numbers == sorted(numbers) and numbers[0] == 1

    third = sum(len(line) for line in legacy.lines[:2])
    partial = LocalStackReader(legacy.path, start=third, end=third + len(legacy.lines[2]))
    assert [number for number, _ in partial] == [3]
    assert partial.position == partial.size


# --- damaged and foreign files --------------------------------------------------------------------


def test_a_torn_last_line_is_dropped(legacy: Legacy, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "recorded_api_calls.json"
    source.write_bytes(b"".join(legacy.lines) + legacy.lines[0][:40])
    torn = len(legacy.lines) + 1
    with caplog.at_level(logging.WARNING, logger="replay.localstack"):
        report = convert(source, tmp_path / "converted.json")
    assert report.torn_line == torn
    assert report.written == len(legacy.lines) - 4
    assert f"{source}:{torn}: dropped a torn last entry" in caplog.text
    reader = LocalStackReader(source)
    assert sum(1 for _ in reader) == report.written
    assert reader.torn_line == torn and reader.position == reader.size


def test_a_malformed_middle_line_stops_with_its_number(legacy: Legacy, tmp_path: Path) -> None:
    source = tmp_path / "recorded_api_calls.json"
    source.write_bytes(b"".join(legacy.lines[:2]) + b'{"a": "sqs", "m": \n' + b"".join(legacy.lines[2:]))
    with pytest.raises(LogCorruptError) as caught:
        list(LocalStackReader(source))
    assert caught.value.line == 3 and caught.value.path == source
    destination = tmp_path / "out" / "recorded_api_calls.json"
    with pytest.raises(LogCorruptError, match=r":3: malformed entry"):
        convert(source, destination)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []  # no temporary file left behind


def _v1_log(path: Path) -> Path:
    request = Request("POST", "/", "", [("X-Amz-Target", "AmazonSQS.CreateQueue")], b'{"QueueName": "q"}')
    path.write_bytes(encode_entry(Entry(1.0, "sqs", "CreateQueue", request, Response(200, [], b"{}"))))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"just some text\n", "is not a LocalStack"),
        ("v1", "is not a LocalStack"),
    ],
)
def test_convert_refuses_what_is_not_a_legacy_file(tmp_path: Path, content: bytes | str | None, message: str) -> None:
    source = tmp_path / "recorded_api_calls.json"
    if content == "v1":
        _v1_log(source)
    elif isinstance(content, bytes):
        source.write_bytes(content)
    destination = tmp_path / "out" / "converted.json"
    with pytest.raises(ReplayError, match=message) as caught:
        convert(source, destination)
    assert type(caught.value) is ReplayError and str(source) in str(caught.value)
    assert not destination.parent.exists()
    assert not sniff(source)


def test_convert_never_overwrites_a_destination(legacy: Legacy, tmp_path: Path) -> None:
    destination = _v1_log(tmp_path / "recorded_api_calls.json")
    before = destination.read_bytes()
    with pytest.raises(ReplayError, match="already exists and is not empty") as caught:
        convert(legacy.path, destination)
    assert str(destination) in str(caught.value)
    assert destination.read_bytes() == before
    with pytest.raises(ReplayError, match="already exists"):
        convert(legacy.path, legacy.path)  # onto itself

    empty = tmp_path / "empty.json"
    empty.touch()
    assert convert(legacy.path, empty).written == len(legacy.lines) - 4


# --- one record -----------------------------------------------------------------------------------


def _line(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def test_is_localstack_record() -> None:
    assert is_localstack_record({"a": "s3", "m": "PUT", "p": "/b"})
    assert not is_localstack_record({"a": "s3", "m": "PUT", "p": "/b", "v": 1})
    assert not is_localstack_record({"a": "s3", "m": "PUT"})
    assert not is_localstack_record([["a", "m", "p"]])


def test_early_records_without_response_or_body() -> None:
    """2017: one file per API, no "rd", and "d" null (or "") when there was no body."""
    entry = decode_record(_line(a="s3", m="PUT", p="/early-bucket", d=None, h={"Host": "localhost:4572"}))
    assert (entry.service, entry.operation) == ("s3", "CreateBucket")
    assert entry.request.body == b"" and entry.response.body == b"" and entry.response.headers == ()
    assert decode_record(_line(a="s3", m="PUT", p="/b", d="", h={}, rd="")).request.body == b""


def test_tolerated_variants() -> None:
    line = _line(
        a="sqs",
        m="post",
        p="http://localhost:4566/000000000000/jobs?Action=SendMessage",
        d="MessageBody=plain text, not base64",
        h={"Host": "localhost:4566", "Content-Length": 34, "X-Multi": ["1", "2"], "X-None": None},
        rd=None,
    )
    entry = decode_record(line)
    assert entry.request.method == "POST"
    assert (entry.request.path, entry.request.query) == ("/000000000000/jobs", "Action=SendMessage")
    assert entry.request.body == b"MessageBody=plain text, not base64"
    assert entry.request.headers == (
        ("Host", "localhost:4566"),
        ("Content-Length", "34"),
        ("X-Multi", "1"),
        ("X-Multi", "2"),
    )
    assert (entry.service, entry.operation) == ("sqs", "SendMessage")  # no credentials: "a" names the service
    wrapped = base64.b64encode(b'{"ok": true}').decode()
    assert decode_record(_line(a="x", m="PUT", p="/x", d=wrapped[:8] + "\n" + wrapped[8:])).request.body == (
        b'{"ok": true}'
    )


def test_presigned_and_header_secrets_are_removed() -> None:
    query = (
        f"X-Amz-Credential=AKID%2F20210713%2F{REGION}%2Fs3%2Faws4_request&X-Amz-Signature=abc&X-Amz-Security-Token=tok"
    )
    entry = decode_record(
        _line(
            a="s3", m="PUT", p=f"/b/k?{query}", d="aGk=", h={"X-Amz-Security-Token": "tok", "Authorization": "Bearer t"}
        )
    )
    assert entry.request.query == f"X-Amz-Credential=AKID%2F20210713%2F{REGION}%2Fs3%2Faws4_request"
    assert entry.request.headers == ()
    assert (entry.service, entry.operation, entry.request.body) == ("s3", "PutObject", b"hi")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[1, 2]", "not a LocalStack record"),
        (b'{"v": 1, "request": {}}', "has 'v'"),
        (b'{"a": "s3", "m": 5, "p": "/"}', "must be strings"),
        (b'{"a": "s3", "m": "PUT", "p": "/", "h": "Host: x"}', "'h' must be"),
        (b'{"a": "s3", "m": "PUT", "p": "/", "d": 12}', "'d' must be"),
        (b'{"a": "s3", "m": "PUT", "p": "/b", "h": {"X": {"y": 1}}}', "header values"),
        (b'{"a": "s3", "m": "PUT", "p": "/', "unexpected end of data"),
    ],
)
def test_what_is_not_a_record_raises_value_error(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_record(line)
