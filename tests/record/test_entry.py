from __future__ import annotations

import orjson
import pytest

from replay.errors import EntryVersionError
from replay.record.entry import FORMAT_VERSION, Entry, Request, Response, decode_entry, encode_entry


def make_entry(request_body: bytes = b'{"QueueName": "q"}', response_body: bytes = b"ok") -> Entry:
    request = Request(
        "PUT", "/b/%C3%BC%20x", "tagging", [("Host", "localhost:4566"), ("X-Dup", "1"), ("X-Dup", "2")], request_body
    )
    return Entry(1700000000.5, "s3", "PutObject", request, Response(200, [("ETag", '"abc"')], response_body))


def test_round_trip_keeps_everything() -> None:
    entry = make_entry()
    line = encode_entry(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode_entry(line)
    assert (back.time, back.service, back.operation) == (entry.time, "s3", "PutObject")
    assert (back.request.method, back.request.path, back.request.query) == ("PUT", "/b/%C3%BC%20x", "tagging")
    assert back.request.headers == entry.request.headers  # order and duplicates kept
    assert back.request.body == entry.request.body
    assert (back.response.status, back.response.headers, back.response.body) == (200, (("ETag", '"abc"'),), b"ok")


def test_binary_bodies_are_base64_and_text_stays_readable() -> None:
    binary = bytes(range(256))
    entry = make_entry(request_body=binary, response_body="ü".encode())
    data = orjson.loads(encode_entry(entry))
    assert data["v"] == FORMAT_VERSION
    assert data["request"]["encoding"] == "base64"
    assert data["response"] == {"status": 200, "headers": [["ETag", '"abc"']], "body": "ü", "encoding": "utf-8"}
    assert decode_entry(encode_entry(entry)).request.body == binary


def test_unknown_fields_are_ignored() -> None:
    data = orjson.loads(encode_entry(make_entry()))
    data["future_field"] = {"x": 1}
    data["request"]["extra"] = True
    assert decode_entry(orjson.dumps(data)).operation == "PutObject"


def test_newer_versions_are_refused() -> None:
    data = orjson.loads(encode_entry(make_entry()))
    data["v"] = FORMAT_VERSION + 1
    with pytest.raises(EntryVersionError) as caught:
        decode_entry(orjson.dumps(data))
    assert caught.value.version == FORMAT_VERSION + 1


@pytest.mark.parametrize(
    "line",
    [
        b"[]",
        b'{"time": 1}',
        b'{"v": "1"}',
        b'{"v": 1, "request": {"method": "GET", "path": "/"}, "response": {"status": "200"}}',
        b'{"v": 1, "request": {"method": "GET", "path": "/", "headers": [["a"]]}, "response": {"status": 200}}',
        b'{"v": 1, "request": {"method": "GET", "path": "/", "body": "!!", "encoding": "base64"},'
        b' "response": {"status": 200}}',
        b'{"v": 1, "request": {"method": "GET", "path": "/", "encoding": "rot13"}, "response": {"status": 200}}',
        b'{"v": 1, "request": {"method": "GET", "path": "/"}, "resp',
    ],
)
def test_malformed_lines_raise_value_error(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode_entry(line)


def test_request_helpers() -> None:
    request = make_entry().request
    assert request.header("host") == "localhost:4566"
    assert request.header("x-dup") == "1"
    assert request.header("missing", "d") == "d"
    assert request.target == "/b/%C3%BC%20x?tagging"
    assert Request("GET", "/", "", [], b"").target == "/"
    assert Response(204, [], b"").ok and not Response(404, [], b"").ok
