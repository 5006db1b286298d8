"""Replayer reissuing real log files into a tiny stateful WSGI app."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
import responses

from replay.config import FsyncPolicy
from replay.errors import ReplayStalledError, TransportError
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog
from replay.restore.replayer import Progress, Replayer
from replay.restore.transport import HTTPTransport, WSGITransport

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LOG_NAME = "recorded_api_calls.json"


class NotesApp:
    """POST /notes adds a note, DELETE /notes clears them, /fail answers 500, /explode raises."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if path == "/explode":
            raise RuntimeError("emulator bug")
        if path == "/fail":
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"boom\nsecond line"]
        if path == "/notes" and method == "POST":
            self.notes.append(body.decode())
            start_response("200 OK", [])
            return [b"added"]
        if path == "/notes" and method == "DELETE":
            self.notes.clear()
            start_response("204 No Content", [])
            return []
        start_response("404 Not Found", [])
        return [b"no such thing"]


def entry(method: str, path: str, operation: str, body: bytes = b"", recorded_status: int = 200) -> Entry:
    return Entry(
        1_700_000_000.0,
        "notes",
        operation,
        Request(method, path, "", [("Content-Type", "text/plain")], body),
        Response(recorded_status, [], b""),
    )


def write_log(path: Path, entries: list[Entry], tail: bytes = b"") -> Path:
    with CallLog(path, FsyncPolicy.NO) as log:
        for item in entries:
            log.append(encode_entry(item))
    if tail:
        with path.open("ab") as handle:
            handle.write(tail)
    return path


def add(note: str) -> Entry:
    return entry("POST", "/notes", "AddNote", note.encode())


def test_replays_in_order_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_log(
        tmp_path / LOG_NAME,
        [add("a"), add("b"), entry("DELETE", "/notes", "ClearNotes"), add("c"), add("d ü")],
    )
    app = NotesApp()
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        report = Replayer(WSGITransport(app)).replay(path)

    assert app.notes == ["c", "d ü"]
    assert (report.restored, report.failed, report.total) == (5, 0, 5)
    assert report.failures == []
    assert report.path == path
    assert report.torn_line is None
    messages = [r.getMessage() for r in caplog.records if r.name == "replay.replayer"]
    assert f"Restored 5 API calls from persistent file: {path}" in messages
    assert "0 recorded API calls failed on replay" in messages


