"""WriteGuard: closed when persistence fails, AWS-style refusals, retried once a second, open again by itself."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from werkzeug.test import Client

from replay.config import FsyncPolicy
from replay.errors import LogWriteError
from replay.record.classify import Call
from replay.record.log import CallLog
from replay.record.middleware import RecordingMiddleware
from replay.record.writeguard import WriteGuard, refusal

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_guard_closes_retries_at_most_once_a_second_and_opens_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = WriteGuard(tmp_path)
    attempts: list[float] = []
    healed = threading.Event()

    def retry() -> None:
        attempts.append(time.monotonic())
        if not healed.is_set():
            raise OSError(28, "No space left on device")

    with caplog.at_level(logging.INFO, logger="replay.persistence"):
        guard.failed("disk full", retry=retry)
        guard.failed("disk full again", retry=retry)  # still one line: the state did not change
        assert not guard.ok and guard.status() is not None
        wait_for(lambda: len(attempts) >= 2)
        healed.set()
        wait_for(lambda: guard.ok)
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(attempts))
    assert guard.status() is None
    lines = [record.getMessage() for record in caplog.records if record.name == "replay.persistence"]
    assert len(lines) == 2 and "refusing state-changing calls" in lines[0] and "works again" in lines[1]
    guard.stop()


@pytest.mark.parametrize(
    ("call", "json_protocol", "content_type"),
    [
        (Call("sqs", "SendMessage", True), True, "application/x-amz-json-1.0"),
        (Call("sns", "Publish", True), False, "application/xml"),
        (Call("s3", "PutObject", True), False, "application/xml"),
    ],
)
def test_refusals_speak_the_protocol_of_the_call(
    tmp_path: Path, call: Call, json_protocol: bool, content_type: str
) -> None:
    guard = WriteGuard(tmp_path)
    guard.cause = "cannot append an entry: No space left on device"
    status, headers, body = refusal(guard, call, json_protocol)
    assert status == "503 Service Unavailable" and dict(headers)["Content-Type"] == content_type
    if json_protocol:
        document = orjson.loads(body)
        assert document["__type"] == "ServiceUnavailable" and str(tmp_path) in document["message"]
    else:
        root = ElementTree.fromstring(body)
        code = root.find(".//Code")
        assert code is not None and code.text == "ServiceUnavailable"
        assert "No space left on device" in body.decode()


class Echo:
    """Answers every call 200 with a JSON body, as one chunk or as several (``chunks``)."""

    def __init__(self, chunks: int = 1) -> None:
        self.calls = 0
        self.chunks = chunks

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        if self.chunks == 1:
            return [b'{"QueueUrl": "q"}']
        return iter([b'{"QueueUrl": ', b'"q"', b"}"])


def post(client: Client) -> tuple[int, bytes]:
    response = client.post(
        "/",
        data=b'{"QueueName": "q"}',
        headers={"X-Amz-Target": "AmazonSQS.CreateQueue", "Content-Type": "application/x-amz-json-1.0"},
    )
    return response.status_code, response.data


def test_a_call_whose_entry_cannot_be_written_is_answered_503_and_the_next_is_refused_before_the_app(
    tmp_path: Path,
) -> None:
    log = CallLog(tmp_path / "recorded_api_calls.json", FsyncPolicy.NO)
    guard = WriteGuard(tmp_path)
    app = Echo()
    client = Client(RecordingMiddleware(app, log, guard=guard))
    assert post(client)[0] == 200
    broken = {"on": True}
    real_append = log.append

    def append(line: bytes) -> None:
        if broken["on"]:
            raise LogWriteError(log.path, f"{log.path}: cannot append an entry: No space left on device")
        real_append(line)

    log.append = append  # type: ignore[method-assign]
    status, body = post(client)
    assert status == 503 and b"ServiceUnavailable" in body and b"No space left on device" in body
    assert app.calls == 2  # that one reached the app (the one call in flight)
    assert post(client)[0] == 503
    assert app.calls == 2  # the next did not
    broken["on"] = False
    wait_for(lambda: guard.ok)  # the guard's retry probed the log's disk
    assert post(client)[0] == 200 and app.calls == 3
    guard.stop()
    log.close()
    assert len(log.path.read_bytes().splitlines()) == 2


def test_a_streamed_answer_whose_entry_cannot_be_written_is_replaced_when_nothing_left_yet(tmp_path: Path) -> None:
    def failing(line: bytes) -> None:
        raise LogWriteError(tmp_path, "cannot append an entry: Input/output error")

    class Sink:
        append = staticmethod(failing)

        def probe(self, size: int = 0) -> None:
            raise OSError(5, "Input/output error")

    guard = WriteGuard(tmp_path)
    status, body = post(Client(RecordingMiddleware(Echo(chunks=1), Sink(), guard=guard)))
    assert status == 503 and b"Input/output error" in body
    guard.stop()
    guard = WriteGuard(tmp_path)
    with pytest.raises(LogWriteError):  # two chunks left already: only breaking it off is honest
        post(Client(RecordingMiddleware(Echo(chunks=3), Sink(), guard=guard)))
    guard.stop()
