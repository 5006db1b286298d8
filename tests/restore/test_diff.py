"""What differs between a recorded response and its replay, and what counts as a divergence."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from replay.record.entry import Entry, Request, Response, encode_entry
from replay.restore.diff import Change, changes
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def json_response(data: object, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(200, list(headers), orjson.dumps(data))


def test_identical_responses_and_volatile_parts_do_not_differ() -> None:
    recorded = json_response({"Id": "abc123456", "RequestId": "r1"}, [("Date", "Mon"), ("x-amzn-requestid", "a")])
    replayed = json_response({"Id": "abc123456", "RequestId": "r2"}, [("Date", "Tue"), ("x-amzn-requestid", "b")])
    assert changes(recorded, replayed) == []


def test_json_changes_are_located() -> None:
    recorded = json_response({"Table": {"Count": 3, "Arn": "arn:x:1", "Tags": [1, 2]}, "Gone": True})
    replayed = json_response({"Table": {"Count": 2, "Arn": "arn:x:1", "Tags": [1]}, "New": 1})
    assert changes(recorded, replayed) == [
        Change("body.Table.Count", "Count", 3, 2),
        Change("body.Table.Tags", "Tags", "2 items", "1 items"),
        Change("body.Gone", "Gone", True, None),
        Change("body.New", "New", None, 1),
    ]


def test_xml_status_header_and_opaque_changes() -> None:
    recorded = Response(200, [("ETag", '"a"')], b"<R><Id>one-value</Id><RequestId>x</RequestId></R>")
    replayed = Response(409, [("ETag", '"b"')], b"<R><Id>two-value</Id><RequestId>y</RequestId></R>")
    assert changes(recorded, replayed) == [
        Change("status", "status", 200, 409),
        Change("header etag", "etag", '"a"', '"b"'),
        Change("body/R/Id", "Id", "one-value", "two-value"),
    ]
    [opaque] = changes(Response(200, [], b"\x00\x01"), Response(200, [], b"\x00\x02"))
    assert opaque.where == "body" and "2 bytes" in opaque.recorded


def test_json_documents_inside_strings_are_walked() -> None:
    inner_old = orjson.dumps({"Type": "Notification", "MessageId": "m-1", "Subject": "a"}).decode()
    inner_new = orjson.dumps({"Type": "Notification", "MessageId": "m-1", "Subject": "b"}).decode()
    found = changes(json_response({"Body": inner_old}), json_response({"Body": inner_new}))
    assert found == [Change("body.Body(json).Subject", "Subject", "a", "b")]
    xml_old = f"<R><Body>{inner_old}</Body></R>".encode()
    xml_new = f"<R><Body>{inner_new}</Body></R>".encode()
    assert changes(Response(200, [], xml_old), Response(200, [], xml_new)) == [
        Change("body/R/Body(json).Subject", "Subject", "a", "b")
    ]
    plain = changes(json_response({"Body": "{not json"}), json_response({"Body": "{not json!"}))
    assert plain == [Change("body.Body", "Body", "{not json", "{not json!")]


def test_last_modified_is_compared() -> None:
    recorded = Response(200, [("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")], b"")
    replayed = Response(200, [("Last-Modified", "Tue, 24 Nov 2026 10:00:00 GMT")], b"")
    assert [change.where for change in changes(recorded, replayed)] == ["header last-modified"]


class Counter:
    """A WSGI app whose answers depend on its history: replaying part of it diverges."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.value += 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [orjson.dumps({"Count": self.value})]


def test_replayer_reports_divergences_in_its_log_and_report_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "recorded_api_calls.json"
    calls = [Request("POST", "/count", "", [], b"") for _ in range(3)]
    recorded = [json_response({"Count": n}) for n in (1, 2, 5)]  # the third was answered after two unrecorded calls
    log.write_bytes(
        b"".join(encode_entry(Entry(0.0, "counter", "Add", c, r)) for c, r in zip(calls, recorded, strict=True))
    )
    report_path = tmp_path / "replay_report.json"
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        report = Replayer(WSGITransport(Counter()), report_path=report_path).replay(log)
    assert (report.restored, report.failed, report.diverged) == (3, 0, 1)
    [divergence] = report.divergences
    assert (divergence.line, divergence.operation) == (3, "Add")
    assert divergence.changes == [Change("body.Count", "Count", 5, 3)]
    assert f"{log}:3: counter.Add diverged on replay: body.Count: 5 -> 3" in caplog.text
    assert f"1 replayed API calls diverged from their recording (details in {report_path})" in caplog.text
    written = orjson.loads(report_path.read_bytes())
    assert written["diverged"] == 1
    assert written["divergences"][0]["changes"] == [{"where": "body.Count", "recorded": 5, "replayed": 3}]
    assert stat.S_IMODE(report_path.stat().st_mode) == 0o600


def test_bodies_nested_too_deep_to_walk_are_compared_whole() -> None:
    def nested(depth: int, leaf: str) -> bytes:
        return ("[" * depth + f'"{leaf}"' + "]" * depth).encode()

    recorded, replayed = Response(200, [], nested(1000, "a")), Response(200, [], nested(1000, "b"))
    [change] = changes(recorded, replayed)
    assert change.where == "body" and "sha256" in change.recorded
