"""RecordingMiddleware around tiny WSGI apps, driven by werkzeug's test client."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.test import Client, EnvironBuilder

from replay.errors import LogWriteError
from replay.record.classify import Call
from replay.record.entry import Entry, Request, decode_entry
from replay.record.middleware import RecordingMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SIGV4_S3 = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
    "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
)
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


class ListSink:
    """An EntrySink keeping lines in memory; ``on_append`` runs first (it may record or raise)."""

    def __init__(self, on_append: Callable[[], None] | None = None) -> None:
        self.lines: list[bytes] = []
        self.on_append = on_append

    def append(self, line: bytes) -> None:
        if self.on_append is not None:
            self.on_append()
        self.lines.append(line)

    def entries(self) -> list[Entry]:
        return [decode_entry(line) for line in self.lines]


class EchoApp:
    """Answers ``status`` with ``b"got:" + body``; remembers every request body and Authorization it saw."""

    def __init__(self, status: str = "200 OK") -> None:
        self.status = status
        self.bodies: list[bytes] = []
        self.authorizations: list[str | None] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        self.bodies.append(body)
        self.authorizations.append(environ.get("HTTP_AUTHORIZATION"))
        answer = b"got:" + body
        start_response(
            self.status,
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(answer))), ("X-Echo", "1")],
        )
        return [answer]


class ClosingChunks:
    """An app iterable yielding ``chunks`` (recording each hand-out in ``events``) with a ``close``."""

    def __init__(self, chunks: list[bytes], events: list[str]) -> None:
        self.chunks = chunks
        self.events = events
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for number, chunk in enumerate(self.chunks, 1):
            self.events.append(f"app yields {number}")
            yield chunk

    def close(self) -> None:
        self.closed = True
        self.events.append("app closed")


def streaming_app(chunks: list[bytes], events: list[str], made: list[ClosingChunks]) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        iterable = ClosingChunks(chunks, events)
        made.append(iterable)
        return iterable

    return app


def sqs_create(client: Client, body: bytes = b'{"QueueName": "jobs"}') -> tuple[int, bytes]:
    response = client.post(
        "/",
        headers={"X-Amz-Target": "AmazonSQS.CreateQueue", "Content-Type": "application/x-amz-json-1.0"},
        data=body,
        buffered=True,
    )
    return response.status_code, response.data


def environ_for_sqs_create() -> WSGIEnvironment:
    builder = EnvironBuilder(
        "/",
        method="POST",
        headers=[("X-Amz-Target", "AmazonSQS.CreateQueue"), ("Content-Type", "application/x-amz-json-1.0")],
        data=b'{"QueueName": "jobs"}',
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


def ignore_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[[bytes], object]:
    return lambda data: None


# --- what is recorded ------------------------------------------------------------------------


def test_json_protocol_mutation_is_recorded_once_with_everything() -> None:
    app = EchoApp()
    sink = ListSink()
    status, data = sqs_create(Client(RecordingMiddleware(app, sink)))

    assert (status, data) == (200, b'got:{"QueueName": "jobs"}')
    assert app.bodies == [b'{"QueueName": "jobs"}']  # the app still got the whole body
    [entry] = sink.entries()
    assert (entry.service, entry.operation) == ("sqs", "CreateQueue")
    assert (entry.request.method, entry.request.path, entry.request.query) == ("POST", "/", "")
    assert entry.request.header("X-Amz-Target") == "AmazonSQS.CreateQueue"
    assert entry.request.header("Content-Type") == "application/x-amz-json-1.0"
    assert entry.request.body == b'{"QueueName": "jobs"}'
    assert entry.response.status == 200
    assert ("X-Echo", "1") in entry.response.headers
    assert entry.response.body == b'got:{"QueueName": "jobs"}'
    assert entry.time > 0


def test_s3_put_keeps_raw_path_query_binary_body_and_redacts_signature() -> None:
    app = EchoApp()
    sink = ListSink()
    client = Client(RecordingMiddleware(app, sink))
    body = bytes(range(256)) * 4  # not UTF-8
    response = client.put(
        "/my-bucket/dir%20x/caf%C3%A9%2Fn.bin?x-id=PutObject&tag=a%2Bb",
        headers={"Authorization": SIGV4_S3, "X-Amz-Date": "20240101T000000Z", "Content-Type": "image/png"},
        data=body,
        buffered=True,
    )

    assert response.status_code == 200
    assert app.bodies == [body]
    assert app.authorizations == [SIGV4_S3]  # the app sees the request as sent; only the record is redacted
    [line] = sink.lines
    assert SIGNATURE.encode() not in line
    entry = decode_entry(line)
    assert (entry.service, entry.operation) == ("s3", "PutObject")
    assert entry.request.method == "PUT"
    assert entry.request.path == "/my-bucket/dir%20x/caf%C3%A9%2Fn.bin"
    assert entry.request.query == "x-id=PutObject&tag=a%2Bb"
    assert entry.request.body == body
    assert entry.request.header("X-Amz-Date") == "20240101T000000Z"
    authorization = entry.request.header("Authorization")
    assert authorization is not None
    assert "Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request" in authorization
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date" in authorization
    assert "Signature=" not in authorization
    assert entry.response.body == b"got:" + body


def test_security_token_header_and_presigned_signature_are_dropped() -> None:
    sink = ListSink()
    client = Client(RecordingMiddleware(EchoApp(), sink))
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=SESSIONTOKENSECRET"
        f"&X-Amz-Signature={SIGNATURE}"
    )
    response = client.put(
        f"/bucket/key.txt?{query}",
        headers={"X-Amz-Security-Token": "HEADERTOKENSECRET"},
        data=b"hello",
        buffered=True,
    )

    assert response.status_code == 200
    [line] = sink.lines
    for secret in (SIGNATURE, "SESSIONTOKENSECRET", "HEADERTOKENSECRET"):
        assert secret.encode() not in line
    entry = decode_entry(line)
    assert (entry.service, entry.operation) == ("s3", "PutObject")
    assert entry.request.header("X-Amz-Security-Token") is None
    params = entry.request.query.split("&")
    assert "X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request" in params
    assert "X-Amz-Expires=300" in params
    assert not any(p.startswith(("X-Amz-Signature=", "X-Amz-Security-Token=")) for p in params)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/bucket/key", {"Authorization": SIGV4_S3}, b""),
        ("HEAD", "/bucket", {}, b""),
        (
            "POST",
            "/",
            {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"},
            b'{"TableName": "t", "Key": {"id": {"S": "1"}}}',
        ),
        (
            "POST",
            "/",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Action=ListTopics&Version=2010-03-31",
        ),
        ("POST", "/", {"X-Amz-Target": "AmazonSQS.ReceiveMessage"}, b'{"QueueUrl": "q"}'),
    ],
    ids=["s3-get", "s3-head", "dynamodb-getitem", "sns-query-listtopics", "sqs-receive"],
)
def test_reads_are_not_recorded(method: str, path: str, headers: dict[str, str], body: bytes) -> None:
    app = EchoApp()
    sink = ListSink()
    response = Client(RecordingMiddleware(app, sink)).open(
        path, method=method, headers=headers, data=body, buffered=True
    )
    assert response.status_code == 200
    assert app.bodies == [body]
    assert sink.lines == []


def test_query_protocol_mutation_is_recorded() -> None:
    sink = ListSink()
    response = Client(RecordingMiddleware(EchoApp(), sink)).post(
        "/",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        data=b"Action=CreateTopic&Name=alerts&Version=2010-03-31",
        buffered=True,
    )
    assert response.status_code == 200
    [entry] = sink.entries()
    assert entry.operation == "CreateTopic"
    assert entry.request.body == b"Action=CreateTopic&Name=alerts&Version=2010-03-31"


@pytest.mark.parametrize("status", ["400 Bad Request", "404 Not Found", "409 Conflict", "500 Internal Server Error"])
def test_failed_mutations_are_not_recorded(status: str) -> None:
    app = EchoApp(status)
    sink = ListSink()
    code, data = sqs_create(Client(RecordingMiddleware(app, sink)))
    assert code == int(status[:3])
    assert data == b'got:{"QueueName": "jobs"}'
    assert sink.lines == []


def test_custom_classifier_overrides_the_default() -> None:
    seen: list[Request] = []

    def everything_mutates(request: Request) -> Call:
        seen.append(request)
        return Call("notes", f"{request.method}Anything", True)

    sink = ListSink()
    client = Client(RecordingMiddleware(EchoApp(), sink, classifier=everything_mutates))
    assert client.get("/notes?id=7", buffered=True).status_code == 200  # a GET: a read by default
    [entry] = sink.entries()
    assert (entry.service, entry.operation) == ("notes", "GETAnything")
    assert (entry.request.path, entry.request.query) == ("/notes", "id=7")
    assert [r.path for r in seen] == ["/notes"]


def test_custom_classifier_can_declare_a_mutation_a_read() -> None:
    sink = ListSink()
    client = Client(RecordingMiddleware(EchoApp(), sink, classifier=lambda request: Call("x", "y", False)))
    status, _ = sqs_create(client)
    assert status == 200
    assert sink.lines == []


# --- streaming -------------------------------------------------------------------------------


def test_streamed_response_reaches_client_unchanged_and_is_recorded_joined() -> None:
    chunks = [b"one-", b"two-", b"", b"three"]
    events: list[str] = []
    made: list[ClosingChunks] = []
    sink = ListSink()
    client = Client(RecordingMiddleware(streaming_app(chunks, events, made), sink))
    status, data = sqs_create(client)
    assert (status, data) == (200, b"one-two-three")
    [entry] = sink.entries()
    assert entry.response.body == b"one-two-three"
    assert entry.response.headers == (("Content-Type", "text/plain"),)
    [iterable] = made
    assert iterable.closed


def test_entry_is_appended_before_the_last_chunk_is_handed_out() -> None:
    chunks = [b"alpha ", b"beta ", b"gamma"]
    events: list[str] = []
    made: list[ClosingChunks] = []
    received: list[bytes] = []
    sink = ListSink(on_append=lambda: events.append(f"append after client got {len(received)}"))
    middleware = RecordingMiddleware(streaming_app(chunks, events, made), sink)

    app_iter = middleware(environ_for_sqs_create(), ignore_start_response)
    try:
        for chunk in app_iter:
            received.append(chunk)
            events.append(f"client got {len(received)}")
    finally:
        getattr(app_iter, "close")()  # noqa: B009 - a WSGI server calls close() when present

    assert received == chunks
    assert events == [
        "app yields 1",
        "app yields 2",
        "client got 1",
        "app yields 3",
        "client got 2",
        "append after client got 2",
        "client got 3",
        "app closed",
    ]
    [entry] = sink.entries()
    assert entry.response.body == b"alpha beta gamma"


def test_client_leaving_early_still_records_the_full_body() -> None:
    chunks = [b"first ", b"second ", b"third ", b"fourth"]
    events: list[str] = []
    made: list[ClosingChunks] = []
    sink = ListSink()
    client = Client(RecordingMiddleware(streaming_app(chunks, events, made), sink))
    response = client.post(
        "/",
        headers={"X-Amz-Target": "AmazonSQS.CreateQueue"},
        data=b"{}",
        buffered=False,
    )
    first = next(iter(response.response))
    assert first == b"first "
    assert sink.lines == []  # not yet: the call is still streaming
    response.close()

    [entry] = sink.entries()
    assert entry.response.body == b"first second third fourth"
    [iterable] = made
    assert iterable.closed


def test_client_leaving_before_any_chunk_still_records() -> None:
    events: list[str] = []
    made: list[ClosingChunks] = []
    sink = ListSink()
    middleware = RecordingMiddleware(streaming_app([b"a", b"b"], events, made), sink)
    app_iter = middleware(environ_for_sqs_create(), ignore_start_response)
    getattr(app_iter, "close")()  # noqa: B009
    [entry] = sink.entries()
    assert entry.response.body == b"ab"
    assert made[0].closed


def test_legacy_write_callable_is_recorded() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("201 Created", [("Content-Type", "text/plain")])
        write(b"written-1 ")
        write(b"written-2 ")
        return [b"returned"]

    sink = ListSink()
    client = Client(RecordingMiddleware(app, sink))
    # werkzeug's test client keeps write() data only when not buffering, as a real server would stream it
    response = client.post("/", headers={"X-Amz-Target": "AmazonSQS.CreateQueue"}, data=b"{}", buffered=False)
    try:
        assert (response.status_code, response.data) == (201, b"written-1 written-2 returned")
    finally:
        response.close()
    [entry] = sink.entries()
    assert entry.response.status == 201
    assert entry.response.body == b"written-1 written-2 returned"


# --- a log that cannot be written ------------------------------------------------------------


def failing_sink() -> ListSink:
    def fail() -> None:
        raise LogWriteError(Path("/nowhere/recorded_api_calls.json"), "disk full")

    return ListSink(on_append=fail)


def test_log_write_error_reaches_the_client_instead_of_a_2xx(caplog: pytest.LogCaptureFixture) -> None:
    app = EchoApp()
    client = Client(RecordingMiddleware(app, failing_sink()))
    with pytest.raises(LogWriteError, match="disk full"):
        sqs_create(client)
    assert app.bodies == [b'{"QueueName": "jobs"}']  # the app ran; the call was not acknowledged
    assert any(r.name == "replay.middleware" and "CreateQueue" in r.getMessage() for r in caplog.records)


def test_log_write_error_withholds_the_last_chunk_of_a_stream() -> None:
    chunks = [b"one ", b"two ", b"three"]
    events: list[str] = []
    made: list[ClosingChunks] = []
    middleware = RecordingMiddleware(streaming_app(chunks, events, made), failing_sink())
    received: list[bytes] = []
    app_iter = middleware(environ_for_sqs_create(), ignore_start_response)
    try:
        with pytest.raises(LogWriteError):
            for chunk in app_iter:
                received.append(chunk)
    finally:
        getattr(app_iter, "close")()  # noqa: B009
    assert received == [b"one ", b"two "]  # never the complete response
    assert made[0].closed


def test_reads_pass_through_even_when_the_log_is_broken() -> None:
    client = Client(RecordingMiddleware(EchoApp(), failing_sink()))
    response = client.get("/bucket/key", buffered=True)
    assert response.status_code == 200
    assert response.data == b"got:"


def test_app_failing_mid_response_is_not_recorded() -> None:
    def breaks_midway(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial "
        raise RuntimeError("emulator crashed")

    sink = ListSink()
    app_iter = RecordingMiddleware(breaks_midway, sink)(environ_for_sqs_create(), ignore_start_response)
    with pytest.raises(RuntimeError):
        list(app_iter)
    getattr(app_iter, "close")()  # noqa: B009 - what a server does next
    assert sink.lines == []


def test_list_response_is_recorded_before_it_is_returned() -> None:
    body = [b'{"QueueUrl": ', b'"http://localhost/1/q"}']

    def listing(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        return body

    sink = ListSink()
    returned = RecordingMiddleware(listing, sink)(environ_for_sqs_create(), ignore_start_response)
    [entry] = sink.entries()  # written before a single byte could be handed to the server
    assert returned is body  # and the app's own list is passed on untouched
    assert entry.response.body == b"".join(body)
