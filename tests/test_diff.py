"""What differs between a recorded response and its replay, and what counts as a divergence."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from replay.diff import Change, changes, explain
from replay.entry import Entry, Request, Response, encode_entry
from replay.mapping import IdMapping
from replay.replayer import Replayer
from replay.transport import WSGITransport

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


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (Change("body.CreationDate", "CreationDate", 1700000000.5, 1795000000.1), "clock"),
        (Change("body/R/LaunchTime", "launchTime", "2024-01-01T00:00:00Z", "2026-11-24T10:00:00Z"), "clock"),
        (Change("header last", "x", "Mon, 01 Jan 2024 00:00:00 GMT", "Tue, 24 Nov 2026 10:00:00 GMT"), "clock"),
        (Change("body.Id", "Id", "old-generated-id", "new-generated-id"), "mapped"),
        (Change("body.Count", "Count", 3, 2), None),
        (Change("body.State", "State", "available", "pending"), None),
        (Change("status", "status", 200, 404), None),
    ],
)
def test_explain(change: Change, reason: str | None) -> None:
    mapping = IdMapping()
    mapping.pairs["old-generated-id"] = "new-generated-id"
    assert explain(change, mapping) == reason


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
