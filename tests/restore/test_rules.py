from __future__ import annotations

import orjson

from replay.record.entry import Entry, Request, Response
from replay.restore.rules import prepare


def receive(content_type: str, body: bytes) -> Entry:
    request = Request("POST", "/", "", [("Content-Type", content_type)], body)
    return Entry(0.0, "sqs", "ReceiveMessage", request, Response(200, [], b'{"Messages": []}'))


def test_a_recorded_long_poll_is_replayed_without_waiting() -> None:
    entry = receive("application/x-amz-json-1.0", orjson.dumps({"QueueUrl": "q", "WaitTimeSeconds": 20}))
    assert orjson.loads(prepare(entry).body) == {"QueueUrl": "q", "WaitTimeSeconds": 0}
    form = receive("application/x-www-form-urlencoded", b"Action=ReceiveMessage&WaitTimeSeconds=20&QueueUrl=q")
    assert prepare(form).body == b"Action=ReceiveMessage&WaitTimeSeconds=0&QueueUrl=q"


def test_a_receive_that_named_no_wait_is_replayed_without_the_queue_default() -> None:
    short = receive("application/x-amz-json-1.0", orjson.dumps({"QueueUrl": "q"}))
    assert orjson.loads(prepare(short).body) == {"QueueUrl": "q", "WaitTimeSeconds": 0}
    form = receive("application/x-www-form-urlencoded", b"Action=ReceiveMessage&QueueUrl=q")
    assert prepare(form).body == b"Action=ReceiveMessage&QueueUrl=q&WaitTimeSeconds=0"
    query = Entry(0.0, "sqs", "ReceiveMessage", Request("GET", "/", "Action=ReceiveMessage", [], b""), short.response)
    assert prepare(query).query == "Action=ReceiveMessage&WaitTimeSeconds=0"
    instant = receive("application/x-amz-json-1.0", orjson.dumps({"QueueUrl": "q", "WaitTimeSeconds": 0}))
    assert prepare(instant) is instant.request


def test_other_calls_are_replayed_as_recorded() -> None:
    short = receive("application/x-amz-json-1.0", orjson.dumps({"QueueUrl": "q"}))
    send = Entry(0.0, "sqs", "SendMessage", short.request, short.response)
    assert prepare(send) is send.request


def test_a_presigned_s3_request_is_replayed_with_a_placeholder_signature() -> None:
    v4 = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    v2 = "AWSAccessKeyId=AK&Expires=1700000000"
    answer = Response(204, [], b"")
    for query, signature in ((v4, "X-Amz-Signature=REDACTED"), (v2, "Signature=REDACTED")):
        entry = Entry(0.0, "s3", "DeleteObject", Request("DELETE", "/b/k", query, [], b""), answer)
        assert prepare(entry).query == f"{query}&{signature}"
    signed = Request(
        "DELETE", "/b/k", "", [("Authorization", "AWS4-HMAC-SHA256 Credential=AK/x/y/s3/aws4_request")], b""
    )
    entry = Entry(0.0, "s3", "DeleteObject", signed, answer)
    assert prepare(entry) is signed
    plain = Entry(0.0, "s3", "DeleteObject", Request("DELETE", "/b/k", "versionId=1", [], b""), answer)
    assert prepare(plain) is plain.request
