"""WSGITransport against an echoing WSGI app; HTTPTransport against `responses`-mocked HTTP."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import requests
import responses

from replay.errors import TransportError
from replay.record.entry import Request
from replay.restore.transport import HTTPTransport, WSGITransport

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

BASE = "http://emu.test:4566"
ANY_URL = re.compile(r"http://emu\.test:4566/.*")


def echo_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answers 201 with a JSON document of the environ it was handed (body base64-encoded)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    document = {
        "method": environ["REQUEST_METHOD"],
        "path_info": environ["PATH_INFO"],
        "raw_uri": environ.get("RAW_URI"),
        "query": environ["QUERY_STRING"],
        "server": [environ["SERVER_NAME"], environ["SERVER_PORT"]],
        "content_type": environ.get("CONTENT_TYPE"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "headers": {key: value for key, value in environ.items() if key.startswith("HTTP_")},
        "body": base64.b64encode(body).decode(),
    }
    answer = orjson.dumps(document)
    start_response("201 Created", [("Content-Type", "application/json"), ("X-Echo", "yes")])
    return [answer[:10], answer[10:]]


def echoed(body: bytes) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(body)
    return document


# --- WSGITransport ---------------------------------------------------------------------------


def test_wsgi_transport_hands_the_app_a_server_like_environ() -> None:
    transport = WSGITransport(echo_app, server_name="emu.local", server_port=4566)
    body = b"\x00\xffbinary body"
    response = transport.send(
        Request(
            "PUT",
            "/bucket/caf%C3%A9%20menu/a%2Fb",
            "x-id=PutObject&tag=a%2Bb",
            [
                ("Host", "emu.local:4566"),
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", "999"),
                ("X-Amz-Target", "Some.Thing"),
                ("X-Multi", "one"),
                ("X-Multi", "two"),
            ],
            body,
        )
    )

    assert response.status == 201
    assert ("X-Echo", "yes") in response.headers
    seen = echoed(response.body)
    assert seen["method"] == "PUT"
    # PATH_INFO is decoded (bytes as latin-1, per PEP 3333); RAW_URI stays percent-encoded
    assert seen["path_info"] == "/bucket/café menu/a/b".encode().decode("latin-1")
    assert seen["path_info"].encode("latin-1").decode("utf-8") == "/bucket/café menu/a/b"
    assert seen["raw_uri"] == "/bucket/caf%C3%A9%20menu/a%2Fb?x-id=PutObject&tag=a%2Bb"
    assert seen["query"] == "x-id=PutObject&tag=a%2Bb"
    assert seen["server"] == ["emu.local", "4566"]
    assert seen["content_type"] == "application/octet-stream"
    assert seen["content_length"] == str(len(body))  # the body's real length, not the recorded header
    assert seen["headers"]["HTTP_HOST"] == "emu.local:4566"
    assert seen["headers"]["HTTP_X_AMZ_TARGET"] == "Some.Thing"
    assert seen["headers"]["HTTP_X_MULTI"] == "one,two"
    assert base64.b64decode(seen["body"]) == body


def test_wsgi_transport_without_query_or_body() -> None:
    response = WSGITransport(echo_app).send(Request("DELETE", "/queue/jobs", "", [], b""))
    seen = echoed(response.body)
    assert (seen["method"], seen["path_info"], seen["raw_uri"], seen["query"]) == (
        "DELETE",
        "/queue/jobs",
        "/queue/jobs",
        "",
    )
    assert seen["content_length"] == "0"
    assert seen["server"] == ["localhost", "80"]
    assert seen["body"] == ""


class Closing:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def test_wsgi_transport_joins_write_and_iterable_and_closes() -> None:
    made: list[Closing] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("202 Accepted", [("X-A", "1")])
        write(b"written ")
        made.append(Closing([b"chunk-1 ", b"chunk-2"]))
        return made[0]

    response = WSGITransport(app).send(Request("POST", "/", "", [], b"x"))
    assert (response.status, response.headers, response.body) == (202, (("X-A", "1"),), b"written chunk-1 chunk-2")
    assert made[0].closed


def test_wsgi_transport_lets_app_exceptions_through() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("emulator bug")

    with pytest.raises(RuntimeError, match="emulator bug"):
        WSGITransport(app).send(Request("POST", "/", "", [], b""))


# --- HTTPTransport ---------------------------------------------------------------------------


def recorded_put() -> Request:
    return Request(
        "PUT",
        "/bucket/caf%C3%A9/a%7Eb%2Fc",
        "x-id=PutObject&v=%7e&w=%2F",
        [
            ("Host", "recorded-host:4566"),
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Content-Type", "application/octet-stream"),
            ("X-Amz-Date", "20240101T000000Z"),
        ],
        b"\x00\x01payload\xff",
    )


@responses.activate
def test_http_transport_sends_the_recorded_request_exactly() -> None:
    responses.add(responses.PUT, ANY_URL, body=b"stored", status=200, headers={"ETag": '"abc"'})
    transport = HTTPTransport(BASE + "/", backoff=0)
    try:
        response = transport.send(recorded_put())
    finally:
        transport.close()

    assert response.status == 200
    assert response.body == b"stored"
    assert ("ETag", '"abc"') in response.headers
    [call] = responses.calls
    sent = call.request
    assert sent.method == "PUT"
    # raw path and query as recorded: requests would otherwise have requoted %7E / %7e
    assert sent.url == BASE + "/bucket/caf%C3%A9/a%7Eb%2Fc?x-id=PutObject&v=%7e&w=%2F"
    assert sent.body == b"\x00\x01payload\xff"
    assert sent.headers["Content-Type"] == "application/octet-stream"
    assert sent.headers["X-Amz-Date"] == "20240101T000000Z"
    assert "Host" not in sent.headers
    assert "Transfer-Encoding" not in sent.headers
    assert sent.headers["Content-Length"] == str(len(b"\x00\x01payload\xff"))  # recomputed, not "999"
    assert sent.headers.get("Connection") != "close"


@responses.activate
def test_http_transport_returns_a_5xx_as_a_response() -> None:
    responses.add(responses.POST, ANY_URL, body=b"busy", status=503)
    response = HTTPTransport(BASE, backoff=0).send(Request("POST", "/", "", [], b"{}"))
    assert response.status == 503
    assert not response.ok
    assert response.body == b"busy"
    assert len(responses.calls) == 1  # not retried: the emulator answered


@responses.activate
def test_http_transport_retries_a_failed_connection_then_succeeds() -> None:
    responses.add(responses.POST, ANY_URL, body=requests.ConnectionError("connection refused"))
    responses.add(responses.POST, ANY_URL, body=b"ok")
    response = HTTPTransport(BASE, retries=3, backoff=0).send(Request("POST", "/q", "", [], b"x"))
    assert (response.status, response.body) == (200, b"ok")
    assert len(responses.calls) == 2


@responses.activate
def test_http_transport_gives_up_after_its_retries() -> None:
    responses.add(responses.POST, ANY_URL, body=requests.ConnectionError("connection refused"))
    with pytest.raises(TransportError) as caught:
        HTTPTransport(BASE, retries=2, backoff=0).send(Request("POST", "/q", "", [], b"x"))
    assert len(responses.calls) == 3
    assert caught.value.target == BASE
    assert "3 attempts" in str(caught.value)
    assert "connection refused" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)


@responses.activate
def test_http_transport_timeout_is_a_transport_error_without_retry() -> None:
    responses.add(responses.POST, ANY_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(TransportError) as caught:
        HTTPTransport(BASE, timeout=2.5, retries=3, backoff=0).send(Request("POST", "/q", "", [], b"x"))
    assert len(responses.calls) == 1
    assert str(caught.value) == f"{BASE}: no response to POST /q within 2.5 s"


def test_wsgi_transport_supplies_a_host_header_when_the_request_has_none() -> None:
    seen: list[str] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append(environ["HTTP_HOST"])
        start_response("200 OK", [])
        return [b""]

    WSGITransport(app, server_name="emulator", server_port=4566).send(Request("GET", "/", "", [], b""))
    WSGITransport(app).send(Request("GET", "/", "", [("Host", "given:1")], b""))
    assert seen == ["emulator:4566", "given:1"]
