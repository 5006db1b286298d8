"""What `replay inspect` reads out of a log: counts, time range, resources, filters, the last restore."""

from __future__ import annotations

from pathlib import Path

import orjson

from replay.cli.summary import calls, resource_of, summarise
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.reader import Segment

SCOPE = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/{}/aws4_request, SignedHeaders=host"


def json_call(service: str, target: str, document: dict[str, object], when: float) -> Entry:
    headers = [("Authorization", SCOPE.format(service)), ("X-Amz-Target", target)]
    request = Request("POST", "/", "", headers, orjson.dumps(document))
    return Entry(when, service, target.rsplit(".", 1)[1], request, Response(200, [], b"{}"))


def query_call(service: str, body: str, when: float) -> Entry:
    request = Request("POST", "/", "", [("Authorization", SCOPE.format(service))], body.encode())
    return Entry(when, service, body.split("&")[0].split("=")[1], request, Response(200, [], b""))


def s3_call(method: str, path: str, operation: str, when: float) -> Entry:
    request = Request(method, path, "", [("Authorization", SCOPE.format("s3"))], b"body")
    return Entry(when, "s3", operation, request, Response(200, [], b""))


HISTORY = [
    json_call("sqs", "AmazonSQS.CreateQueue", {"QueueName": "jobs"}, 1_000.0),
    json_call("sqs", "AmazonSQS.SendMessage", {"QueueUrl": "http://h/123456789012/jobs", "MessageBody": "x"}, 1_010.0),
    query_call("sns", "Action=CreateTopic&Name=events", 1_020.0),
    s3_call("PUT", "/bucket/dir/a%20b.txt", "PutObject", 1_030.0),
    json_call("dynamodb", "DynamoDB_20120810.PutItem", {"TableName": "users", "Item": {}}, 1_040.0),
]


def write(path: Path, entries: list[Entry]) -> Path:
    path.write_bytes(b"".join(encode_entry(entry) for entry in entries))
    return path


def test_resource_names_what_each_call_acts_on() -> None:
    assert [resource_of(entry) for entry in HISTORY] == ["jobs", "jobs", "events", "bucket/dir/a b.txt", "users"]
    assert resource_of(s3_call("PUT", "/", "PutObject", 0.0)) == "-"
    bare = Entry(0.0, "notes", "Add", Request("POST", "/notes/7", "", [], b"\x00\x01"), Response(200, [], b""))
    assert resource_of(bare) == "/notes/7"


def test_summary_counts_by_service_and_operation_over_every_segment(tmp_path: Path) -> None:
    first = write(tmp_path / "calls.json", HISTORY[:2])
    second = write(tmp_path / "recorded_api_calls.json", HISTORY[2:])
    (tmp_path / "replay_report.json").write_bytes(
        orjson.dumps({"restored": 2, "failed": 1, "diverged": 0, "failures": [{"line": 2}], "divergences": []})
    )
    summary = summarise([Segment(first), Segment(second)], {"checkpoint": "000001"})
    document = summary.to_dict()
    assert document["calls"] == 5 and (document["first"], document["last"]) == (1_000.0, 1_040.0)
    assert document["bytes"] == first.stat().st_size + second.stat().st_size
    assert document["services"] == {
        "dynamodb": {"PutItem": 1},
        "s3": {"PutObject": 1},
        "sns": {"CreateTopic": 1},
        "sqs": {"CreateQueue": 1, "SendMessage": 1},
    }
    assert document["checkpoint"] == {"checkpoint": "000001"}
    restore = document["last_restore"]
    assert isinstance(restore, dict) and (restore["restored"], restore["failed"]) == (2, 1)


def test_calls_are_filtered_by_service_operation_and_time(tmp_path: Path) -> None:
    log = [Segment(write(tmp_path / "recorded_api_calls.json", HISTORY))]
    assert [call.resource for call in calls(log, service="sqs")] == ["jobs", "jobs"]
    assert [call.line for call in calls(log, operation="PutObject")] == [4]
    assert [call.service for call in calls(log, since=1_025.0)] == ["s3", "dynamodb"]
    [line] = calls(log, service="sqs", operation="SendMessage", since=1_005.0)
    assert line.format() == "1970-01-01T00:16:50.000Z  sqs              SendMessage                      200  jobs"