def test_failures_are_logged_counted_and_replay_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_log(
        tmp_path / LOG_NAME,
        [
            add("a"),
            entry("POST", "/fail", "Fail", recorded_status=201),
            add("b"),
            entry("POST", "/explode", "Explode"),
            add("c"),
        ],
    )
    app = NotesApp()
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        report = Replayer(WSGITransport(app)).replay(path)

    assert app.notes == ["a", "b", "c"]
    assert (report.restored, report.failed, report.total) == (3, 2, 5)
    failed, exploded = report.failures
    assert (failed.line, failed.service, failed.operation, failed.status, failed.recorded_status) == (
        2,
        "notes",
        "Fail",
        500,
        201,
    )
    assert failed.message == "boom\nsecond line"
    assert (exploded.line, exploded.operation, exploded.status, exploded.recorded_status) == (4, "Explode", None, 200)
    assert "RuntimeError" in exploded.message
    assert "emulator bug" in exploded.message

    records = [r for r in caplog.records if r.name == "replay.replayer"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert f"{path}:2: notes.Fail failed on replay with status 500 (recorded 201): boom second line" in warnings
    assert any(w.startswith(f"{path}:4: notes.Explode failed on replay with status error") for w in warnings)
    assert "2 recorded API calls failed on replay (listed above)" in warnings
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert f"Restored 3 API calls from persistent file: {path}" in infos


def test_report_to_dict(tmp_path: Path) -> None:
    path = write_log(tmp_path / LOG_NAME, [add("a"), entry("POST", "/nowhere", "Lost")])
    report = Replayer(WSGITransport(NotesApp())).replay(path)
    summary = report.to_dict()
    assert summary["path"] == str(path)
    assert (summary["restored"], summary["failed"], summary["total"]) == (1, 1, 2)
    assert summary["failures"] == [
        {
            "line": 2,
            "service": "notes",
            "operation": "Lost",
            "status": 404,
            "recorded_status": 200,
            "message": "no such thing",
        }
    ]


def test_torn_tail_is_reported_and_skipped(tmp_path: Path) -> None:
    path = write_log(tmp_path / LOG_NAME, [add("a"), add("b")], tail=encode_entry(add("c"))[:40])
    app = NotesApp()
    report = Replayer(WSGITransport(app)).replay(path)
    assert app.notes == ["a", "b"]
    assert report.restored == 2
    assert report.torn_line == 3


@responses.activate
def test_transport_error_stops_the_replay(tmp_path: Path) -> None:
    path = write_log(tmp_path / LOG_NAME, [add("a"), add("b"), add("c")])
    url = re.compile(r"http://emu\.test:4566/.*")
    responses.add(responses.POST, url, body=b"added")
    responses.add(responses.POST, url, body=requests.ConnectionError("connection refused"))
    transport = HTTPTransport("http://emu.test:4566", retries=1, backoff=0)
    with pytest.raises(TransportError, match="2 attempts"):
        Replayer(transport).replay(path)
    assert len(responses.calls) == 3  # one success, then the failing call twice; line 3 never sent
    assert [call.request.body for call in responses.calls] == [b"a", b"b", b"b"]


def test_progress_ends_at_the_end_of_the_log(tmp_path: Path) -> None:
    path = write_log(tmp_path / LOG_NAME, [add(str(n)) for n in range(20)])
    seen: list[Progress] = []
    report = Replayer(WSGITransport(NotesApp()), progress=seen.append, progress_interval=0).replay(path)
    assert report.restored == 20
    assert seen, "progress was never reported"
    last = seen[-1]
    assert last.position == last.size == path.stat().st_size
    assert last.calls == 20
    assert last.fraction == 1.0
    positions = [p.position for p in seen]
    assert positions == sorted(positions)
    assert all(p.size == last.size for p in seen)


def test_missing_file_restores_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "volume" / LOG_NAME
    seen: list[Progress] = []
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        report = Replayer(WSGITransport(NotesApp()), progress=seen.append).replay(path)
    assert (report.restored, report.failed, report.total) == (0, 0, 0)
    assert f"Restored 0 API calls from persistent file: {path}" in caplog.messages
    assert [(p.calls, p.position, p.size, p.fraction) for p in seen] == [(0, 0, 0, 1.0)]
    assert not path.exists()


def test_eta_rounds_up_and_never_says_0_while_work_remains() -> None:
    size = 1_000_000
    nearly = Progress(calls=999, position=size - 3, size=size, elapsed=60.0)  # 0.0002 s, by the share read
    assert nearly.remaining == 1.0
    assert f"about {nearly.remaining:.0f} s left" == "about 1 s left"  # as the server's log line formats it
    assert Progress(calls=10, position=size // 4, size=size, elapsed=1.0).remaining == 3.0
    assert Progress(calls=10, position=400_000, size=size, elapsed=1.0).remaining == 2.0  # 1.5, rounded up
    assert Progress(calls=10, position=size, size=size, elapsed=1.0).remaining == 0.0  # done: nothing is left
    assert Progress(calls=0, position=0, size=0, elapsed=0.0).remaining == 0.0  # an empty log


@pytest.mark.parametrize(
    ("calls", "position", "elapsed"),
    [
        (0, 0, 5.0),  # nothing done yet: a rate of 0
        (0, 500, 5.0),  # bytes read, no call finished
        (5, 500, 0.0),  # no time elapsed
        (Progress.ETA_MIN_CALLS - 1, 500, 5.0),  # too few calls to go by
        (100, 500, Progress.ETA_MIN_SECONDS / 2),  # too short a time to go by
    ],
)
def test_no_eta_rather_than_a_wrong_one(calls: int, position: int, elapsed: float) -> None:
    assert Progress(calls=calls, position=position, size=1000, elapsed=elapsed).remaining is None


def test_a_slow_replay_never_reports_0_s_left_before_its_end(tmp_path: Path) -> None:
    class Slow(NotesApp):
        def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            time.sleep(0.02)
            return super().__call__(environ, start_response)

    path = write_log(tmp_path / LOG_NAME, [add(str(n)) for n in range(40)])
    seen: list[Progress] = []
    Replayer(WSGITransport(Slow()), progress=seen.append, progress_interval=0).replay(path)
    working = [p for p in seen if p.position < p.size]
    estimates = [p.remaining for p in working if p.remaining is not None]
    assert estimates, "no estimate in a replay of about a second"
    assert all(estimate >= 1 and estimate.is_integer() for estimate in estimates)
    assert all(p.remaining is None for p in working if p.elapsed < Progress.ETA_MIN_SECONDS)
    assert seen[-1].remaining == 0.0


class Hanging:
    """Answers every call at once, except ``/hang``, which waits for ever (a call that can never finish)."""

    def __init__(self) -> None:
        self.answered = 0
        self.never = threading.Event()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/hang":
            self.never.wait()
        self.answered += 1
        start_response("200 OK", [])
        return [b""]


def test_a_call_that_never_finishes_stops_the_replay_naming_its_line(tmp_path: Path) -> None:
    calls = [Request("POST", path, "", [], b"") for path in ("/a", "/hang", "/b")]
    log = tmp_path / LOG_NAME
    log.write_bytes(
        b"".join(
            encode_entry(Entry(0.0, "svc", path[1:], call, Response(200, [], b"")))
            for path, call in zip(("/a", "/hang", "/b"), calls, strict=True)
        )
    )
    app = Hanging()
    started = time.monotonic()
    with pytest.raises(ReplayStalledError) as caught:
        Replayer(WSGITransport(app), call_timeout=0.5).replay(log)
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith(f"{log}:2: svc.hang did not finish within 0.5 s on replay; the restore stopped")
    assert "\n" not in str(caught.value)
    assert caught.value.line == 2
    assert app.answered == 1  # nothing after the stuck line was replayed
    app.never.set()
